"""The paper's MNIST convolutional network (paper SM-6.1.1)."""

from __future__ import annotations

import torch
from torch import nn

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA
from bnn_core.models._config import finish
from bnn_core.priors import GaussianPrior

__all__ = ["mnist_cnn"]


def mnist_cnn(
    num_classes: int = 10,
    *,
    in_channels: int = 1,
    image_size: int = 28,
    bayesian: bool = True,
    prior: GaussianPrior | None = None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    sample_mode: SampleMode | str = SampleMode.SAMPLE,
    memory_format: str | torch.memory_format = "auto",
) -> nn.Sequential:
    """The paper's MNIST CNN, Bayesian (mean-field) or deterministic.

    ``conv(1→16, 3×3) · ReLU · avgpool 2×2 · conv(16→32, 3×3) · ReLU · avgpool 2×2 ·
    flatten · dense(→10)`` (paper SM-6.1.1). With ``bayesian=True`` every conv and
    dense layer is a mean-field Gaussian layer (prior ``N(0, 1)`` by default); with
    ``bayesian=False`` it is the deterministic twin (the AT baseline's point estimate).

    Args:
        num_classes: Output logits. Default ``10``.
        in_channels: Input channels. Default ``1``.
        image_size: Side of the square input. Default ``28``.
        bayesian: Bayesian layers (default) or plain ``nn.Conv2d``/``nn.Linear``.
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

    Returns:
        An ``nn.Sequential``; layers ``0`` and ``3`` are the convolutions, ``7`` the dense.

    Shape:
        - Input: ``(B, in_channels, image_size, image_size)``, pixels in ``[0, 1]``.
        - Output: ``(B, num_classes)`` logits.

    Examples:
        >>> model = mnist_cnn()
        >>> model(torch.rand(8, 1, 28, 28)).shape
        torch.Size([8, 10])
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    check_positive_int(image_size, "image_size")
    side = ((image_size - 2) // 2 - 2) // 2
    if side < 1:
        raise ValueError(f"image_size must be >= 10 for two 3×3 convs and pools; got {image_size}")
    model = nn.Sequential(
        nn.Conv2d(in_channels, 16, kernel_size=3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * side * side, num_classes),
    )
    kwargs = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    out = finish(
        model,
        "mnist_cnn",
        kwargs,
        bayesian=bayesian,
        prior=prior,
        init_sigma=init_sigma,
        sample_mode=sample_mode,
        memory_format=memory_format,
    )
    assert isinstance(out, nn.Sequential)
    return out
