"""The predictive protocol: how an attack reads a model's output (docs/architecture.md).

A *predictive* is any callable ``predictive(x) -> output``:

* classification: a ``(B, C)`` tensor of logits or log-probabilities; attacks always apply
  ``log_softmax`` to it, the identity on log-probabilities, so a plain classifier and a
  Bayesian posterior predictive (PPD log-probabilities; paper, Section 3.1) are read the same way;
* regression: a tuple ``(mean, var)`` of ``(B,)`` or ``(B, 1)`` tensors, a Gaussian
  predictive (for a BNN the moment-matched PPD).

Optionally it has ``resample(generator=None)``, which draws fresh posterior samples; attacks
run with ``eot=True`` call it before every gradient step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ClassificationOutput",
    "RegressionOutput",
    "PredictiveOutput",
    "cat_outputs",
    "read_output",
]


@dataclass(frozen=True)
class ClassificationOutput:
    """A classification predictive read at a batch of inputs.

    Attributes:
        log_probs: Log-probabilities, ``log_softmax`` of what the predictive returned.

    Shape:
        - log_probs: ``(B, C)``.
    """

    log_probs: Tensor

    @property
    def batch_size(self) -> int:
        """Number of examples ``B``."""
        return self.log_probs.shape[0]

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return self.log_probs.shape[1]

    def prediction(self) -> Tensor:
        """Most probable class per example, shape ``(B,)`` (``int64``, no gradient)."""
        return self.log_probs.detach().argmax(dim=-1)

    def select(self, index: Tensor) -> ClassificationOutput:
        """The examples ``index`` (a 1-D ``int64`` tensor), in that order."""
        return ClassificationOutput(self.log_probs.index_select(0, index.to(self.log_probs.device)))


@dataclass(frozen=True)
class RegressionOutput:
    """A Gaussian regression predictive read at a batch of inputs.

    Attributes:
        mean: Predictive mean.
        var: Predictive variance (positive).

    Shape:
        - mean, var: ``(B,)`` (a trailing singleton dimension is dropped).
    """

    mean: Tensor
    var: Tensor

    @property
    def batch_size(self) -> int:
        """Number of examples ``B``."""
        return self.mean.shape[0]

    def prediction(self) -> Tensor:
        """Predictive mean per example, shape ``(B,)`` (no gradient)."""
        return self.mean.detach()

    def select(self, index: Tensor) -> RegressionOutput:
        """The examples ``index`` (a 1-D ``int64`` tensor), in that order."""
        index = index.to(self.mean.device)
        return RegressionOutput(self.mean.index_select(0, index), self.var.index_select(0, index))


PredictiveOutput = ClassificationOutput | RegressionOutput


def _as_vector(t: object, what: str, batch_size: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"predictive output: {what} must be a tensor, got {type(t).__name__}")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t.squeeze(1)
    if t.shape != (batch_size,):
        raise ValueError(
            f"predictive output: {what} must have shape ({batch_size},) or ({batch_size}, 1) "
            f"for a batch of {batch_size}; got {tuple(t.shape)}"
        )
    return t


def read_output(output: object, batch_size: int) -> PredictiveOutput:
    """Interpret what a predictive returned for a batch of ``batch_size`` inputs.

    Args:
        output: A ``(B, C)`` tensor of logits or log-probabilities (classification), or a
            ``(mean, var)`` pair of ``(B,)`` / ``(B, 1)`` tensors (Gaussian regression).
        batch_size: ``B``, the number of inputs the predictive was called on.

    Returns:
        A :class:`ClassificationOutput` (with ``log_softmax`` applied) or a
        :class:`RegressionOutput`.

    Raises:
        TypeError: If ``output`` is neither a tensor nor a pair of tensors.
        ValueError: If the shapes do not match the batch.

    Examples:
        >>> import torch
        >>> out = read_output(torch.zeros(4, 3), batch_size=4)
        >>> out.num_classes
        3
    """
    if isinstance(output, Tensor):
        if output.ndim != 2 or output.shape[0] != batch_size:
            raise ValueError(
                "predictive output: a classification predictive must return (B, C) logits or "
                f"log-probabilities with B = {batch_size}; got shape {tuple(output.shape)}"
            )
        return ClassificationOutput(F.log_softmax(output, dim=-1))
    if isinstance(output, tuple | list) and len(output) == 2:
        mean = _as_vector(output[0], "mean", batch_size)
        var = _as_vector(output[1], "var", batch_size)
        return RegressionOutput(mean, var)
    raise TypeError(
        "predictive output must be a (B, C) tensor (classification) or a (mean, var) tuple "
        f"(Gaussian regression); got {type(output).__name__}"
    )


def cat_outputs(outputs: list[PredictiveOutput]) -> PredictiveOutput:
    """Concatenate the outputs of consecutive chunks of a batch (same kind, in order).

    Args:
        outputs: Non-empty list of outputs of one kind.

    Returns:
        One output over the whole batch.
    """
    if len(outputs) == 1:
        return outputs[0]
    first = outputs[0]
    if isinstance(first, ClassificationOutput):
        return ClassificationOutput(torch.cat([o.log_probs for o in outputs]))  # type: ignore[union-attr]
    return RegressionOutput(
        torch.cat([o.mean for o in outputs]),  # type: ignore[union-attr]
        torch.cat([o.var for o in outputs]),  # type: ignore[union-attr]
    )
