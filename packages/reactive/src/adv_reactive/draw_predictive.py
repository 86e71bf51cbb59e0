"""The predictive of a single posterior draw ``β_m``: ``x ↦ p(y | x, β_m)``.

Attack-based channels read a *predictive* (docs/architecture.md). The reactive defence
computes one-step keys ``μ_mi`` under each posterior draw separately (paper, eqs. 4 and 5), so it
needs the predictive of one draw: logits for classification, the Gaussian ``(f_m(x), s²)`` for
regression. While a one-step attack evaluates it at the clean training inputs, the outputs
can be recorded (:meth:`DrawPredictive.recording`) and reused as the per-draw predictions
``P_mi``, saving one forward pass per draw.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from adv_reactive.options import coerce_option
from bnn_core import Task, forward_samples

__all__ = ["DrawPredictive", "OutputTape"]


class OutputTape:
    """The inputs and (detached) outputs a :class:`DrawPredictive` saw while recording."""

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []

    def outputs_for(self, x: Tensor) -> Tensor | None:
        """The recorded outputs if the recorded inputs are exactly ``x``, in order; else None.

        Args:
            x: The batch the outputs are wanted for.

        Returns:
            The concatenated outputs (``(B, ...)``), or ``None`` when the predictive saw
            anything else (more, fewer or other inputs): then evaluate it again.
        """
        if not self.inputs or sum(t.shape[0] for t in self.inputs) != x.shape[0]:
            return None
        start = 0
        for seen in self.inputs:  # compare slice by slice: no copy of the batch
            stop = start + seen.shape[0]
            if seen.shape[1:] != x.shape[1:] or not torch.equal(seen, x[start:stop].detach()):
                return None
            start = stop
        return torch.cat(self.outputs) if len(self.outputs) > 1 else self.outputs[0]


class DrawPredictive(nn.Module):
    """The predictive of posterior draw ``index`` among stored draws (docs/architecture.md).

    Args:
        model: A model with :class:`bnn_core.BayesianModule` layers.
        draws: ``{"<layer>.weight": (M, *shape), ...}`` from :func:`bnn_core.sample_weights`
            (detached); layers without an entry use their mean.
        index: Which draw ``0 <= index < M``.
        task: ``"classification"`` (the output is ``(B, C)`` logits) or ``"regression"``
            (the output is ``(f_m(x), s²)``).
        noise_var: Regression only: the observation-noise variance ``s² > 0``.

    Shape:
        - Input: ``(B, ...)``, whatever ``model`` accepts.
        - Output: ``(B, C)`` logits, or ``(mean, var)`` of the model output's shape.

    Examples:
        >>> import bnn_core
        >>> model = bnn_core.mnist_cnn(image_size=12)
        >>> draws = bnn_core.sample_weights(model, 3)
        >>> DrawPredictive(model, draws, 1)(torch.rand(2, 1, 12, 12)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        model: nn.Module,
        draws: Mapping[str, Tensor],
        index: int,
        *,
        task: Task | str = Task.CLASSIFICATION,
        noise_var: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.task = coerce_option(Task, task, "task")
        sizes = {v.shape[0] for v in draws.values()}
        if len(sizes) > 1:
            raise ValueError(f"every entry of draws must hold the same number of draws; {sizes}")
        if sizes and not 0 <= index < sizes.pop():
            raise ValueError(f"index must be in [0, M); got {index}")
        self._weights = {k: v[index : index + 1].detach() for k, v in draws.items()}
        if self.task is Task.REGRESSION and (noise_var is None or not noise_var > 0):
            raise ValueError(f"task='regression' needs noise_var > 0; got {noise_var!r}")
        self.noise_var = noise_var
        self._tape: OutputTape | None = None

    @contextmanager
    def recording(self) -> Iterator[OutputTape]:
        """Record every input and (detached) output until the block exits.

        Examples:
            >>> import bnn_core
            >>> model = bnn_core.mnist_cnn(image_size=12)
            >>> pred = DrawPredictive(model, bnn_core.sample_weights(model, 2), 0)
            >>> x = torch.rand(4, 1, 12, 12)
            >>> with pred.recording() as tape:
            ...     logits = pred(x)
            >>> torch.equal(tape.outputs_for(x), logits.detach())
            True
        """
        tape = OutputTape()
        previous, self._tape = self._tape, tape
        try:
            yield tape
        finally:
            self._tape = previous

    def model_output(self, x: Tensor) -> Tensor:
        """The model's output under this draw (logits or regression means), not recorded."""
        return forward_samples(self.model, x, 1, weights=self._weights, method="loop")[0]

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``(B, C)``, or ``(f_m(x), s²)`` for regression."""
        out = self.model_output(x)
        if self._tape is not None:
            self._tape.inputs.append(x.detach())
            self._tape.outputs.append(out.detach())
        if self.task is Task.CLASSIFICATION:
            return out
        assert self.noise_var is not None
        return out, torch.full_like(out, self.noise_var)
