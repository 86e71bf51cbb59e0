"""Per-point log-likelihoods ``log p(y | x', β)`` from one posterior draw's outputs (paper, eq. 11).

Classification: the categorical likelihood of the model's softmax,
``log p(y | x', β) = log_softmax(f_β(x'))_y``. Regression: the Gaussian likelihood with the
learned observation noise ``s`` of :class:`bnn_core.GaussianLikelihood`,
``log N(y; f_β(x'), s²)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bnn_core import GaussianLikelihood, Task
from robust_vi._checks import as_enum

__all__ = ["log_likelihood"]


def log_likelihood(
    outputs: Tensor,
    y: Tensor,
    task: Task | str = Task.CLASSIFICATION,
    likelihood: GaussianLikelihood | None = None,
) -> Tensor:
    """Log-likelihood of each example under one posterior draw, in nats.

    Args:
        outputs: The model's outputs ``f_β(x')``: ``(B, C)`` logits (classification) or
            ``(B, D)`` / ``(B,)`` predicted means (regression).
        y: ``(B,)`` class indices, or regression targets of the outputs' shape (``(B,)``
            for ``(B, 1)`` outputs).
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression only: the Gaussian likelihood holding ``s``.

    Returns:
        ``(B,)`` log-likelihoods, differentiable in ``outputs`` (and in ``s``).

    Examples:
        >>> log_likelihood(torch.zeros(2, 4), torch.tensor([0, 3]))  # log(1/4)
        tensor([-1.3863, -1.3863])
    """
    task = as_enum(Task, task, "task")
    if task is Task.CLASSIFICATION:
        if outputs.ndim != 2:
            raise ValueError(
                f"task='classification' needs (B, C) logits; got shape {tuple(outputs.shape)}"
            )
        num_classes = outputs.shape[1]
        if y.numel() and bool((y.min() < 0) | (y.max() >= num_classes)):
            raise ValueError(
                f"y must hold class indices in [0, {num_classes}) for the model's "
                f"{num_classes} logits; got values in [{int(y.min())}, {int(y.max())}]"
            )
        return -F.cross_entropy(outputs, y, reduction="none")
    if likelihood is None:
        raise ValueError("task='regression' needs the GaussianLikelihood: pass likelihood=")
    return likelihood.log_prob(outputs, y)
