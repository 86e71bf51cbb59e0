"""The base class of mean-field Gaussian layers (paper, SM-6.1.1)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_core._checks import as_enum, check_generator, check_positive_float
from bnn_core.enums import SampleMode
from bnn_core.priors import GaussianPrior, softplus_inverse

__all__ = ["DEFAULT_INIT_SIGMA", "BayesianModule", "bayesian_modules", "is_bayesian"]

DEFAULT_INIT_SIGMA = 1e-3
"""Initial posterior standard deviation ``σ = softplus(ρ)`` of every weight and bias."""


class BayesianModule(nn.Module):
    """A layer whose weight and bias carry a mean-field Gaussian posterior.

    ``q(w) = Π_j N(μ_j, σ_j²)`` with ``σ_j = softplus(ρ_j)``, stored as the parameters
    ``weight_mu``, ``weight_rho``, ``bias_mu`` and ``bias_rho`` (the bias pair is ``None``
    without a bias). The layer's output must be *linear* in ``(weight, bias)`` jointly
    (as for dense and convolutional layers), which is what local reparameterisation
    needs. Subclasses create the four parameters and implement :meth:`linear_op` (and
    optionally :meth:`check_input`); everything else lives here.

    The forward pass depends on :attr:`sample_mode` (see :class:`bnn_core.SampleMode`):
    ``"sample"`` draws ``w = μ + σ ⊙ ε`` afresh at every call, ``"local"`` samples the
    pre-activations (``N(op(x, μ), op(x², σ²))``, independently per example), ``"mean"``
    uses ``μ``. Layers return plain tensors; the KL is available from :meth:`kl`. While
    :func:`bnn_core.forward_samples` evaluates one of its draws, the layer uses that
    draw's weights instead, whatever its mode (the ``_drawn`` slot, set and cleared there).

    Args:
        prior: The prior over weights and biases. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial ``σ`` of every weight and bias (``> 0``). Default ``1e-3``.
        sample_mode: The initial sampling mode. Default ``"sample"``.
    """

    weight_mu: nn.Parameter
    weight_rho: nn.Parameter
    bias_mu: nn.Parameter | None
    bias_rho: nn.Parameter | None

    def __init__(
        self,
        *,
        prior: GaussianPrior | None = None,
        init_sigma: float = DEFAULT_INIT_SIGMA,
        sample_mode: SampleMode | str = SampleMode.SAMPLE,
    ) -> None:
        super().__init__()
        if prior is None:
            prior = GaussianPrior()
        if not isinstance(prior, GaussianPrior):
            raise TypeError(f"prior must be a GaussianPrior or None; got {type(prior).__name__}")
        self.prior = prior
        self.init_sigma = check_positive_float(init_sigma, "init_sigma")
        self.sample_mode = sample_mode
        self._drawn: tuple[Tensor, Tensor | None] | None = None

    # -- the override surface -------------------------------------------------------------

    def linear_op(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Apply the layer's linear operation with the given weight and bias."""
        raise NotImplementedError

    def check_input(self, input: Tensor) -> None:
        """Raise a clear error if ``input`` cannot go through this layer."""
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor; got {type(input).__name__}")
        if input.dtype != self.weight_mu.dtype:
            raise TypeError(
                f"input has dtype {input.dtype} but the layer's parameters are "
                f"{self.weight_mu.dtype}; convert one of them"
            )
        if input.device != self.weight_mu.device:
            raise ValueError(
                f"input is on {input.device} but the layer's parameters are on "
                f"{self.weight_mu.device}"
            )

    # -- state ------------------------------------------------------------------------------

    @property
    def sample_mode(self) -> SampleMode:
        """The current :class:`~bnn_core.SampleMode` (settable with a member or a string)."""
        return self._sample_mode

    @sample_mode.setter
    def sample_mode(self, mode: SampleMode | str) -> None:
        self._sample_mode = as_enum(SampleMode, mode, "sample_mode")

    def reset_parameters(self) -> None:
        """Initialise ``μ`` like PyTorch's Linear/Conv layers and ``σ`` to ``init_sigma``.

        Weight means: Kaiming-uniform with ``a = √5``; bias means: ``U(−1/√fan_in,
        1/√fan_in)``; ``ρ = softplus⁻¹(init_sigma)`` everywhere.
        """
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.weight_mu, a=math.sqrt(5))
            rho = softplus_inverse(self.init_sigma)
            self.weight_rho.fill_(rho)
            if self.bias_mu is not None and self.bias_rho is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight_mu)
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(self.bias_mu, -bound, bound)
                self.bias_rho.fill_(rho)

    def variational_parameters(self) -> Iterator[tuple[str, nn.Parameter, nn.Parameter]]:
        """Yield ``(name, mu, rho)`` for ``"weight"`` and, when present, ``"bias"``."""
        yield "weight", self.weight_mu, self.weight_rho
        if self.bias_mu is not None and self.bias_rho is not None:
            yield "bias", self.bias_mu, self.bias_rho

    @property
    def weight_sigma(self) -> Tensor:
        """Posterior standard deviations of the weight, ``softplus(weight_rho)``."""
        return F.softplus(self.weight_rho)

    @property
    def bias_sigma(self) -> Tensor | None:
        """Posterior standard deviations of the bias (``None`` without a bias)."""
        return None if self.bias_rho is None else F.softplus(self.bias_rho)

    # -- the posterior ------------------------------------------------------------------

    def sample_parameters(
        self, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Draw one reparameterised ``(weight, bias)``: ``μ + softplus(ρ) ⊙ ε``.

        Args:
            generator: Source of the noise ``ε`` (on the parameters' device).

        Returns:
            ``(weight, bias)`` with the parameters' shapes, differentiable in ``μ`` and
            ``ρ``; ``bias`` is ``None`` without a bias.
        """
        check_generator(generator, self.weight_mu.device)
        drawn = []
        for _, mu, rho in self.variational_parameters():
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
            drawn.append(torch.addcmul(mu, F.softplus(rho), eps))
        return drawn[0], (drawn[1] if len(drawn) > 1 else None)

    def kl(self) -> Tensor:
        """Closed-form ``KL(q ‖ p)`` of this layer's weight and bias (a scalar, nats)."""
        total = self.prior.kl(self.weight_mu, self.weight_rho).sum()
        if self.bias_mu is not None and self.bias_rho is not None:
            total = total + self.prior.kl(self.bias_mu, self.bias_rho).sum()
        return total

    # -- forward ------------------------------------------------------------------------

    def forward(self, input: Tensor) -> Tensor:
        """Apply the layer in its current :attr:`sample_mode` (see the class docstring)."""
        self.check_input(input)
        drawn = getattr(self, "_drawn", None)  # absent on layers pickled by older versions
        if drawn is not None:
            return self.linear_op(input, drawn[0], drawn[1])
        mode = self._sample_mode
        if mode is SampleMode.MEAN:
            return self.linear_op(input, self.weight_mu, self.bias_mu)
        if mode is SampleMode.SAMPLE:
            weight, bias = self.sample_parameters()
            return self.linear_op(input, weight, bias)
        return self.local_reparameterisation(input)

    def local_reparameterisation(self, input: Tensor) -> Tensor:
        """One local-reparameterisation draw of the output (Kingma et al. 2015).

        Since the output ``z = op(x, w, b)`` is linear in independent Gaussian ``(w, b)``,
        each output element is Gaussian with mean ``op(x, μ_w, μ_b)`` and variance
        ``op(x², σ_w², σ_b²)``; it is sampled independently per element (so per example).
        """
        mean = self.linear_op(input, self.weight_mu, self.bias_mu)
        bias_sigma = self.bias_sigma
        var = self.linear_op(
            input.square(),
            self.weight_sigma.square(),
            None if bias_sigma is None else bias_sigma.square(),
        )
        std = var.clamp_min(torch.finfo(var.dtype).tiny).sqrt()
        # randn in logical order (randn_like would fill a channels-last mean in memory
        # order): the same seed gives the same draw whatever the layout
        noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device)
        return torch.addcmul(mean, std, noise)


def bayesian_modules(model: nn.Module) -> Iterator[tuple[str, BayesianModule]]:
    """Yield ``(qualified_name, layer)`` for every :class:`BayesianModule` in ``model``.

    The name of ``model`` itself (when it is a Bayesian layer) is ``""``.
    """
    for name, module in model.named_modules():
        if isinstance(module, BayesianModule):
            yield name, module


def variational_items(
    model: nn.Module,
) -> Iterator[tuple[str, BayesianModule, nn.Parameter, nn.Parameter]]:
    """Yield ``(qualified_name, layer, mu, rho)`` for every variational tensor of ``model``.

    ``qualified_name`` is ``"<layer>.<weight|bias>"``. A layer used twice is yielded once
    (it is one posterior); a ``μ`` or ``ρ`` *tensor* shared by two different Bayesian layers
    (weight tying) raises: the KL would count it twice and the draws would treat the copies
    as independent, so rather than a silently wrong posterior it is refused.

    Raises:
        ValueError: A variational parameter belongs to two different Bayesian layers.
    """
    owners: dict[int, str] = {}
    for name, layer in bayesian_modules(model):
        prefix = f"{name}." if name else ""
        for pname, mu, rho in layer.variational_parameters():
            qualified = prefix + pname
            first = other_owner(owners, (mu, rho), qualified)
            if first is not None:
                raise ValueError(
                    f"'{qualified}' shares a variational parameter with '{first}': "
                    "parameters tied across two Bayesian layers are not supported (the KL "
                    "would count them twice and the posterior draws would untie them); "
                    "reuse one layer instead of tying its parameters"
                )
            yield qualified, layer, mu, rho


def other_owner(owners: dict[int, str], tensors: tuple[Tensor, ...], name: str) -> str | None:
    """Record ``name`` as the owner of ``tensors``; return another name that owns one first.

    The bookkeeping of tied-parameter checks: ``owners`` maps ``id(tensor)`` to its first
    owner's name.
    """
    for tensor in tensors:
        first = owners.setdefault(id(tensor), name)
        if first != name:
            return first
    return None


def is_bayesian(model: nn.Module) -> bool:
    """Whether ``model`` holds at least one :class:`BayesianModule`."""
    return any(isinstance(m, BayesianModule) for m in model.modules())
