"""Standardisation with training statistics, and its inverse.

The UCI inputs and targets are standardised: the library's choice where the paper is silent
(docs/theory.md, 'Data and experiments').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Standardizer"]


@dataclass(frozen=True, eq=False)
class Standardizer:
    """``z = (v - mean) / std`` per column, with statistics from training data only.

    Attributes:
        mean: ``(D,)`` column means (``()`` for a 1-D target), float64 (so that columns with a
            large mean-to-spread ratio, such as wine density, standardise exactly).
        std: ``(D,)`` population standard deviations (``ddof=0``), float64; a constant column
            gets ``std = 1`` so that it maps to 0 instead of dividing by zero.

    For a Gaussian predictive ``N(m, v)`` on the standardised target ``z = (y - mean) / std``,
    the original-unit predictive is ``N(inverse(m), inverse_variance(v))``; so
    ``RMSE_y = std * RMSE_z`` and ``NLL_y = NLL_z + log(std)`` per point.

    Examples:
        >>> scaler = Standardizer.fit(np.array([[1.0], [3.0]]))
        >>> scaler.transform(torch.tensor([[3.0]]))
        tensor([[1.]])
    """

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.mean, Tensor) or not isinstance(self.std, Tensor):
            raise TypeError("mean and std must be tensors")
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must have the same shape, got {tuple(self.mean.shape)} and "
                f"{tuple(self.std.shape)}"
            )
        if not bool((self.std > 0).all()):
            raise ValueError("std must be positive")

    @classmethod
    def fit(cls, data: np.ndarray | Tensor) -> Standardizer:
        """Column statistics of ``data``, computed in float64.

        Args:
            data: ``(N, D)`` rows (or ``(N,)`` for a target), ``N >= 1``, finite.

        Raises:
            ValueError: ``data`` is empty, not 1-D/2-D, or has NaN/inf values.
        """
        array = data.detach().cpu().numpy() if isinstance(data, Tensor) else np.asarray(data)
        array = array.astype(np.float64, copy=False)
        if array.ndim not in (1, 2) or array.shape[0] == 0:
            raise ValueError(f"data must be (N, D) or (N,) with N >= 1, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("data must be finite (found NaN or inf)")
        mean = array.mean(axis=0)
        std = array.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(
            mean=torch.as_tensor(mean, dtype=torch.float64),
            std=torch.as_tensor(std, dtype=torch.float64),
        )

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    def transform(self, values: Tensor) -> Tensor:
        """``(values - mean) / std`` in the dtype and on the device of ``values``.

        ``values`` is ``(..., D)`` (or ``(...)`` for a target).
        """
        mean, std = self._stats(values)
        return (values - mean) / std

    def inverse(self, standardized: Tensor) -> Tensor:
        """``standardized * std + mean``: back to the original units."""
        mean, std = self._stats(standardized)
        return standardized * std + mean

    def inverse_variance(self, variance: Tensor) -> Tensor:
        """``variance * std**2``: a variance of standardised values in the original units."""
        _, std = self._stats(variance)
        return variance * std.square()

    @property
    def log_scale(self) -> Tensor:
        """``log(std)``: add it to a per-point Gaussian NLL on standardised targets."""
        return self.std.log()
