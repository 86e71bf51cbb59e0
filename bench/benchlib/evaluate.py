"""Attack a predictive: the test-time attacks of the paper's experiments, by name.

Attacks at test time are PGD1 (one normalised gradient step), PGD (``T`` steps, random
start), PGD+ (``T/2`` steps on the NLL then ``T/2`` on the entropy, Feng et al. 2024) and
ENT (PGD raising the predictive entropy), all in L2 balls, white box: each aims at the
predictive it is given (a BNN's posterior predictive, a reactive PPD, ...). AA is the
per-example worst case of the attack ensemble of Croce & Hein (2020)
(:func:`adv_attacks.robust_accuracy`, docs/theory.md "Reliable evaluation"), its version
chosen per predictive (:func:`ensemble_version`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from adv_attacks import RobustAccuracy, entropy_attack, one_step, pgd, pgd_plus, robust_accuracy
from bnn_core import accuracy, is_bayesian, nll, predictive_entropy

ATTACKS = ("Clean", "PGD1", "PGD", "PGD+", "ENT")
"""The paper's attacks, in its column order."""


@dataclass(frozen=True)
class AttackSettings:
    """How hard the test-time attacks work.

    Attributes:
        steps: Steps of PGD and ENT; PGD+ uses ``steps // 2`` on each objective (the paper:
            50, i.e. 25 + 25).
        random_start: Start PGD-type attacks uniformly in the ball (docs/theory.md).
        clamp: Valid input range, or ``None`` for unbounded (standardised tabular) inputs.
        objective: The label objective of PGD1, PGD and the first half of PGD+: ``"nll"``
            (classification) or ``"mse"``/``"nll"`` for regression.
        aa_steps: APGD iterations of AA (per target for APGD-T); AutoAttack: 100.
        aa_targets: APGD-T targets of AA's standard version; AutoAttack: 9.
        aa_queries: Square's query budget in AA's standard version; AutoAttack: 5000.
        aa_eot: Redraws averaged per gradient in AA's rand version; AutoAttack: 20.
        aa_version: ``"standard"`` or ``"rand"`` for every predictive, or ``None`` (default):
            per predictive, by :func:`ensemble_version`.
    """

    steps: int = 50
    random_start: bool = True
    clamp: tuple[float, float] | None = (0.0, 1.0)
    objective: str = "nll"
    aa_steps: int = 100
    aa_targets: int = 9
    aa_queries: int = 5000
    aa_eot: int = 20
    aa_version: str | None = None


def attack_settings(profile: object, **changes: object) -> AttackSettings:
    """The attack effort a script's profile sets: ``attack_steps`` and, where it has them,
    ``aa_steps``, ``aa_targets``, ``aa_queries`` and ``aa_eot``; ``changes`` on top."""
    fields = {"steps": getattr(profile, "attack_steps", AttackSettings.steps)}
    for name in ("aa_steps", "aa_targets", "aa_queries", "aa_eot"):
        if hasattr(profile, name):
            fields[name] = getattr(profile, name)
    return AttackSettings(**{**fields, **changes})  # type: ignore[arg-type]


AttackFn = Callable[..., Tensor]
"""``fn(predictive, x, y, eps, settings, generator) -> x_adv`` (see :data:`ATTACK_FUNCTIONS`)."""


def _pgd1(predictive, x, y, eps, settings, generator):
    return one_step(
        predictive,
        x,
        y,
        eps=eps,
        clamp=settings.clamp,
        generator=generator,
        objective=settings.objective,
    )


def _pgd(predictive, x, y, eps, settings, generator):
    return pgd(
        predictive,
        x,
        y,
        eps=eps,
        clamp=settings.clamp,
        generator=generator,
        steps=settings.steps,
        random_start=settings.random_start,
        objective=settings.objective,
    )


def _pgd_plus(predictive, x, y, eps, settings, generator):
    half = max(1, settings.steps // 2)
    return pgd_plus(
        predictive,
        x,
        y,
        eps=eps,
        clamp=settings.clamp,
        generator=generator,
        nll_steps=half,
        entropy_steps=half,
        random_start=settings.random_start,
        objective=settings.objective,
    )


def _entropy(sign: int) -> AttackFn:
    def run(predictive, x, y, eps, settings, generator):
        return entropy_attack(
            predictive,
            x,
            y,
            eps=eps,
            clamp=settings.clamp,
            generator=generator,
            steps=settings.steps,
            random_start=settings.random_start,
            entropy_sign=sign,
        )

    return run


def ensemble_version(predictive: object, settings: AttackSettings) -> str:
    """AA's version for ``predictive``: ``"rand"`` for a stochastic one, else ``"standard"``.

    Stochastic: a posterior predictive (``resample``) of a model with Bayesian layers: its
    deployed prediction redraws the weights, so AA averages gradients over redraws (EOT) and
    judges at fresh draws. Deterministic: a point estimate's predictive (its draws are all
    the same network) and a reactive PPD (no ``resample``: its draws are fixed at fit), where
    AA runs APGD-CE, APGD-T and Square. ``settings.aa_version`` overrides.
    """
    if settings.aa_version is not None:
        return settings.aa_version
    model = getattr(predictive, "model", predictive)
    stochastic = callable(getattr(predictive, "resample", None)) and (
        isinstance(model, torch.nn.Module) and is_bayesian(model)
    )
    return "rand" if stochastic else "standard"


def ensemble(predictive, x, y, eps, settings, generator) -> RobustAccuracy:
    """AA's full result at L2 strength ``eps``: :func:`adv_attacks.robust_accuracy`.

    ``result.x_adv`` is the fooling point where an attack found one, else the clean input,
    so scoring it on the predictive that judged the ensemble reproduces ``result.accuracy``
    (the standard version; the rand version judges at fresh draws).
    """
    version = ensemble_version(predictive, settings)
    return robust_accuracy(
        predictive,
        x,
        y,
        eps,
        "l2",
        version=version,
        steps=settings.aa_steps,
        n_targets=settings.aa_targets,
        n_queries=settings.aa_queries,
        eot=settings.aa_eot,
        clamp=settings.clamp,
        generator=generator,
        progress=False,
    )


def _aa(predictive, x, y, eps, settings, generator):
    return ensemble(predictive, x, y, eps, settings, generator).x_adv


ATTACK_FUNCTIONS: dict[str, AttackFn] = {
    "PGD1": _pgd1,
    "PGD": _pgd,
    "PGD+": _pgd_plus,
    "ENT": _entropy(+1),
    "ENT-": _entropy(-1),
    "AA": _aa,
}
"""Every test-time attack a script can run, by name: the registry.

An entry is ``fn(predictive, x, y, eps, settings, generator) -> x_adv`` (a new tensor; ``x``
is never modified), white box on ``predictive``, at L2 strength ``eps``, with the effort of
:class:`AttackSettings`. ``ENT-`` lowers the predictive entropy (the attack on
out-of-distribution inputs of the selective-prediction study, Figure 5); ``AA`` is the
ensemble's worst case (:func:`ensemble`; classification only). Adding an attack is
one entry here, e.g. ``ATTACK_FUNCTIONS["X"] = lambda p, x, y, eps, s, g: ...``; the scripts
then accept it in ``--attacks`` (``bench/mnist.py``, ``bench/regression.py``)."""


def attack(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor,
    name: str,
    eps: float,
    settings: AttackSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Return the batch ``x`` attacked by ``name`` at L2 strength ``eps`` (``Clean``: ``x``).

    ``name`` is ``"Clean"`` or a key of :data:`ATTACK_FUNCTIONS`.
    """
    if name != "Clean" and name not in ATTACK_FUNCTIONS:
        raise ValueError(
            f"attack must be 'Clean' or one of {sorted(ATTACK_FUNCTIONS)}; got {name!r}"
        )
    if name == "Clean" or eps == 0:
        return x
    return ATTACK_FUNCTIONS[name](predictive, x, y, eps, settings, generator)


def classification_metrics(log_probs: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, NLL and mean predictive entropy of a classification predictive.

    Args:
        log_probs: ``(B, C)`` predictive log-probabilities.
        y: ``(B,)`` labels.
    """
    return {
        "accuracy": float(accuracy(log_probs, y)),
        "nll": float(nll(log_probs, y)),
        "entropy": float(predictive_entropy(log_probs)),
    }


def batched(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, size: int) -> Tensor:
    """Apply ``fn(x_chunk, y_chunk)`` over chunks of ``size`` examples and concatenate."""
    return torch.cat([fn(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)])
