"""Attack objectives ``J(x', y)``, the per-example quantities an attacker ascends (docs/theory.md).

Classification objectives read the log-probabilities of the predictive; for a Bayesian
network these are the log of the *mean* probabilities over posterior draws (the PPD), so the
objective is computed on the PPD, not on mean logits nor as a mean of per-draw losses.

| objective | classification | Gaussian regression |
|---|---|---|
| `nll` | `-log p_y` | `½ log 2πv + (y - m)² / 2v` |
| `mse` | not defined (ValueError) | `(y - m)²` |
| `cw` | `min(max_{k≠y} log p_k - log p_y, κ)` | not defined (ValueError) |
| `entropy` | `s · H[p]`, `s = ±1` | `s · log √v` |
| `dlr` | `-(log p_y - max_{k≠y} log p_k) / (log p_π1 - log p_π3)` | not defined (ValueError) |

Targeted variants (``targeted=True``, ``y`` = the target) ascend ``log p_t`` (``nll``),
``min(log p_t - max_{k≠t} log p_k, κ)`` (``cw``) or minus the regression loss at the target
value (``nll``, ``mse``); ``entropy`` has no target (its sign says which way to push).
``dlr`` (Croce & Hein 2020, the difference of logits ratio; ``π`` sorts the classes by
decreasing log-probability) is untargeted; its targeted form, which reads both the label
and a target, is :class:`TargetedDLR` (APGD-T).
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

__all__ = [
    "DLR_TINY",
    "Objective",
    "ObjectiveSpec",
    "TargetedDLR",
    "attack_success",
    "dlr_values",
    "objective_values",
    "targeted_dlr_values",
]

_LOG_2PI = math.log(2.0 * math.pi)


class Objective(StrEnum):
    """What the attacker ascends (docs/theory.md, "Attacks")."""

    NLL = "nll"
    """Cross-entropy of the predictive ``-log p(y | x')``; Gaussian NLL for regression."""
    MSE = "mse"
    """Squared error of the predictive mean (regression only)."""
    CW = "cw"
    """Carlini–Wagner margin on log-probabilities, true class masked, capped at κ."""
    ENTROPY = "entropy"
    """Predictive entropy (regression: log predictive std), times ``entropy_sign``."""
    DLR = "dlr"
    """Difference of logits ratio (Croce & Hein 2020) on log-probabilities; classification,
    at least 3 classes, untargeted only."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """A fully specified objective: which one, and its options.

    Attributes:
        objective: The objective (an :class:`Objective` or its string value).
        kappa: CW confidence κ ≥ 0: the margin is capped at ``κ`` (docs/theory.md clips the CW loss
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
        if self.targeted and objective is Objective.DLR:
            raise ValueError(
                "targeted=True is not defined for objective='dlr': the targeted DLR reads "
                "both the label and a target, use adv_attacks.TargetedDLR"
            )

    @property
    def needs_labels(self) -> bool:
        """Whether the objective reads ``y`` (every objective but ``entropy``)."""
        return self.objective is not Objective.ENTROPY

    def check_task(self, output: PredictiveOutput) -> None:
        """Raise ``ValueError`` if the objective is not defined for this kind of predictive."""
        if isinstance(output, RegressionOutput) and self.objective in (Objective.CW, Objective.DLR):
            raise ValueError(
                f"objective={Objective(self.objective).value!r} needs a classification "
                "predictive; this predictive returned (mean, var) (regression): use 'nll', "
                "'mse' or 'entropy'"
            )
        if isinstance(output, ClassificationOutput):
            if self.objective is Objective.MSE:
                raise ValueError(
                    "objective='mse' needs a regression predictive returning (mean, var); "
                    "this one returned class scores: use 'nll', 'cw' or 'entropy'"
                )
            if self.objective is Objective.CW and output.num_classes < 2:
                raise ValueError("objective='cw' needs at least 2 classes")
            if self.objective is Objective.DLR and output.num_classes < 3:
                raise ValueError(
                    f"objective='dlr' needs at least 3 classes, got {output.num_classes}"
                )

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
    if objective is Objective.DLR:
        return dlr_values(lp, y)
    lp_y = lp.gather(1, y.unsqueeze(1)).squeeze(1)
    if objective is Objective.NLL:
        return lp_y if targeted else -lp_y
    # CW: mask the true (or target) class with -inf before the max (docs/theory.md), never
    # max((1 - onehot) * z), which picks the masked zero whenever the other scores are < 0.
    other = _others_max(lp, y)
    margin = lp_y - other if targeted else other - lp_y
    return margin.clamp_max(kappa)


DLR_TINY = 1e-12
"""Added to the DLR denominators (as in the reference implementation of Croce & Hein 2020)
so that a predictive whose three (four) largest scores tie gives a finite value."""


def _others_max(lp: Tensor, y: Tensor) -> Tensor:
    """``max_{k≠y} lp_k`` per row: the label masked with ``-inf`` before the max."""
    mask = torch.zeros_like(lp, dtype=torch.bool).scatter_(1, y.unsqueeze(1), True)
    return lp.masked_fill(mask, float("-inf")).amax(dim=1)


def dlr_values(log_probs: Tensor, y: Tensor) -> Tensor:
    """Difference of logits ratio, ``-(z_y - max_{k≠y} z_k) / (z_π1 - z_π3 + 10⁻¹²)``.

    Croce & Hein (2020), eq. (5), with ``z`` the log-probabilities of the predictive and
    ``z_π1 ≥ z_π2 ≥ …`` its sorted scores. The ratio is invariant to a shift of ``z`` (and to
    a positive rescaling): on logits and on their ``log_softmax`` it is the same number, so
    for a deterministic classifier it equals the reference's DLR on logits; for a BNN it is
    taken on the log of the mean probabilities (the PPD).

    Args:
        log_probs: ``(B, C)``, ``C >= 3``.
        y: Labels ``(B,)``.

    Returns:
        ``(B,)``; positive exactly where the prediction differs from ``y``.

    Examples:
        >>> z = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
        >>> dlr_values(z, torch.tensor([0]))  # -(3 - 1) / (3 - 0)
        tensor([-0.6667])
    """
    top3 = log_probs.topk(3, dim=1).values
    z_y = log_probs.gather(1, y.unsqueeze(1)).squeeze(1)
    return -(z_y - _others_max(log_probs, y)) / (top3[:, 0] - top3[:, 2] + DLR_TINY)


def targeted_dlr_values(log_probs: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR, ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 10⁻¹²)`` (APGD-T).

    Croce & Hein (2020), eq. (6): ascending it moves the score of the target ``t`` above
    the label's ``y``; shift-invariant like :func:`dlr_values`.

    Args:
        log_probs: ``(B, C)``, ``C >= 4``.
        y: Labels ``(B,)``.
        target: Target classes ``(B,)``.

    Returns:
        ``(B,)``.

    Examples:
        >>> z = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
        >>> targeted_dlr_values(z, torch.tensor([0]), torch.tensor([1]))  # -2 / 3.5
        tensor([-0.5714])
    """
    top4 = log_probs.topk(4, dim=1).values
    z_y = log_probs.gather(1, y.unsqueeze(1)).squeeze(1)
    z_t = log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    return -(z_y - z_t) / (top4[:, 0] - 0.5 * (top4[:, 2] + top4[:, 3]) + DLR_TINY)


@dataclass(frozen=True)
class TargetedDLR:
    """The targeted DLR objective with one target per example (used by APGD-T).

    Stands where an :class:`ObjectiveSpec` is (``total``, ``values``, ``check_task``,
    ``needs_labels``, ``targeted``, ``chunk``). ``y`` stays the *label*: an attack on it is
    untargeted in its success criterion (the prediction differs from ``y``) and targeted only
    in the direction it ascends.

    Attributes:
        targets: ``(B,)`` ``int64`` target classes.

    Examples:
        >>> from adv_attacks.predictive import read_output
        >>> spec = TargetedDLR(torch.tensor([1]))
        >>> spec.values(read_output(torch.tensor([[3.0, 1.0, 0.0, -1.0]]), 1), torch.tensor([0]))
        tensor([-0.5714])
    """

    targets: Tensor
    needs_labels = True
    targeted = False

    def __post_init__(self) -> None:
        t = self.targets
        if not isinstance(t, Tensor) or t.ndim != 1 or t.dtype != torch.long:
            raise TypeError("targets must be a 1-D int64 tensor (one target per example)")

    def check_task(self, output: PredictiveOutput) -> None:
        """A classification predictive with at least 4 classes."""
        if not isinstance(output, ClassificationOutput):
            raise ValueError("the targeted DLR needs a classification predictive")
        if output.num_classes < 4:
            raise ValueError(f"the targeted DLR needs at least 4 classes, got {output.num_classes}")

    def chunk(self, part: slice) -> TargetedDLR:
        """The same objective for the examples ``part`` of the batch."""
        return TargetedDLR(self.targets[part])

    def total(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """``Σ_b J_b``."""
        return self.values(output, y).sum()

    def values(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """Per-example values, ``(B,)``; see :func:`targeted_dlr_values`."""
        self.check_task(output)
        if y is None:
            raise ValueError("the targeted DLR needs labels y; got None")
        assert isinstance(output, ClassificationOutput)
        if self.targets.shape[0] != output.batch_size:
            raise ValueError(
                f"targets has {self.targets.shape[0]} entries for a batch of {output.batch_size}"
            )
        return targeted_dlr_values(output.log_probs, y, self.targets.to(y.device))


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
    """Per-example attack objective ``J(x', y)`` (docs/theory.md), the quantity attacks ascend.

    Args:
        output: The predictive read at ``x'`` (see :func:`adv_attacks.predictive.read_output`).
        y: Labels ``(B,)`` (``int64`` class indices, or regression targets), or targets when
            ``targeted``; ignored (may be ``None``) for ``entropy``.
        objective: ``"nll"``, ``"mse"``, ``"cw"``, ``"entropy"`` or ``"dlr"``.
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
