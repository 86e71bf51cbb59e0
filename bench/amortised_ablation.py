"""Ablations of the amortised adversary's generator, run through the channels study.

``uv run bench/amortised_ablation.py --seeds 0`` trains, beside BL and AT-PGD, the one-pass
amortised adversary (joint update, :data:`benchlib.zoo.CHANNEL_MODELS`' AMO-J at stride 4 and
AMO-J2 at stride 2) and lighter or emptier generators, and writes the channels study's table,
plot and bar to ``results/channels/<run>/`` (``--run``, default ``ablation``):

* ``AMO-J2-noctx``: stride 2 without the context branch;
* ``AMO-J2-noctx8``: the same with 8 feature maps instead of 16;
* ``AMO-J2-nodil``: stride 2 without the dilated convolution and the context branch;
* ``AMO-J-gain``: no refinement at all: ``m = ε squash(a ĝ)`` with a learned per-pixel and
  per-class noise scale (a one-step attack with a learned step and noise).

Every option of ``bench/channels.py`` applies (``--attacks PGD AA``, ``--seeds``,
``--recipes`` to pick a subset). docs/theory.md ("Amortised adversary") reports the results.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adv_channels import AmortisedChannel, ConvAmortisedGenerator  # noqa: E402
from adv_channels.generators import encode_labels  # noqa: E402
from benchlib.zoo import CHANNEL_MODELS, MNIST_SHAPE, ModelDecl  # noqa: E402
from robust_vi import Recipe, recipe  # noqa: E402

DEFAULT_RUN = "ablation"


class WithoutContext(ConvAmortisedGenerator):
    """The stride-2 generator without its context branch (``dilated=False``: nor the
    dilated convolution)."""

    def __init__(self, *, hidden: int = 16, dilated: bool = True) -> None:
        super().__init__(1, 28, num_classes=10, hidden=hidden, stride=2)
        self.context = None
        self.dilated = dilated
        if not dilated:
            self.conv2 = None

    def forward(self, x: Tensor, y: Tensor, g_unit: Tensor) -> tuple[Tensor, Tensor]:
        """As :class:`~adv_channels.ConvAmortisedGenerator`, minus the removed layers."""
        scale = math.sqrt(x[0].numel())
        h = F.relu(self.conv1(torch.cat([x, g_unit * scale], dim=1)))
        label = self.label_projection(encode_labels(y, self.num_classes, x.dtype))
        h = (
            F.relu(self.conv2(h) + label[:, :, None, None])
            if self.dilated
            else h + label[..., None, None]
        )
        out = F.pixel_shuffle(self.refine_head(h), 2)
        return self.gain * g_unit + out[:, :1] / scale, out[:, 1:]


class GainOnly(nn.Module):
    """``d = a ĝ`` and a log-scale from a learned per-pixel map and a per-class bias."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 10
        self.gain = nn.Parameter(torch.tensor(2.0))
        self.log_scale = nn.Parameter(torch.zeros(1, *MNIST_SHAPE))
        self.class_bias = nn.Parameter(torch.zeros(10))

    def forward(self, x: Tensor, y: Tensor, g_unit: Tensor) -> tuple[Tensor, Tensor]:
        """Raw direction and raw log-scale, each ``x``'s shape."""
        return self.gain * g_unit, self.log_scale + self.class_bias[y.long()].view(-1, 1, 1, 1)


def _variant(make: type[nn.Module] | object, **kwargs: object) -> ModelDecl:
    """AMO with the joint update and the generator ``make(**kwargs)``."""

    def build(s: object) -> Recipe:
        base = recipe("AMO", eps=s.train_eps, sigma=s.sigma, input_shape=MNIST_SHAPE)
        channel = AmortisedChannel(
            make(**kwargs),  # type: ignore[operator]
            eps=s.train_eps,
            sigma_max=s.sigma,
            clamp=(0.0, 1.0),
            lr=s.adversary_lr,
            update="joint",
        )
        return Recipe(base.name, base.objective, channel)

    return ModelDecl(build)


VARIANTS = {
    "AMO-J2-noctx": _variant(WithoutContext),
    "AMO-J2-noctx8": _variant(WithoutContext, hidden=8),
    "AMO-J2-nodil": _variant(WithoutContext, dilated=False),
    "AMO-J-gain": _variant(GainOnly),
}
"""The ablated generators (registered in :data:`benchlib.zoo.CHANNEL_MODELS`)."""

DEFAULT_RECIPES = ("BL", "AT-PGD", "AMO-J", "AMO-J2", *VARIANTS)


def _channels(argv: list[str] | None) -> tuple[ModuleType, list[str]]:
    """The channels study with the variants registered, and ``argv`` with this script's
    defaults (``--run ablation``, ``--recipes`` :data:`DEFAULT_RECIPES`)."""
    CHANNEL_MODELS.update(VARIANTS)
    import channels  # its --recipes choices are read from the registry when it parses

    args = list(sys.argv[1:] if argv is None else argv)
    if "--run" not in args:
        args += ["--run", DEFAULT_RUN]
    if "--recipes" not in args:
        args += ["--recipes", *DEFAULT_RECIPES]
    return channels, args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``bench/channels.py``'s, with this script's defaults."""
    channels, args = _channels(argv)
    return channels.parse_args(args)


def main(argv: list[str] | None = None) -> int:
    """Register the variants and run the channels study on them."""
    channels, args = _channels(argv)
    return channels.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
