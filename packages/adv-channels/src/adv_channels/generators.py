"""The networks behind the learned channels (paper, SM-5.4), verbatim architectures.

A generator maps a batch and its labels to a raw mean perturbation ``m̃`` and a raw log-scale
``s`` of the input's shape: ``network(x, y) -> (m̃, s)``. :class:`~adv_channels.LearnedChannel`
turns them into the Gaussian ``x' = clip(x + m) + σ ⊙ ξ`` with ``m`` squashed into the budget
and ``σ`` bounded.

* :class:`ConvGenerator` (images): two conv layers (16 filters, 3×3, same padding, ReLU), a
  3×3 conv back to the input channels whose output is flattened and added to a learned linear
  projection of one-hot ``y``, reshaped: ``m̃``; one more 3×3 conv head on the 16 hidden
  channels: the per-pixel log-scale (it reads ``x`` only, as in the paper).
* :class:`DenseGenerator` (tabular data): ``x`` concatenated with a learned projection of
  ``y``, two dense layers of 128 (ReLU), one linear head for ``m̃`` and one for the log-scale.

Labels: class indices ``(B,)`` one-hot encoded when ``num_classes`` is set; real targets
``(B,)`` or ``(B, 1)`` (regression, the paper's "scalar label") when it is ``None``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvGenerator", "DenseGenerator", "encode_labels"]


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def encode_labels(y: Tensor, num_classes: int | None, dtype: torch.dtype) -> Tensor:
    """Labels as generator inputs: one-hot ``(B, C)``, or real targets as ``(B, 1)``.

    Args:
        y: Class indices ``(B,)`` (``num_classes`` set) or real targets ``(B,)``/``(B, 1)``.
        num_classes: ``C``, or ``None`` for real-valued (regression) labels.
        dtype: Floating dtype of the result.

    Raises:
        TypeError, ValueError: For labels of the wrong kind, shape or range.

    Examples:
        >>> encode_labels(torch.tensor([2, 0]), 3, torch.float32)
        tensor([[0., 0., 1.],
                [1., 0., 0.]])
    """
    if num_classes is None:
        if not y.is_floating_point():
            raise TypeError(
                f"y must hold real regression targets for this generator (num_classes=None), "
                f"got dtype {y.dtype}"
            )
        return y.reshape(y.shape[0], 1).to(dtype)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"y must have shape (B,) of class indices, got {tuple(y.shape)}")
    if y.numel() and (bool((y < 0).any()) or bool((y >= num_classes).any())):
        raise ValueError(
            f"y must hold class indices in [0, {num_classes}) (the generator was built with "
            f"num_classes={num_classes}; it must match the model's); got values in "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return F.one_hot(y.long(), num_classes).to(dtype)


def image_shape(in_channels: object, image_size: object) -> tuple[int, int, int]:
    """Validate a generator's image geometry: ``(C, H, W)`` from channels and an int or pair.

    Raises:
        TypeError, ValueError: For anything but positive ints (``image_size``: one or two).
    """
    c = _check_int(in_channels, "in_channels")
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise TypeError(f"image_size must be an int or an (H, W) pair, got {image_size!r}")
    h, w = (_check_int(v, "image_size") for v in image_size)
    return c, h, w


class ConvGenerator(nn.Module):
    """Convolutional perturbation generator for images (paper SM-5.4, MNIST).

    Args:
        in_channels: Image channels ``C`` (1 for MNIST).
        image_size: ``H`` (square) or ``(H, W)``.
        num_classes: Classes of the one-hot label, or ``None`` for a real-valued label.
        hidden: Filters of the two hidden convolutions; default 16.

    Shape:
        - x: ``(B, C, H, W)``; y: ``(B,)``; outputs: two ``(B, C, H, W)`` tensors.

    Examples:
        >>> net = ConvGenerator(1, 28, num_classes=10)
        >>> m, s = net(torch.rand(2, 1, 28, 28), torch.tensor([3, 7]))
        >>> m.shape, s.shape
        (torch.Size([2, 1, 28, 28]), torch.Size([2, 1, 28, 28]))
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        *,
        num_classes: int | None = 10,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        c, h, w = image_shape(in_channels, image_size)
        hidden = _check_int(hidden, "hidden")
        self.num_classes = None if num_classes is None else _check_int(num_classes, "num_classes")
        self.input_shape = (c, h, w)
        self.body = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.mean_head = nn.Conv2d(hidden, c, 3, padding=1)
        self.log_scale_head = nn.Conv2d(hidden, c, 3, padding=1)
        label_dim = 1 if self.num_classes is None else self.num_classes
        self.label_projection = nn.Linear(label_dim, c * h * w)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Raw mean perturbation ``m̃`` and raw log-scale, each ``x``'s shape."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.input_shape))}) for this "
                f"generator; got {tuple(x.shape)}"
            )
        h = self.body(x)
        # Both heads in one convolution (stacked filters): the same maps, one pass over h
        # (about 1.5x faster on the CPU than two 16 -> C convolutions, bench/perf.py).
        c = self.input_shape[0]
        weight = torch.cat([self.mean_head.weight, self.log_scale_head.weight])
        bias = torch.cat([self.mean_head.bias, self.log_scale_head.bias])
        heads = F.conv2d(h, weight, bias, padding=1)
        labels = self.label_projection(encode_labels(y, self.num_classes, x.dtype))
        m = (heads[:, :c].reshape(x.shape[0], -1) + labels).view_as(x)
        return m, heads[:, c:]


class DenseGenerator(nn.Module):
    """Fully connected perturbation generator for tabular data (paper SM-5.4, regression).

    Args:
        in_features: Input features ``D``.
        num_classes: Classes of a one-hot label, or ``None`` (default) for a real label.
        hidden: Width of the two hidden layers; default 128.
        label_features: Width of the label's learned projection; default ``D``.

    Shape:
        - x: ``(B, D)``; y: ``(B,)`` or ``(B, 1)``; outputs: two ``(B, D)`` tensors.

    Examples:
        >>> net = DenseGenerator(8)
        >>> m, s = net(torch.randn(4, 8), torch.randn(4))
        >>> m.shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        in_features: int,
        *,
        num_classes: int | None = None,
        hidden: int = 128,
        label_features: int | None = None,
    ) -> None:
        super().__init__()
        d = _check_int(in_features, "in_features")
        hidden = _check_int(hidden, "hidden")
        lf = d if label_features is None else _check_int(label_features, "label_features")
        self.num_classes = None if num_classes is None else _check_int(num_classes, "num_classes")
        self.input_shape = (d,)
        label_dim = 1 if self.num_classes is None else self.num_classes
        self.label_projection = nn.Linear(label_dim, lf)
        self.body = nn.Sequential(
            nn.Linear(d + lf, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.mean_head = nn.Linear(hidden, d)
        self.log_scale_head = nn.Linear(hidden, d)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Raw mean perturbation ``m̃`` and raw log-scale, each ``x``'s shape."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (B, {self.input_shape[0]}) for this generator; "
                f"got {tuple(x.shape)}"
            )
        labels = self.label_projection(encode_labels(y, self.num_classes, x.dtype))
        h = self.body(torch.cat([x, labels], dim=1))
        return self.mean_head(h), self.log_scale_head(h)
