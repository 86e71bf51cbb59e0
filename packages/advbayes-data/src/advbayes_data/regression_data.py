"""The container for one train/test split of a regression dataset, standardised."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from advbayes_data.standardize import Standardizer

__all__ = ["RegressionData"]


@dataclass(frozen=True, eq=False)
class RegressionData:
    """One seeded train/test split, inputs and target standardised with training statistics.

    Attributes:
        name: The dataset, e.g. ``"wine-red"``.
        split: Which split of ``seed`` (``0, 1, 2`` for the tables' ``±`` columns).
        seed: The seed of the permutation the splits come from.
        x_train: ``(N, D)`` float32 standardised inputs.
        y_train: ``(N,)`` float32 standardised target.
        x_test: ``(M, D)`` float32 inputs, standardised with the *training* statistics.
        y_test: ``(M,)`` float32 target, standardised with the *training* statistics.
        x_scaler: The input statistics (``(D,)`` mean and std of the training rows).
        y_scaler: The target statistics (``()`` mean and std of the training targets); use
            ``y_scaler.inverse`` / ``inverse_variance`` for original units:
            ``RMSE_y = y_scaler.std * RMSE_z``, ``NLL_y = NLL_z + y_scaler.log_scale``.
        feature_names: ``D`` input names.
        target_name: The target's name.
        train_index: ``(N,)`` int64 rows of the source table used for training.
        test_index: ``(M,)`` int64 rows of the source table used for testing.

    Examples:
        >>> data = load_uci("wine", split=0)  # doctest: +SKIP
        >>> data.x_train.shape, data.x_test.shape  # doctest: +SKIP
        (torch.Size([1439, 11]), torch.Size([160, 11]))
    """

    name: str
    split: int
    seed: int
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_scaler: Standardizer
    y_scaler: Standardizer
    feature_names: tuple[str, ...]
    target_name: str
    train_index: Tensor
    test_index: Tensor

    def __post_init__(self) -> None:
        d = len(self.feature_names)
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.ndim != 2 or x.shape[1] != d or x.dtype != torch.float32:
                raise ValueError(f"x_{part} must be a (N, {d}) float32 tensor")
            if y.ndim != 1 or y.shape[0] != x.shape[0] or y.dtype != torch.float32:
                raise ValueError(f"y_{part} must be a (N,) float32 tensor matching x_{part}")
            index = getattr(self, f"{part}_index")
            if index.shape != y.shape:
                raise ValueError(f"{part}_index must be ({y.shape[0]},)")

    @property
    def num_features(self) -> int:
        """``D``, the number of inputs."""
        return len(self.feature_names)

    def to(self, device: torch.device | str) -> RegressionData:
        """The same split with its four data tensors on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )
