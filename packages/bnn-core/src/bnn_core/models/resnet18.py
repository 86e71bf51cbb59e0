"""A Bayesian ResNet-18 for 32×32 images (paper SM-7.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA
from bnn_core.models._config import finish
from bnn_core.priors import GaussianPrior

__all__ = ["BasicBlock", "ResNet", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch-norm and an identity (or 1×1-conv) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The CIFAR variant of ResNet (He et al. 2016): 3×3 stem, no max-pool, 4 stages."""

    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, width: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        stages = []
        in_planes = width
        for i, count in enumerate(blocks):
            planes = width * 2**i
            layers = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


def resnet18(
    num_classes: int = 10,
    *,
    in_channels: int = 3,
    width: int = 64,
    bayesian: bool = True,
    prior: GaussianPrior | None = None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    sample_mode: SampleMode | str = SampleMode.SAMPLE,
    memory_format: str | torch.memory_format = "auto",
) -> ResNet:
    """ResNet-18 for CIFAR-10 with every conv and dense layer Bayesian.

    The CIFAR variant (3×3 stem, no max-pool; stages of ``width·{1, 2, 4, 8}`` channels
    with 2 basic blocks each; global average pool; dense). Batch-norm layers stay
    deterministic. In training mode batch-norm uses batch statistics per draw, so
    :func:`bnn_core.forward_samples` loops over draws then; in eval mode it can batch.

    Args:
        num_classes: Output logits. Default ``10``.
        in_channels: Input channels. Default ``3``.
        width: Channels of the first stage (64 in the standard ResNet-18; smaller values
            give a cheaper network of the same shape). Default ``64``.
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
        - Input: ``(B, in_channels, H, W)`` (32×32 for CIFAR-10).
        - Output: ``(B, num_classes)`` logits.

    Examples:
        >>> resnet18(width=8).eval()(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(in_channels, "in_channels")
    check_positive_int(width, "width")
    model = ResNet((2, 2, 2, 2), num_classes, in_channels, width)
    kwargs = {"num_classes": num_classes, "in_channels": in_channels, "width": width}
    out = finish(
        model,
        "resnet18",
        kwargs,
        bayesian=bayesian,
        prior=prior,
        init_sigma=init_sigma,
        sample_mode=sample_mode,
        memory_format=memory_format,
    )
    assert isinstance(out, ResNet)
    return out
