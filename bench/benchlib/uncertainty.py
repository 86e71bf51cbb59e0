"""Scores of an uncertainty filter: selective accuracy and detection AUROC (Figure 5).

The selective-prediction study of the paper ("Downstream Task: Selective Accuracy") mixes
in-distribution inputs (MNIST) with out-of-distribution ones (Fashion-MNIST), drops the
fraction of inputs with the highest predictive entropy and scores what is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["auroc", "selective_accuracy"]


def _check(name: str, t: Tensor, n: int | None = None) -> Tensor:
    if t.dim() != 1 or (n is not None and t.shape[0] != n):
        want = "(B,)" if n is None else f"({n},)"
        raise ValueError(f"{name} must have shape {want}; got {tuple(t.shape)}")
    return t


def selective_accuracy(
    uncertainty: Tensor, correct: Tensor, ood: Tensor, *, keep: float = 0.5
) -> dict[str, float]:
    """Accuracy on the inputs an uncertainty filter keeps, kept OOD inputs counting as errors.

    The ``floor(keep · B)`` inputs of lowest ``uncertainty`` are kept (ties broken by
    position: a stable sort). A kept in-distribution input scores 1 when ``correct``; a kept
    out-of-distribution input always scores 0 (its label is not one of the classes).

    Args:
        uncertainty: ``(B,)`` scores, higher = more uncertain (the predictive entropy, nats).
        correct: ``(B,)`` bool, the prediction is right (ignored where ``ood``).
        ood: ``(B,)`` bool, the input is out of distribution.
        keep: The fraction kept, in ``(0, 1]`` (the paper: one half).

    Returns:
        ``selective_accuracy`` (on the kept inputs), ``kept_ood_fraction`` (of the kept
        inputs, OOD) and ``kept`` (how many).

    Example:
        >>> u = torch.tensor([0.1, 0.2, 0.9, 0.3])
        >>> selective_accuracy(u, torch.tensor([1, 0, 1, 1]).bool(),
        ...                    torch.tensor([0, 0, 0, 1]).bool())["selective_accuracy"]
        0.5
    """
    uncertainty = _check("uncertainty", uncertainty)
    n = uncertainty.shape[0]
    correct, ood = _check("correct", correct, n).bool(), _check("ood", ood, n).bool()
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1]; got {keep!r}")
    if torch.isnan(uncertainty).any():
        raise ValueError("uncertainty has NaN entries")
    k = int(keep * n)
    if k < 1:
        raise ValueError(f"keep = {keep} of {n} inputs keeps none")
    order = torch.sort(uncertainty, stable=True).indices[:k]
    score = correct[order] & ~ood[order]
    return {
        "selective_accuracy": float(score.float().mean()),
        "kept_ood_fraction": float(ood[order].float().mean()),
        "kept": float(k),
    }


def auroc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of ``scores`` separating ``positive`` from the rest.

    The probability that a random positive scores above a random negative, ties counting
    one half (the Mann–Whitney statistic). For OOD detection from the entropy, positives are
    the OOD inputs: 1 is a perfect detector, 0.5 chance, below 0.5 inverted.

    Args:
        scores: ``(B,)`` detection scores.
        positive: ``(B,)`` bool, with at least one positive and one negative.

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]).bool())
        0.75
    """
    scores = _check("scores", scores).double()
    positive = _check("positive", positive, scores.shape[0]).bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("positive must contain both positives and negatives")
    # average ranks (1-based) handle ties
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    _, inverse, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
