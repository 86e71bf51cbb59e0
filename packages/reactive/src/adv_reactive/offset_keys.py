"""Per-draw keys stored as shared points plus small per-draw offsets.

The one-step channel's means are the training inputs moved by at most ``ε``:
``μ_mi = x_i + δ_mi`` with ``‖δ_mi‖ <= ε`` (paper, SM-5.2 and eqs. 4–5). Stored as ``(x, δ)``, the
score products split as ``q·μ_mi = q·x_i + q·δ_mi``: the first is one product over the ``N``
shared points for all draws, the second ``M`` products over the offsets, which may be held
and multiplied in bfloat16. Its rounding error then scales with ``‖δ‖`` instead of
``‖μ‖`` (see :class:`OffsetKeys`), and on CPUs with bfloat16 matrix instructions those
products run several times faster than float32 ones.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LOW_PRECISION", "OffsetKeys"]

LOW_PRECISION = (torch.bfloat16, torch.float16)
"""Offset dtypes whose products with the queries run in that dtype (else in float32/64)."""


class OffsetKeys(NamedTuple):
    """Per-draw keys ``k_mi = base_i + offsets_mi`` for :func:`adv_reactive.reactive_aggregate`.

    The keys these stand for are exactly ``base + offsets`` computed in the compute dtype
    (float32, or float64 for float64 queries or base), and their squared norms must be those
    of that sum (:func:`adv_reactive.squared_norms` accepts an ``OffsetKeys``). Scores use
    ``‖q − k‖² = ‖q‖² + ‖k‖² − 2 (q·base + q·offsets)``: ``q·base`` in the compute dtype,
    ``q·offsets`` in the offsets' dtype when that is bfloat16 or float16 (the queries
    rounded to it, float32 accumulation, the result rounded to it). Two roundings of unit
    ``u`` (``2⁻⁸`` in bfloat16, ``2⁻¹¹`` in float16) put the products within about
    ``2u ‖q‖ ‖δ‖``, so the log-weights ``−‖q − k‖² / 2σ²`` of the keys ``base + offsets``
    are off by at most ``2⁻⁷ ‖q‖ ‖δ‖ / σ²`` (bfloat16; against the offsets before they were
    rounded to bfloat16, one ``u`` more: ``3 · 2⁻⁸``): for MNIST (``‖q‖ <= 28``) at
    ``ε = 2``, ``σ = 1``, 0.44 nats in the worst case, and a few thousandths measured
    (``bench/perf.py``: the errors are not aligned). Float32 offsets are exact (no faster
    than full keys). Gradients and top-k recompute the keys ``base + offsets`` in the
    compute dtype.

    Attributes:
        base: ``(N, D)`` points shared by every draw (the training inputs), float32/64.
        offsets: ``(M, N, D)`` per-draw offsets ``δ_mi``, any floating dtype.
    """

    base: Tensor
    offsets: Tensor

    @property
    def shape(self) -> torch.Size:
        """``(M, N, D)``, the shape of the keys these stand for."""
        return self.offsets.shape

    @property
    def device(self) -> torch.device:
        """The device of ``base`` (and, once checked, of ``offsets``)."""
        return self.base.device

    def materialize(self, dtype: torch.dtype | None = None) -> Tensor:
        """The full ``(M, N, D)`` keys ``base + offsets`` (``dtype``: default ``base``'s)."""
        dtype = self.base.dtype if dtype is None else dtype
        return self.base.to(dtype) + self.offsets.to(dtype)

    def chunk(self, group: int, start: int, stop: int, dtype: torch.dtype) -> Tensor:
        """Keys ``start:stop`` of draw ``group``, ``(stop − start, D)`` in ``dtype``."""
        return self.base[start:stop].to(dtype) + self.offsets[group, start:stop].to(dtype)
