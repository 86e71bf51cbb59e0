"""The mean-field Gaussian dense layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_core._checks import check_positive_int
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA, BayesianModule
from bnn_core.priors import GaussianPrior

__all__ = ["BayesLinear"]


class BayesLinear(BayesianModule):
    """A dense layer ``y = x Wᵀ + b`` with a mean-field Gaussian posterior on ``W`` and ``b``.

    The Bayesian counterpart of :class:`torch.nn.Linear` (paper, SM-6.1.1): parameters
    ``weight_mu``/``weight_rho`` of shape ``(out_features, in_features)`` and
    ``bias_mu``/``bias_rho`` of shape ``(out_features,)``, ``σ = softplus(ρ)``.
    Means are initialised like ``nn.Linear``; every ``σ`` starts at ``init_sigma``.

    Args:
        in_features: Size of each input sample.
        out_features: Size of each output sample.
        bias: Whether the layer has a (Bayesian) bias. Default ``True``.
        prior: Prior over weights and biases. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial posterior standard deviation. Default ``1e-3``.
        sample_mode: ``"sample"`` (default), ``"local"`` or ``"mean"``.
        device: Where to create the parameters.
        dtype: Their floating-point dtype.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Examples:
        >>> layer = BayesLinear(4, 2)
        >>> layer(torch.randn(8, 4)).shape
        torch.Size([8, 2])
        >>> layer.kl().shape
        torch.Size([])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        prior: GaussianPrior | None = None,
        init_sigma: float = DEFAULT_INIT_SIGMA,
        sample_mode: SampleMode | str = SampleMode.SAMPLE,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(prior=prior, init_sigma=init_sigma, sample_mode=sample_mode)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        factory = {"device": device, "dtype": dtype}
        shape = (out_features, in_features)
        self.weight_mu = nn.Parameter(torch.empty(shape, **factory))
        self.weight_rho = nn.Parameter(torch.empty(shape, **factory))
        if bias:
            self.bias_mu = nn.Parameter(torch.empty(out_features, **factory))
            self.bias_rho = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias_mu", None)
            self.register_parameter("bias_rho", None)
        self.reset_parameters()

    def linear_op(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``F.linear(input, weight, bias)``."""
        return F.linear(input, weight, bias)

    def check_input(self, input: Tensor) -> None:
        """Check the input's type, dtype, device and last dimension."""
        super().check_input(input)
        if input.dim() < 1 or input.shape[-1] != self.in_features:
            raise ValueError(
                f"input must have shape (*, {self.in_features}); got {tuple(input.shape)}"
            )

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias_mu is not None}, prior={self.prior}, "
            f"sample_mode={self.sample_mode.value!r}"
        )
