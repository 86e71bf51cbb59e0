"""The amortised adversary: a learned channel that sees the model's input gradient.

The paper's future work (§7: "training an amortized generative adversary"; docs/theory.md,
"Amortised adversary"). The generator receives what a one-step attacker receives -- the
input ``x``, the label ``y`` and the model's input gradient ``g = ∇_x ℓ(β; x, y)`` at a
posterior draw ``β`` (one backward pass, the cost of the one-step channel) -- and outputs a
mean perturbation and a per-pixel noise scale:

``x' = clip(x + m) + σ ⊙ ξ``,  ``m = ε·squash(a ĝ + r(x, ĝ, y))``,  ``ĝ = g/‖g‖₂``,

with ``squash`` the radial ``tanh`` of :func:`~adv_channels.squash_to_ball` (``‖m‖₂ < ε``),
``a`` a learned gain (initialised at 2, so that the untrained channel is already nearly the
one-step attack: ``‖m‖ = ε tanh 2 ≈ 0.96 ε``), ``r`` a learned refinement (its output layer
initialised at zero) and ``σ = σ_max sigmoid(s(x, ĝ, y))``. The gradient term gives the
generator global, input-specific directions that a network over ``x`` alone (the paper's
:class:`~adv_channels.ConvGenerator`) cannot express; the refinement learns where the
first-order direction is improved upon. ``g`` enters as data (detached): the generator is
trained GAN-style, exactly as :class:`~adv_channels.LearnedChannel` (one Adam ascent step on
the model's loss per batch, :meth:`~adv_channels.LearnedChannel.adversary_step`), and its
optimiser state is saved with the channel's ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adv_attacks import ClassificationOutput, frozen_parameters, per_example_norm, read_output
from adv_channels._checks import (
    check_in_range,
    check_module_device,
    check_scalar,
    require_target,
)
from adv_channels.base import Predictive
from adv_channels.budget import squash_to_ball
from adv_channels.generators import _check_int, encode_labels, image_shape
from adv_channels.learned import LearnedChannel

__all__ = [
    "AmortisedChannel",
    "ConvAmortisedGenerator",
    "DenseAmortisedGenerator",
    "input_gradient",
]

INITIAL_GAIN = 2.0
"""Initial gain ``a`` of the gradient direction (``tanh 2 ≈ 0.96`` of the budget)."""


def input_gradient(target: Predictive, x: Tensor, labels: Tensor) -> Tensor:
    """The model's loss gradient ``∇_x ℓ(x, y)`` per example (one forward and backward pass).

    ``ℓ`` is the cross-entropy of the target's output (classification) or the squared error
    of its predictive mean (regression). The target's parameters are left out of autograd
    (their ``.grad`` untouched); the result is detached, also under ``inference_mode``.

    Args:
        target: A predictive (e.g. the Bayesian model in ``"sample"`` mode).
        x: Inputs ``(B, *)``.
        labels: Class indices or regression targets ``(B,)``.

    Returns:
        ``g`` of ``x``'s shape.

    Examples:
        >>> net = torch.nn.Linear(3, 2)
        >>> input_gradient(net, torch.zeros(4, 3), torch.tensor([0, 1, 0, 1])).shape
        torch.Size([4, 3])
    """
    with torch.inference_mode(False), torch.enable_grad(), frozen_parameters(target):
        xr = x.detach().clone().requires_grad_(True)
        lab = labels.clone() if labels.is_inference() else labels
        out = read_output(target(xr), x.shape[0])
        if isinstance(out, ClassificationOutput):
            total = F.nll_loss(out.log_probs, lab.long(), reduction="sum")
        else:
            err = out.mean - lab.reshape(out.mean.shape).to(out.mean.dtype)
            total = err.square().sum()
        if not total.requires_grad:
            raise ValueError(
                "the target's output does not depend differentiably on x (was it computed "
                "under torch.no_grad() or detached?)"
            )
        (g,) = torch.autograd.grad(total, xr)
    return g.detach()


def _unit(g: Tensor) -> Tensor:
    """``g/‖g‖₂`` per example (0 where ``g = 0``)."""
    norm = per_example_norm(g).view((-1,) + (1,) * (g.ndim - 1))
    return torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), 0.0)


class ConvAmortisedGenerator(nn.Module):
    """Gradient-informed generator for images: ``(x, y, ĝ) -> (a ĝ + r, s)``.

    The refinement reads ``x`` and ``√d ĝ`` (so that both are of order one per pixel) stacked
    as channels, and runs at ``1/stride`` of the image's resolution:

    * ``stride=1``: a 3×3 convolution to ``hidden`` maps, a dilated 3×3 convolution
      (receptive field 7×7), a per-map bias from the one-hot label, and a 4×-pooled context
      branch (average-pool 4, 3×3 convolution, nearest upsampling) added back, so that each
      pixel's output also depends on a 28×28 image's global layout; one 3×3 head for ``r``
      (zero initialised) and one for the log-scale ``s``.
    * ``stride=2``: the same body at half the resolution: a strided 4×4 convolution down, the
      dilated convolution and label bias at ``H/2`` (receptive field 13×13 in the input), a
      2×-pooled context branch (the same ``H/4`` grid), and one sub-pixel head back up (a
      3×3 convolution to ``4·2C`` maps at ``H/2``, shuffled into ``2C`` maps at ``H``: Shi et
      al. 2016) for both ``r`` and ``s``.
    * ``stride=4``: space to depth: each 4×4 block of the inputs becomes ``16·2C`` channels
      of an ``H/4`` grid (``pixel_unshuffle``, lossless), a 3×3 convolution and the dilated
      3×3 convolution with the label bias on that grid (receptive field 7×7 blocks: a whole
      28×28 image, so no context branch), and the sub-pixel head back up by 4.

    The fine detail of ``m`` comes from ``a ĝ``, at full resolution whatever the stride.
    Images whose sides are not multiples of the stride are zero-padded and cropped back.

    Args:
        in_channels: Image channels ``C``.
        image_size: ``H`` (square) or ``(H, W)``.
        num_classes: Classes of the one-hot label, or ``None`` for a real-valued label.
        hidden: Feature maps; default 16.
        stride: ``1`` (default), ``2`` or ``4``: the refinement's resolution, above.

    Shape:
        - x, g_unit: ``(B, C, H, W)``; y: ``(B,)``; outputs: two ``(B, C, H, W)`` tensors.

    Examples:
        >>> net = ConvAmortisedGenerator(1, 28, num_classes=10, stride=4)
        >>> x, g = torch.rand(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
        >>> d, s = net(x, torch.tensor([3, 7]), g / g.flatten(1).norm(dim=1).view(2, 1, 1, 1))
        >>> d.shape, s.shape
        (torch.Size([2, 1, 28, 28]), torch.Size([2, 1, 28, 28]))
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int | tuple[int, int] = 28,
        *,
        num_classes: int | None = 10,
        hidden: int = 16,
        stride: int = 1,
    ) -> None:
        super().__init__()
        c, h, w = image_shape(in_channels, image_size)
        hidden = _check_int(hidden, "hidden")
        if stride not in (1, 2, 4) or isinstance(stride, bool):
            raise ValueError(f"stride must be 1, 2 or 4; got {stride!r}")
        if stride > 1 and min(h, w) < 4:
            raise ValueError(f"stride={stride} needs images of at least 4×4 pixels; got {h}×{w}")
        self.num_classes = None if num_classes is None else _check_int(num_classes, "num_classes")
        self.input_shape = (c, h, w)
        self.stride = stride
        self.gain = nn.Parameter(torch.tensor(INITIAL_GAIN))
        if stride == 1:
            self.conv1 = nn.Conv2d(2 * c, hidden, 3, padding=1)
        elif stride == 2:
            self.conv1 = nn.Conv2d(2 * c, hidden, 4, stride=2, padding=1)
        else:  # on the space-to-depth grid
            self.conv1 = nn.Conv2d(2 * c * stride * stride, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2)
        self.context = nn.Conv2d(hidden, hidden, 3, padding=1) if stride < 4 else None
        label_dim = 1 if self.num_classes is None else self.num_classes
        self.label_projection = nn.Linear(label_dim, hidden)
        if stride == 1:
            self.refine_head = nn.Conv2d(hidden, c, 3, padding=1)
            self.log_scale_head: nn.Module | None = nn.Conv2d(hidden, c, 3, padding=1)
            nn.init.zeros_(self.refine_head.weight)
            nn.init.zeros_(self.refine_head.bias)
        else:  # one sub-pixel head: 2C·stride² maps, shuffled up (r: the first C, then s)
            blocks = stride * stride
            self.refine_head = nn.Conv2d(hidden, 2 * c * blocks, 3, padding=1)
            self.log_scale_head = None
            with torch.no_grad():  # pixel_shuffle's output channel k reads [k·f², (k+1)·f²)
                self.refine_head.weight[: c * blocks].zero_()
                self.refine_head.bias[: c * blocks].zero_()

    def forward(self, x: Tensor, y: Tensor, g_unit: Tensor) -> tuple[Tensor, Tensor]:
        """Raw direction ``a ĝ + r`` (units of ``ε``) and raw log-scale, each ``x``'s shape."""
        if tuple(x.shape[1:]) != self.input_shape or g_unit.shape != x.shape:
            raise ValueError(
                f"x and g_unit must have shape (B, {', '.join(map(str, self.input_shape))}) for "
                f"this generator; got {tuple(x.shape)} and {tuple(g_unit.shape)}"
            )
        scale = math.sqrt(x[0].numel())
        f = self.stride
        inputs = torch.cat([x, g_unit * scale], dim=1)
        height, width = x.shape[-2:]
        if height % f or width % f:  # multiples of the stride; cropped at the end
            inputs = F.pad(inputs, (0, -width % f, 0, -height % f))
        if f == 4:
            inputs = F.pixel_unshuffle(inputs, f)
        h = F.relu(self.conv1(inputs))
        label = self.label_projection(encode_labels(y, self.num_classes, x.dtype))
        h = F.relu(self.conv2(h) + label[:, :, None, None])
        if self.context is not None:
            k = 4 // f if min(h.shape[-2:]) >= 8 // f else 1
            ctx = F.relu(self.context(F.avg_pool2d(h, k, ceil_mode=True)))
            up = F.interpolate(ctx, scale_factor=k, mode="nearest")
            h = h + up[..., : h.shape[-2], : h.shape[-1]]
        if self.log_scale_head is None:
            out = F.pixel_shuffle(self.refine_head(h), f)[..., :height, :width]
            c = x.shape[1]
            r, s = out[:, :c], out[:, c:]
        else:
            r, s = self.refine_head(h), self.log_scale_head(h)
        # r per pixel of order 1/√d: comparable with ĝ
        return self.gain * g_unit + r / scale, s


class DenseAmortisedGenerator(nn.Module):
    """Gradient-informed generator for tabular data: ``(x, y, ĝ) -> (a ĝ + r, s)``.

    ``x``, ``√D ĝ`` and a learned projection of the label concatenated, two dense layers of
    ``hidden`` (ReLU), a zero-initialised head for ``r`` and a head for the log-scale.

    Args:
        in_features: Input features ``D``.
        num_classes: Classes of a one-hot label, or ``None`` (default) for a real label.
        hidden: Width of the hidden layers; default 128.

    Shape:
        - x, g_unit: ``(B, D)``; y: ``(B,)``; outputs: two ``(B, D)`` tensors.

    Examples:
        >>> net = DenseAmortisedGenerator(8)
        >>> d, s = net(torch.randn(4, 8), torch.randn(4), torch.eye(8)[:4])
        >>> torch.allclose(d, 2.0 * torch.eye(8)[:4])  # untrained: the gradient direction
        True
    """

    def __init__(
        self, in_features: int, *, num_classes: int | None = None, hidden: int = 128
    ) -> None:
        super().__init__()
        d = _check_int(in_features, "in_features")
        hidden = _check_int(hidden, "hidden")
        self.num_classes = None if num_classes is None else _check_int(num_classes, "num_classes")
        self.input_shape = (d,)
        label_dim = 1 if self.num_classes is None else self.num_classes
        self.gain = nn.Parameter(torch.tensor(INITIAL_GAIN))
        self.label_projection = nn.Linear(label_dim, d)
        self.body = nn.Sequential(
            nn.Linear(3 * d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.refine_head = nn.Linear(hidden, d)
        self.log_scale_head = nn.Linear(hidden, d)
        nn.init.zeros_(self.refine_head.weight)
        nn.init.zeros_(self.refine_head.bias)

    def forward(self, x: Tensor, y: Tensor, g_unit: Tensor) -> tuple[Tensor, Tensor]:
        """Raw direction ``a ĝ + r`` (units of ``ε``) and raw log-scale, each ``(B, D)``."""
        if tuple(x.shape[1:]) != self.input_shape or g_unit.shape != x.shape:
            raise ValueError(
                f"x and g_unit must have shape (B, {self.input_shape[0]}) for this generator; "
                f"got {tuple(x.shape)} and {tuple(g_unit.shape)}"
            )
        scale = math.sqrt(x.shape[1])
        label = self.label_projection(encode_labels(y, self.num_classes, x.dtype))
        h = self.body(torch.cat([x, g_unit * scale, label], dim=1))
        return self.gain * g_unit + self.refine_head(h) / scale, self.log_scale_head(h)


class AmortisedChannel(LearnedChannel):
    """The amortised adversary ``x' = clip(x + m(x, y, g)) + σ(x, y, g) ⊙ ξ`` (``‖m‖₂ < ε``).

    ``g`` is the target's input gradient at ``(x, y)`` (:func:`input_gradient`; the target
    is the posterior draw the trainer passes, so one extra backward pass per sample, as the
    one-step channel); ``(d, s) = network(x, y, g/‖g‖)``, ``m = squash_to_ball(ε d, ε)`` and
    ``σ = σ_max sigmoid(s)``. Training, the optimiser (``maximize=True`` Adam), its saved
    state and the noise bound are :class:`~adv_channels.LearnedChannel`'s.

    Args:
        network: ``network(x, y, g_unit) -> (d, s)`` with ``num_classes``:
            :class:`ConvAmortisedGenerator` or :class:`DenseAmortisedGenerator`.
        eps: Budget ``ε >= 0``, ``‖m‖₂ < ε`` (input units).
        sigma_max: Bound ``σ_max > 0`` of the per-element noise scale.
        clamp: Valid input range of the mean point (``None``: unbounded).
        lr: Adam learning rate of :meth:`adversary_step`; default ``1e-3``.
        adversary_fraction: Share ``f ∈ (0, 1]`` of each batch the adversary step trains on
            (its first ``⌈f B⌉`` examples; a trainer's batches are shuffled). Default 1;
            :func:`~adv_channels.amo50_channel` uses ½, the share of the batch the channel
            perturbs, which halves the step's cost (docs/theory.md). Only used with
            ``update="alternating"``.
        update: ``"alternating"`` (default) or ``"joint"``: see
            :class:`~adv_channels.LearnedChannel`. Jointly, the generator is trained on
            every example the channel perturbs for the cost of its own backward pass.

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> ch = AmortisedChannel(DenseAmortisedGenerator(4), eps=0.5, sigma_max=0.1)
        >>> model = torch.nn.Linear(4, 1)
        >>> regressor = lambda t: (model(t).squeeze(1), torch.ones(len(t)))  # (mean, var)
        >>> x, y = torch.randn(8, 4), torch.randn(8)
        >>> bool(((ch.mean(x, y, regressor) - x).norm(dim=1) < 0.5).all())
        True
        >>> loss = ch.adversary_step(regressor, x, y)  # one ascent step on the RMSE
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        eps: float,
        sigma_max: float,
        clamp: tuple[float, float] | None = None,
        lr: float = 1e-3,
        adversary_fraction: float = 1.0,
        update: Literal["alternating", "joint"] = "alternating",
    ) -> None:
        super().__init__(network, eps=eps, sigma_max=sigma_max, clamp=clamp, lr=lr, update=update)
        fraction = check_scalar(adversary_fraction, "adversary_fraction", positive=True)
        if fraction > 1.0:
            raise ValueError(f"adversary_fraction must be in (0, 1]; got {adversary_fraction}")
        self.adversary_fraction = fraction

    @property
    def needs_target(self) -> bool:
        """Always: the generator reads the target's input gradient."""
        return True

    def adversary_step(
        self,
        target: Predictive,
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """:meth:`LearnedChannel.adversary_step` on the first ``⌈f B⌉`` examples."""
        if self.adversary_fraction < 1.0 and isinstance(x, Tensor) and x.ndim > 0:
            k = max(1, math.ceil(self.adversary_fraction * x.shape[0]))
            x = x[:k]
            y = None if y is None else y[:k]
        return super().adversary_step(target, x, y, generator=generator)

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return super().extra_repr() + f", adversary_fraction={self.adversary_fraction}"

    def loc_scale(
        self,
        x: Tensor,
        y: Tensor | None,
        target: Predictive | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``μ = clip(x + squash(ε d))`` and ``σ = σ_max sigmoid(s)``, both ``(B, *)``."""
        require_target(target, type(self).__name__)
        assert target is not None
        check_module_device(self.network, x, "the channel's network")
        check_in_range(x, self.clamp)
        labels = self._labels(x, y, target)
        g_unit = _unit(input_gradient(target, x, labels))
        direction, s = self.network(x, labels, g_unit)
        loc = x + squash_to_ball(self.eps * direction, self.eps)
        if self.clamp is not None:
            loc = loc.clamp(*self.clamp)
        log_scale = math.log(self.sigma_max) + F.logsigmoid(s)
        return loc, log_scale.exp()
