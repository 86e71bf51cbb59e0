"""Attack objectives ``J(x', y)``, the per-example quantities an attacker ascends (SPEC §2).

Classification objectives read the log-probabilities of the predictive; for a Bayesian
network these are the log of the *mean* probabilities over posterior draws (the PPD), so the
objective is computed on the PPD, not on mean logits nor as a mean of per-draw losses.

| objective | classification | Gaussian regression |
|---|---|---|
| `nll` | `-log p_y` | `½ log 2πv + (y - m)² / 2v` |
| `mse` | not defined (ValueError) | `(y - m)²` |
| `cw` | `min(max_{k≠y} log p_k - log p_y, κ)` | not defined (ValueError) |
| `entropy` | `s · H[p]`, `s = ±1` | `s · log √v` |

Targeted variants (``targeted=True``, ``y`` = the target) ascend ``log p_t`` (``nll``),
``min(log p_t - max_{k≠t} log p_k, κ)`` (``cw``) or minus the regression loss at the target
value (``nll``, ``mse``); ``entropy`` has no target (its sign says which way to push).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor

from adv_attacks._options import coerce_option
from adv_attacks.predictive import ClassificationOutput, PredictiveOutput, RegressionOutput

__all__ = ["Objective", "ObjectiveSpec", "objective_values", "attack_success"]

_LOG_2PI = math.log(2.0 * math.pi)


class Objective(StrEnum):
    """What the attacker ascends (SPEC §2)."""

    NLL = "nll"
    """Cross-entropy of the predictive ``-log p(y | x')``; Gaussian NLL for regression."""
    MSE = "mse"
    """Squared error of the predictive mean (regression only)."""
    CW = "cw"
    """Carlini–Wagner margin on log-probabilities, true class masked, capped at κ."""
    ENTROPY = "entropy"
    """Predictive entropy (regression: log predictive std), times ``entropy_sign``."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """A fully specified objective: which one, and its options.

    Attributes:
        objective: The objective (an :class:`Objective` or its string value).
        kappa: CW confidence κ ≥ 0: the margin is capped at ``κ`` (SPEC §2 clips the CW loss
            ``log p_y - max_{k≠y} log p_k`` at ``-κ``).
        entropy_sign: ``+1`` raises the predictive entropy, ``-1`` lowers it
            (over-confidence, e.g. on out-of-distribution inputs).
        targeted: Whether ``y`` is a target to move towards rather than a label to move away
            from (``nll``, ``mse``, ``cw`` only).

    Examples:
        >>> spec = ObjectiveSpec("cw", kappa=0.5)
        >>> spec.needs_labels
        True
    """

    objective: Objective | str = Objective.NLL
    kappa: float = 0.0
    entropy_sign: int = 1
    targeted: bool = False

    def __post_init__(self) -> None:
        objective = coerce_option(Objective, self.objective, "objective")
        object.__setattr__(self, "objective", objective)
        if isinstance(self.kappa, bool) or not isinstance(self.kappa, int | float):
            raise TypeError(f"kappa must be a float, got {type(self.kappa).__name__}")
        if not (self.kappa >= 0.0 and math.isfinite(self.kappa)):
            raise ValueError(f"kappa must be finite and >= 0, got {self.kappa}")
        if self.entropy_sign not in (1, -1) or isinstance(self.entropy_sign, bool):
            raise ValueError(f"entropy_sign must be +1 or -1, got {self.entropy_sign!r}")
        if self.targeted and objective is Objective.ENTROPY:
            raise ValueError(
                "targeted=True is not defined for objective='entropy' "
                "(use entropy_sign to raise or lower the entropy)"
            )

    @property
    def needs_labels(self) -> bool:
        """Whether the objective reads ``y`` (every objective but ``entropy``)."""
        return self.objective is not Objective.ENTROPY

    def check_task(self, output: PredictiveOutput) -> None:
        """Raise ``ValueError`` if the objective is not defined for this kind of predictive."""
        if isinstance(output, RegressionOutput) and self.objective is Objective.CW:
            raise ValueError(
                "objective='cw' needs a classification predictive; this predictive returned "
                "(mean, var) (regression): use 'nll', 'mse' or 'entropy'"
            )
        if isinstance(output, ClassificationOutput):
            if self.objective is Objective.MSE:
                raise ValueError(
                    "objective='mse' needs a regression predictive returning (mean, var); "
                    "this one returned class scores: use 'nll', 'cw' or 'entropy'"
                )
            if self.objective is Objective.CW and output.num_classes < 2:
                raise ValueError("objective='cw' needs at least 2 classes")

    def chunk(self, part: slice) -> ObjectiveSpec:
        """The objective for the examples ``part`` of the batch: itself (the same for all).

        (:class:`~adv_attacks.RoutedObjective`, which differs per example, restricts itself.)
        """
        return self

    def total(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """``Σ_b J_b``, the scalar an attack differentiates (a fused kernel for ``nll``)."""
        if (
            self.objective is Objective.NLL
            and isinstance(output, ClassificationOutput)
            and y is not None
        ):
            total = F.nll_loss(output.log_probs, y, reduction="sum")
            return -total if self.targeted else total
        return self.values(output, y).sum()

    def values(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """Per-example objective values; see :func:`objective_values`."""
        self.check_task(output)
        obj = Objective(self.objective)
        if self.needs_labels and y is None:
            raise ValueError(f"objective={obj.value!r} needs labels y; got None")
        if isinstance(output, ClassificationOutput):
            return _classification(output, y, obj, self.kappa, self.entropy_sign, self.targeted)
        return _regression(output, y, obj, self.entropy_sign, self.targeted)


def _entropy(log_probs: Tensor) -> Tensor:
    # Clamp so that a class of probability exactly 0 (log-prob -inf) contributes 0, not NaN,
    # to the value and to the gradient.
    lp = log_probs.clamp_min(torch.finfo(log_probs.dtype).min)
    return -(lp.exp() * lp).sum(dim=-1)


def _classification(
    out: ClassificationOutput,
    y: Tensor | None,
    objective: Objective,
    kappa: float,
    sign: int,
    targeted: bool,
) -> Tensor:
    lp = out.log_probs
    if objective is Objective.ENTROPY:
        h = _entropy(lp)
        return h if sign > 0 else -h
    assert y is not None
    lp_y = lp.gather(1, y.unsqueeze(1)).squeeze(1)
    if objective is Objective.NLL:
        return lp_y if targeted else -lp_y
    # CW: mask the true (or target) class with -inf before the max (SPEC §2), never
    # max((1 - onehot) * z), which picks the masked zero whenever the other scores are < 0.
    mask = torch.zeros_like(lp, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)
    other = lp.masked_fill(mask, float("-inf")).amax(dim=1)
    margin = lp_y - other if targeted else other - lp_y
    return margin.clamp_max(kappa)


def _regression(
    out: RegressionOutput, y: Tensor | None, objective: Objective, sign: int, targeted: bool
) -> Tensor:
    if objective is Objective.ENTROPY:
        log_std = 0.5 * out.var.log()
        return log_std if sign > 0 else -log_std
    assert y is not None
    sq = (y - out.mean).square()
    if objective is Objective.MSE:
        loss = sq
    else:
        loss = 0.5 * (_LOG_2PI + out.var.log() + sq / out.var)
    return -loss if targeted else loss


def objective_values(
    output: PredictiveOutput,
    y: Tensor | None,
    objective: Objective | str = Objective.NLL,
    *,
    kappa: float = 0.0,
    entropy_sign: int = 1,
    targeted: bool = False,
) -> Tensor:
    """Per-example attack objective ``J(x', y)`` (SPEC §2), the quantity attacks ascend.

    Args:
        output: The predictive read at ``x'`` (see :func:`adv_attacks.predictive.read_output`).
        y: Labels ``(B,)`` (``int64`` class indices, or regression targets), or targets when
            ``targeted``; ignored (may be ``None``) for ``entropy``.
        objective: ``"nll"``, ``"mse"``, ``"cw"`` or ``"entropy"``.
        kappa: CW confidence κ ≥ 0: the margin ``max_{k≠y} log p_k - log p_y`` is capped at κ.
        entropy_sign: ``+1`` (raise the entropy) or ``-1`` (lower it).
        targeted: Ascend towards the target ``y`` instead of away from the label ``y``.

    Returns:
        Objective values, shape ``(B,)``, differentiable in the predictive's output.

    Raises:
        ValueError: For an objective undefined for this task (``cw`` on regression, ``mse``
            on classification), a missing ``y``, or a bad option.

    Examples:
        >>> from adv_attacks.predictive import read_output
        >>> out = read_output(torch.tensor([[2.0, 0.0, -1.0]]), batch_size=1)
        >>> objective_values(out, torch.tensor([0]), "cw")  # log p_1 - log p_0 = -2
        tensor([-2.])
    """
    spec = ObjectiveSpec(objective, kappa=kappa, entropy_sign=entropy_sign, targeted=targeted)
    return spec.values(output, y)


def attack_success(output: PredictiveOutput, y: Tensor, *, targeted: bool = False) -> Tensor:
    """Per-example success of a classification attack.

    Args:
        output: The predictive read at the adversarial inputs.
        y: Labels (untargeted: success = the prediction differs from ``y``) or targets
            (targeted: success = the prediction equals ``y``), shape ``(B,)``.
        targeted: Which of the two criteria.

    Returns:
        A ``(B,)`` boolean tensor.

    Raises:
        ValueError: For a regression predictive (success is not defined there).
    """
    if not isinstance(output, ClassificationOutput):
        raise ValueError("attack success is defined for classification predictives only")
    pred = output.prediction()
    return pred == y if targeted else pred != y
