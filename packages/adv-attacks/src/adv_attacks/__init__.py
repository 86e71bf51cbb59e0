"""White-box adversarial attacks on any predictive, Bayesian neural networks included.

One-step (PGD1), PGD in L2 and L∞, PGD+ and ENT (docs/theory.md), on objectives ``nll``, ``mse``,
``cw``, ``entropy`` and ``dlr``, for three kinds of target behind one API: a classifier
returning logits, a Bayesian network's posterior predictive (PPD log-probabilities, draws
fixed or redrawn every step with ``eot=True``), and a Gaussian regressor returning
``(mean, var)``. Each attack is a function (``pgd``) and a configurable class (``PGD``).

Reliable evaluation (Croce & Hein 2020): APGD and APGD-T (``apgd``, ``APGD``, ``APGDT``),
the gradient-free Square attack (``square``, ``Square``; Andriushchenko et al. 2020), and
``robust_accuracy``, the per-example worst case over an ensemble of them with masking
diagnostics.

Examples:
    >>> import torch
    >>> from adv_attacks import pgd
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    >>> x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    >>> x_adv = pgd(net, x, y, eps=1.0, steps=10)
"""

from __future__ import annotations

from adv_attacks.apgd import APGD, APGDT, APGDLoss, apgd, apgd_checkpoints
from adv_attacks.base import (
    Attack,
    AttackProblem,
    AttackResult,
    check_clamp,
    check_in_range,
)
from adv_attacks.ensemble import (
    AttackSummary,
    Diagnostic,
    DiagnosticCode,
    EnsembleAttack,
    RobustAccuracy,
    RobustAccuracyCurve,
    Version,
    robust_accuracy,
    robust_accuracy_curve,
)
from adv_attacks.entropy import EntropyAttack, entropy_attack
from adv_attacks.frozen import frozen_parameters
from adv_attacks.norms import Norm, per_example_norm, random_in_ball
from adv_attacks.objectives import (
    Objective,
    ObjectiveSpec,
    TargetedDLR,
    attack_success,
    dlr_values,
    objective_values,
    targeted_dlr_values,
)
from adv_attacks.one_step import OneStep, one_step
from adv_attacks.pgd import PGD, pgd
from adv_attacks.pgd_plus import PGDPlus, pgd_plus
from adv_attacks.predictive import (
    ClassificationOutput,
    PredictiveOutput,
    RegressionOutput,
    read_output,
)
from adv_attacks.routed import RoutedObjective, RoutedOneStep
from adv_attacks.square import Square, square

__version__ = "0.1.0"

__all__ = [
    "APGD",
    "APGDT",
    "PGD",
    "APGDLoss",
    "AttackSummary",
    "Diagnostic",
    "DiagnosticCode",
    "EnsembleAttack",
    "RobustAccuracy",
    "RobustAccuracyCurve",
    "Square",
    "TargetedDLR",
    "Version",
    "apgd",
    "apgd_checkpoints",
    "dlr_values",
    "robust_accuracy",
    "robust_accuracy_curve",
    "square",
    "targeted_dlr_values",
    "Attack",
    "AttackProblem",
    "AttackResult",
    "ClassificationOutput",
    "EntropyAttack",
    "Norm",
    "Objective",
    "ObjectiveSpec",
    "OneStep",
    "PGDPlus",
    "PredictiveOutput",
    "RegressionOutput",
    "RoutedObjective",
    "RoutedOneStep",
    "__version__",
    "attack_success",
    "check_clamp",
    "check_in_range",
    "entropy_attack",
    "frozen_parameters",
    "objective_values",
    "one_step",
    "per_example_norm",
    "pgd",
    "pgd_plus",
    "random_in_ball",
    "read_output",
]
