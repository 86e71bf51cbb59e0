"""The mean-field Gaussian 2-D convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._C._functorch import is_batchedtensor
from torch.nn.modules.utils import _pair, _reverse_repeat_tuple

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA, BayesianModule
from bnn_core.priors import GaussianPrior

__all__ = ["BayesConv2d", "is_channels_last"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def is_channels_last(tensor: Tensor) -> bool:
    """Whether a 4-D tensor has exactly the strides of the channels-last layout.

    (``is_contiguous(memory_format=torch.channels_last)`` cannot tell the layouts apart
    for one channel, e.g. the first kernel of an MNIST CNN.) A tensor batched by ``vmap``
    reports no strides and counts as contiguous.
    """
    if tensor.dim() != 4 or is_batchedtensor(tensor):
        return False
    _, c, h, w = tensor.shape
    return tensor.stride() == (h * w * c, 1, w * c, c)


class BayesConv2d(BayesianModule):
    """A 2-D convolution with a mean-field Gaussian posterior on its kernel and bias.

    The Bayesian counterpart of :class:`torch.nn.Conv2d` (paper, SM-6.1.1), with the same
    hyper-parameters: parameters ``weight_mu``/``weight_rho`` of shape
    ``(out_channels, in_channels // groups, kH, kW)`` and ``bias_mu``/``bias_rho`` of shape
    ``(out_channels,)``, ``σ = softplus(ρ)``. Means are initialised like ``nn.Conv2d``;
    every ``σ`` starts at ``init_sigma``.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        kernel_size: Kernel size (int or pair).
        stride: Stride. Default ``1``.
        padding: Padding (int, pair, ``"same"`` or ``"valid"``). Default ``0``.
        dilation: Dilation. Default ``1``.
        groups: Blocked connections from input to output channels. Default ``1``.
        bias: Whether the layer has a (Bayesian) bias. Default ``True``.
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        prior: Prior over weights and biases. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial posterior standard deviation. Default ``1e-3``.
        sample_mode: ``"sample"`` (default), ``"local"`` or ``"mean"``.
        device: Where to create the parameters.
        dtype: Their floating-point dtype.

    Shape:
        - Input: ``(B, in_channels, H, W)`` or ``(in_channels, H, W)``.
        - Output: ``(B, out_channels, H_out, W_out)`` (as ``nn.Conv2d``).

    Examples:
        >>> conv = BayesConv2d(1, 16, 3)
        >>> conv(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 16, 26, 26])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        prior: GaussianPrior | None = None,
        init_sigma: float = DEFAULT_INIT_SIGMA,
        sample_mode: SampleMode | str = SampleMode.SAMPLE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(prior=prior, init_sigma=init_sigma, sample_mode=sample_mode)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.groups = check_positive_int(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups ({groups})"
            )
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}; got {padding_mode!r}")
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"padding must be an int, a pair, 'same' or 'valid'; got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding: tuple[int, int] | str = padding
            pads = [0, 0, 0, 0]
            if padding == "same":
                for d, k, i in zip(self.dilation, self.kernel_size, (1, 0), strict=True):
                    total = d * (k - 1)
                    pads[2 * i] = total // 2
                    pads[2 * i + 1] = total - total // 2
            self._reversed_padding_repeated_twice = tuple(pads)
        else:
            self.padding = _pair(padding)
            self._reversed_padding_repeated_twice = tuple(_reverse_repeat_tuple(self.padding, 2))
        factory = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight_mu = nn.Parameter(torch.empty(shape, **factory))
        self.weight_rho = nn.Parameter(torch.empty(shape, **factory))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(out_channels, **factory))
            self.bias_rho = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def linear_op(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``F.conv2d`` with the layer's hyper-parameters (padding as ``nn.Conv2d``).

        A layer whose ``weight_mu`` is stored channels-last (``model.to(memory_format=
        torch.channels_last)``, or ``mnist_cnn(memory_format="channels_last")``) convolves
        every drawn kernel channels-last too: ``μ + σ ⊙ ε`` does not keep that layout by
        itself, and a contiguous kernel would send the convolution back to the contiguous
        layout (``bench/perf.py``, section ``bnn_core``).
        """
        if is_channels_last(self.weight_mu) and not is_channels_last(weight):
            # not weight.contiguous(memory_format=...): for one input channel it is a no-op
            weight = torch.empty_like(weight, memory_format=torch.channels_last).copy_(weight)
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def check_input(self, input: Tensor) -> None:
        """Check the input's type, dtype, device, rank and channel count."""
        super().check_input(input)
        if input.dim() not in (3, 4) or input.shape[-3] != self.in_channels:
            raise ValueError(
                f"input must have shape (B, {self.in_channels}, H, W) or "
                f"({self.in_channels}, H, W); got {tuple(input.shape)}"
            )

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        parts = [
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}",
            f"stride={self.stride}",
        ]
        if self.padding != (0, 0):
            parts.append(f"padding={self.padding}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias_mu is None:
            parts.append("bias=False")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        parts.append(f"prior={self.prior}, sample_mode={self.sample_mode.value!r}")
        return ", ".join(parts)
