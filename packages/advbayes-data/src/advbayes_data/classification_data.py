"""The container for an image-classification dataset: train and test tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from advbayes_data.splits import stratified_indices

__all__ = ["ClassificationData"]


@dataclass(frozen=True, eq=False)
class ClassificationData:
    """Images in ``[0, 1]`` with integer labels, split into train and test.

    Attributes:
        name: The dataset, e.g. ``"mnist"``.
        x_train: ``(N, C, H, W)`` float32 images in ``[0, 1]``.
        y_train: ``(N,)`` int64 labels in ``[0, len(classes))``.
        x_test: ``(M, C, H, W)`` float32 images in ``[0, 1]``.
        y_test: ``(M,)`` int64 labels.
        classes: The class names, indexed by label.

    Examples:
        >>> data = load_mnist_sample()  # doctest: +SKIP
        >>> data.x_train.shape, data.num_classes  # doctest: +SKIP
        (torch.Size([4000, 1, 28, 28]), 10)
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, Tensor) or x.ndim != 4 or x.dtype != torch.float32:
                raise ValueError(f"x_{part} must be a (N, C, H, W) float32 tensor")
            if not isinstance(y, Tensor) or y.ndim != 1 or y.dtype != torch.int64:
                raise ValueError(f"y_{part} must be a (N,) int64 tensor")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{part} and y_{part} must have as many rows, got {x.shape[0]} and "
                    f"{y.shape[0]}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError("x_train and x_test must have the same image shape")

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, *, seed: int = 0
    ) -> ClassificationData:
        """A stratified, seeded subsample (e.g. for a quick benchmark profile).

        Args:
            n_train: Training images to keep (None: all, in the original order).
            n_test: Test images to keep (None: all, in the original order).
            seed: Seeds both draws (see :func:`advbayes_data.splits.stratified_indices`).

        Returns:
            A new ``ClassificationData`` whose class proportions match the original's.

        Raises:
            ValueError: ``n_train`` or ``n_test`` exceeds the number of images available.

        Examples:
            >>> small = load_mnist().subset(10_000, 1_000, seed=0)  # doctest: +SKIP
        """
        x_train, y_train, x_test, y_test = self.x_train, self.y_train, self.x_test, self.y_test
        if n_train is not None:
            rows = torch.from_numpy(stratified_indices(y_train.cpu().numpy(), n_train, seed=seed))
            rows = rows.to(x_train.device)
            x_train, y_train = x_train[rows], y_train[rows]
        if n_test is not None:
            labels = y_test.cpu().numpy()
            test_seed = int(np.random.default_rng(seed).integers(2**31))
            rows = torch.from_numpy(stratified_indices(labels, n_test, seed=test_seed))
            rows = rows.to(x_test.device)
            x_test, y_test = x_test[rows], y_test[rows]
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    def to(self, device: torch.device | str) -> ClassificationData:
        """The same data on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )
