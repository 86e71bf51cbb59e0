"""A shallow CIFAR-10 convolutional network (paper SM-7.1)."""

from __future__ import annotations

import torch
from torch import nn

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA
from bnn_core.models._config import finish
from bnn_core.priors import GaussianPrior

__all__ = ["cifar_cnn"]


def cifar_cnn(
    num_classes: int = 10,
    *,
    in_channels: int = 3,
    image_size: int = 32,
    width: int = 32,
    hidden: int = 256,
    bayesian: bool = True,
    prior: GaussianPrior | None = None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    sample_mode: SampleMode | str = SampleMode.SAMPLE,
    memory_format: str | torch.memory_format = "auto",
) -> nn.Sequential:
    """A shallow CNN for CIFAR-10, Bayesian (every layer) or deterministic.

    The paper names "shallow architectures" without details, so this is a choice: two
    VGG-style blocks ``[conv 3×3 · ReLU · conv 3×3 · ReLU · avgpool 2×2]`` with ``width``
    and ``2·width`` channels (padding 1), then ``flatten · dense(→hidden) · ReLU ·
    dense(→num_classes)``, average pooling as in the MNIST CNN.

    Args:
        num_classes: Output logits. Default ``10``.
        in_channels: Input channels. Default ``3``.
        image_size: Side of the square input (divisible by 4). Default ``32``.
        width: Channels of the first block. Default ``32``.
        hidden: Units of the hidden dense layer. Default ``256``.
        bayesian: Bayesian layers (default) or the deterministic twin.
        prior: Prior of the Bayesian layers. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial posterior standard deviation. Default ``1e-3``.
        sample_mode: Initial sampling mode of the Bayesian layers. Default ``"sample"``.
        memory_format: Layout of the convolution kernels (and so of the activations):
            ``"auto"`` (default: the faster layout on the device the model will run on,
            see :func:`bnn_core.models.fastest_memory_format`: channels-last on CPUs, where
            a Bayesian training or attack step through ten draws ran 1.3-1.6x faster on
            this project's 2-core CPU, ``bench/perf.py``), ``"channels_last"`` or
            ``"contiguous"`` (PyTorch's). The function computed is the same; the resolved
            layout is recorded in the model's configuration.

    Shape:
        - Input: ``(B, in_channels, image_size, image_size)``.
        - Output: ``(B, num_classes)`` logits.

    Examples:
        >>> cifar_cnn()(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    for value, name in (
        (num_classes, "num_classes"),
        (in_channels, "in_channels"),
        (image_size, "image_size"),
        (width, "width"),
        (hidden, "hidden"),
    ):
        check_positive_int(value, name)
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4; got {image_size}")
    side = image_size // 4
    model = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * side * side, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    kwargs = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "image_size": image_size,
        "width": width,
        "hidden": hidden,
    }
    out = finish(
        model,
        "cifar_cnn",
        kwargs,
        bayesian=bayesian,
        prior=prior,
        init_sigma=init_sigma,
        sample_mode=sample_mode,
        memory_format=memory_format,
    )
    assert isinstance(out, nn.Sequential)
    return out
