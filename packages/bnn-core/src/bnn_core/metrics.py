"""Evaluation metrics of predictive distributions (docs/theory.md).

Classification metrics take ``(B, C)`` *outputs*: logits or log-probabilities (e.g. the
PPD from :class:`bnn_core.PosteriorPredictive`); ``log_softmax`` is applied first, which is
the identity on log-probabilities. Regression metrics take means, variances and targets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bnn_core._checks import as_enum, check_positive_int, check_tensor
from bnn_core.enums import Reduction
from bnn_core.likelihood import gaussian_log_prob, gaussian_mixture_log_prob, match_target

__all__ = [
    "accuracy",
    "brier_score",
    "expected_calibration_error",
    "gaussian_mixture_nll",
    "gaussian_nll",
    "mutual_information",
    "nll",
    "predictive_entropy",
    "rmse",
]


def _reduce(values: Tensor, reduction: Reduction | str) -> Tensor:
    reduction = as_enum(Reduction, reduction, "reduction")
    if reduction is Reduction.MEAN:
        return values.mean()
    if reduction is Reduction.SUM:
        return values.sum()
    return values


def _log_probs(outputs: Tensor) -> Tensor:
    check_tensor(outputs, "outputs", ndim=2, floating=True)
    return outputs.log_softmax(dim=-1)


def _labels(target: Tensor, outputs: Tensor) -> Tensor:
    check_tensor(target, "target", ndim=1, integer=True)
    if target.shape[0] != outputs.shape[0]:
        raise ValueError(
            f"target must have shape ({outputs.shape[0]},) to match outputs "
            f"{tuple(outputs.shape)}; got {tuple(target.shape)}"
        )
    if target.device != outputs.device:
        raise ValueError(f"target is on {target.device} but outputs are on {outputs.device}")
    num_classes = outputs.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target must hold class indices in [0, {num_classes - 1}]")
    return target


def accuracy(outputs: Tensor, target: Tensor, reduction: Reduction | str = "mean") -> Tensor:
    """Fraction of examples whose most probable class is the label.

    Args:
        outputs: ``(B, C)`` logits or log-probabilities.
        target: ``(B,)`` integer labels.
        reduction: ``"mean"`` (default), ``"sum"`` (the count) or ``"none"`` (``(B,)``
            zeros and ones).

    Returns:
        A scalar (or ``(B,)``) float tensor.

    Examples:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
        tensor(0.5000)
    """
    check_tensor(outputs, "outputs", ndim=2, floating=True)
    target = _labels(target, outputs)
    correct = (outputs.argmax(dim=-1) == target).to(outputs.dtype)
    return _reduce(correct, reduction)


def nll(outputs: Tensor, target: Tensor, reduction: Reduction | str = "mean") -> Tensor:
    """Negative log-likelihood ``−log p(y | x, D)`` of the labels under the predictive.

    For a BNN pass the PPD log-probabilities (docs/theory.md: the NLL of the PPD, not the mean
    of per-draw NLLs).

    Args:
        outputs: ``(B, C)`` logits or log-probabilities.
        target: ``(B,)`` integer labels.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        Nats; a scalar (or ``(B,)``) tensor, differentiable in ``outputs``.
    """
    log_probs = _log_probs(outputs)
    target = _labels(target, outputs)
    per_example = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    return _reduce(per_example, reduction)


def predictive_entropy(outputs: Tensor, reduction: Reduction | str = "mean") -> Tensor:
    """Entropy ``H[p(y | x, D)] = −Σ_c p_c log p_c`` of each predictive distribution.

    Args:
        outputs: ``(B, C)`` logits or log-probabilities.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        Nats, in ``[0, log C]``; differentiable in ``outputs`` (also where ``p_c = 0``).
    """
    log_probs = _log_probs(outputs)
    zero = torch.isneginf(log_probs)
    safe = torch.where(zero, torch.zeros_like(log_probs), log_probs)
    terms = torch.where(zero, torch.zeros_like(log_probs), safe.exp() * safe)
    return _reduce(-terms.sum(dim=-1), reduction)


def expected_calibration_error(outputs: Tensor, target: Tensor, num_bins: int = 15) -> Tensor:
    """Expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = Σ_b (n_b / B) |acc_b − conf_b|`` where bin ``b`` holds the examples whose
    top-class probability lies in ``((b−1)/n, b/n]``.

    Args:
        outputs: ``(B, C)`` logits or log-probabilities.
        target: ``(B,)`` integer labels.
        num_bins: Number of equal-width bins on ``[0, 1]``. Default ``15``.

    Returns:
        A scalar in ``[0, 1]``.
    """
    probs = _log_probs(outputs).exp()
    target = _labels(target, outputs)
    num_bins = check_positive_int(num_bins, "num_bins")
    if target.numel() == 0:
        raise ValueError("outputs must hold at least one example")
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == target).to(probs.dtype)
    inner_edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=probs.dtype, device=probs.device)
    bins = torch.bucketize(confidence, inner_edges[1:-1], right=False)
    gap = torch.zeros(num_bins, dtype=probs.dtype, device=probs.device)
    gap.index_add_(0, bins, correct - confidence)
    return gap.abs().sum() / target.numel()


def brier_score(outputs: Tensor, target: Tensor, reduction: Reduction | str = "mean") -> Tensor:
    """Brier score ``Σ_c (p_c − 1[y = c])²`` of each predictive distribution (Brier 1950).

    The multi-class form (a proper scoring rule, lower is better): ``0`` for a confident
    right answer, ``2`` for a confident wrong one, ``1 − 1/C`` for the uniform predictive.

    Args:
        outputs: ``(B, C)`` logits or log-probabilities (e.g. the PPD's).
        target: ``(B,)`` integer labels.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        A scalar (or ``(B,)``) tensor in ``[0, 2]``, differentiable in ``outputs``.

    Examples:
        >>> brier_score(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))  # p = (½, ½)
        tensor(0.5000)
    """
    probs = _log_probs(outputs).exp()
    target = _labels(target, outputs)
    onehot = torch.zeros_like(probs).scatter_(1, target.unsqueeze(1), 1.0)
    return _reduce((probs - onehot).square().sum(dim=-1), reduction)


def mutual_information(draw_outputs: Tensor, reduction: Reduction | str = "mean") -> Tensor:
    """The epistemic part of the predictive entropy, ``I[y; β | x] = H[E_β p] − E_β H[p]``.

    The mutual information between the label and the weights (Houlsby et al. 2011, "BALD";
    Depeweg et al. 2018): the predictive entropy of the PPD ``(1/M) Σ_m p(y | x, β_m)``
    minus the mean entropy of the per-draw predictives. It is ``0`` when every draw
    predicts the same distribution, and at most ``min(log C, log M)``.

    Args:
        draw_outputs: ``(M, B, C)`` per-draw logits or log-probabilities (e.g. from
            :func:`bnn_core.forward_samples`); ``log_softmax`` is applied per draw.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        Nats, ``>= 0`` (clamped at ``0`` against rounding); differentiable.

    Examples:
        >>> draws = torch.tensor([[[9.0, -9.0]], [[-9.0, 9.0]]])  # two confident, opposite
        >>> round(float(mutual_information(draws)), 4)  # ≈ log 2
        0.6931
    """
    check_tensor(draw_outputs, "draw_outputs", ndim=3, floating=True)
    if draw_outputs.shape[0] == 0:
        raise ValueError("draw_outputs must hold at least one draw (M >= 1)")
    log_probs = draw_outputs.log_softmax(dim=-1)  # (M, B, C)
    m = draw_outputs.shape[0]
    ppd = torch.logsumexp(log_probs, dim=0) - math.log(m)  # (B, C)
    total = predictive_entropy(ppd, reduction="none")
    per_draw = predictive_entropy(log_probs.flatten(0, 1), reduction="none").view(
        m, draw_outputs.shape[1]
    )
    return _reduce((total - per_draw.mean(dim=0)).clamp_min(0.0), reduction)


def rmse(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error over all examples and output dimensions.

    Args:
        pred: Predictions ``(B,)`` or ``(B, D...)`` (e.g. the PPD mean).
        target: Same shape (or ``(B,)`` for a ``(B, 1)`` prediction).

    Returns:
        A scalar tensor, in the targets' units.
    """
    check_tensor(pred, "pred", min_ndim=1, floating=True)
    target = match_target(pred, target, "pred")
    return (pred - target).square().mean().sqrt()


def gaussian_nll(
    mean: Tensor, var: Tensor | float, target: Tensor, reduction: Reduction | str = "mean"
) -> Tensor:
    """NLL ``−log N(y; mean, var)`` of a Gaussian predictive (e.g. the moment-matched PPD).

    Args:
        mean: Predicted means ``(B,)`` or ``(B, D...)``.
        var: Predictive variances ``> 0`` (float or tensor broadcastable to ``mean``).
        target: Observed ``y`` (shape of ``mean``, or ``(B,)`` for a ``(B, 1)`` mean).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        Nats per example (summed over output dimensions), reduced.
    """
    return _reduce(-gaussian_log_prob(mean, var, target), reduction)


def gaussian_mixture_nll(
    means: Tensor,
    noise_var: Tensor | float,
    target: Tensor,
    reduction: Reduction | str = "mean",
) -> Tensor:
    """NLL of the exact regression PPD, the mixture ``(1/M) Σ_m N(y; f_m(x), s²)``.

    Args:
        means: ``(M, B)`` or ``(M, B, D...)`` per-draw predictions.
        noise_var: Observation-noise variance ``s² > 0``.
        target: Observed ``y`` (shape ``means.shape[1:]``, or ``(B,)`` for ``(M, B, 1)``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        Nats per example, reduced.

    Examples:
        >>> means = torch.zeros(3, 2)
        >>> gaussian_mixture_nll(means, 1.0, torch.zeros(2))  # = ½ log 2π
        tensor(0.9189)
    """
    return _reduce(-gaussian_mixture_log_prob(means, noise_var, target), reduction)
