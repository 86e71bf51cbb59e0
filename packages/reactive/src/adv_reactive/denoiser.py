"""An amortised alternative to ABC: a denoiser trained on channel simulations.

The reactive PPD is ``p(y | x') = E_{p(x | x')} p(y | x, β)`` (eqs. 4 and 5 integrate over the
clean input ``x``). ABC (:class:`adv_reactive.ABC`) estimates ``p(x | x')`` on the training
inputs from stored simulations, so its memory and prediction cost grow with ``M·N·S``. The
amortised alternative learns ``q(x | x') = N(x; x' + r(x'), diag exp(2ℓ(x')))`` once, by
maximum likelihood on simulated pairs ``(x'_sim, x)``, ``x'_sim ~ p(x' | x, β_m)`` (fresh
simulations every epoch, under a random posterior draw), and predicts with

``p(y | x') ≈ (1/(M K)) Σ_m Σ_k p(y | x̃_k, β_m)``, ``x̃_k ~ q(x | x')``,

``K·M`` forward passes of the model per test input, whatever ``N`` (docs/theory.md,
"Likelihood-free reactive defence"). Sampling is reparameterised, so attacks get gradients.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from adv_channels import Channel
from adv_reactive.abc import Simulator, check_simulator, simulate
from adv_reactive.draw_predictive import DrawPredictive
from adv_reactive.options import coerce_option
from adv_reactive.smoothing import eval_mode
from bnn_core import SamplingMethod, forward_samples, sample_weights

__all__ = ["DenoisingPPD", "GaussianDenoiser"]

_FORMAT = "adv_reactive.DenoisingPPD"
_LOG_STD_RANGE = (-9.0, 3.0)


class GaussianDenoiser(nn.Module):
    """``q(x | x') = N(x; x' + r(x'), diag exp(2ℓ(x')))``: an MLP on flattened inputs.

    Args:
        dim: Input features ``D`` (flattened).
        hidden: Width of the hidden layers, default 256.
        depth: Hidden layers, default 2.

    Shape:
        - Input: ``(B, D)``; output: ``mean`` and ``log_std``, each ``(B, D)``.

    Examples:
        >>> den = GaussianDenoiser(4, hidden=8)
        >>> mean, log_std = den(torch.rand(3, 4))
        >>> mean.shape, den.sample(torch.rand(3, 4), 5).shape
        (torch.Size([3, 4]), torch.Size([5, 3, 4]))
    """

    def __init__(self, dim: int, *, hidden: int = 256, depth: int = 2) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * dim)
        nn.init.zeros_(self.head.weight)  # starts at the identity with unit log-std 0
        nn.init.zeros_(self.head.bias)
        self.dim = dim

    def forward(self, x_adv: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of ``q(x | x')``, each ``(B, D)``."""
        out = self.head(self.body(x_adv))
        residual, log_std = out.split(self.dim, dim=1)
        return x_adv + residual, log_std.clamp(*_LOG_STD_RANGE)

    def nll(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Mean negative log-density ``−log q(x | x')`` per example (nats), the training loss."""
        mean, log_std = self(x_adv)
        z = (x - mean) * torch.exp(-log_std)
        per = 0.5 * z.square() + log_std + 0.5 * math.log(2 * math.pi)
        return per.sum(dim=1).mean()

    def sample(self, x_adv: Tensor, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``num`` reparameterised draws ``x̃ ~ q(x | x')``, ``(num, B, D)``."""
        mean, log_std = self(x_adv)
        noise = torch.randn(
            (num, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device
        )
        return mean + torch.exp(log_std) * noise


class DenoisingPPD(nn.Module):
    """The reactive PPD with ``p(x | x')`` amortised by a :class:`GaussianDenoiser`.

    ``p(y | x') ≈ (1/(M K)) Σ_m Σ_k softmax f_{β_m}(x̃_k)``, ``x̃_k ~ q(x | x')`` (module
    docstring; docs/theory.md). Classification. The denoiser is trained at :meth:`fit` on
    fresh simulations ``x'_sim ~ p(x' | x_i, β_m)`` of the training inputs (``epochs``
    passes, a random posterior draw per batch for channels that read the model), with Adam;
    nothing of size ``N`` is stored.

    Args:
        model: The Bayesian classifier (trained on clean data).
        channel: The simulator: any :class:`adv_channels.Channel` or a callable
            ``simulate(x, y, predictive, generator) -> x'`` (as for :class:`adv_reactive.ABC`).
        num_samples: Posterior draws ``M``, default 10.
        num_denoised: Denoised inputs ``K`` per test input, default 8.
        per_draw: Simulate under posterior draws (``None``: when the channel reads a model).
        hidden: Denoiser width, default 256. ``depth``: its hidden layers, default 2.
        epochs: Passes over the training inputs, default 5.
        lr: Adam learning rate, default ``1e-3``.
        batch_size: Training inputs per step, default 256.
        generator: Randomness of the draws, simulations and denoised samples (on the
            model's device).
        method: How the ``M`` draws are evaluated (:func:`bnn_core.forward_samples`).

    Examples:
        >>> import bnn_core
        >>> from adv_channels import GaussianChannel
        >>> model = bnn_core.mnist_cnn(image_size=12)
        >>> x, y = torch.rand(64, 1, 12, 12), torch.randint(0, 10, (64,))
        >>> dppd = DenoisingPPD(model, GaussianChannel(0.1), num_samples=2, epochs=1).fit(x, y)
        >>> dppd(torch.rand(3, 1, 12, 12)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        model: nn.Module,
        channel: Channel | Simulator | None,
        *,
        num_samples: int = 10,
        num_denoised: int = 8,
        per_draw: bool | None = None,
        hidden: int = 256,
        depth: int = 2,
        epochs: int = 5,
        lr: float = 1e-3,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
        method: SamplingMethod | str = SamplingMethod.AUTO,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if channel is not None:
            check_simulator(channel)
        for name, value in (
            ("num_samples", num_samples),
            ("num_denoised", num_denoised),
            ("epochs", epochs),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"lr must be positive; got {lr!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {generator!r}")
        self.model = model
        self.channel = channel
        self.num_samples = num_samples
        self.num_denoised = num_denoised
        self.per_draw = per_draw
        self.hidden, self.depth = hidden, depth
        self.epochs, self.lr, self.batch_size = epochs, float(lr), batch_size
        self.generator = generator
        self.method = coerce_option(SamplingMethod, method, "method")
        self.denoiser: GaussianDenoiser | None = None
        self._draws: dict[str, Tensor] = {}
        self._input_shape: tuple[int, ...] | None = None
        self.losses: list[float] = []

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has trained the denoiser."""
        return self.denoiser is not None and bool(self._draws)

    @property
    def draws(self) -> dict[str, Tensor]:
        """The ``M`` posterior draws (detached)."""
        return dict(self._draws)

    def fit(
        self, x_train: Tensor, y_train: Tensor | None = None, *, progress: bool = False
    ) -> DenoisingPPD:
        """Draw ``M`` posterior samples and train the denoiser on fresh simulations.

        Args:
            x_train: ``(N, *input_shape)`` training inputs (on the model's device and dtype).
            y_train: ``(N,)`` labels read by the simulator, or ``None``.
            progress: Show a progress bar over epochs.

        Returns:
            ``self``. :attr:`losses` holds the mean training NLL of each epoch (nats).
        """
        if self.channel is None:
            raise RuntimeError("this DenoisingPPD was loaded without a channel: pass channel=")
        if not isinstance(x_train, Tensor) or not x_train.is_floating_point() or x_train.dim() < 2:
            raise TypeError("x_train must be a floating-point tensor (N, *input_shape)")
        if x_train.shape[0] == 0:
            raise ValueError("x_train is empty")
        if y_train is not None and (
            not isinstance(y_train, Tensor) or y_train.shape[0] != x_train.shape[0]
        ):
            raise ValueError("y_train must hold one label per training input")
        model = self.model
        num, dim = x_train.shape[0], math.prod(x_train.shape[1:])
        with eval_mode(model), torch.no_grad():
            draws = sample_weights(model, self.num_samples, self.generator)
        self._draws = {k: v.detach() for k, v in draws.items()}
        per_draw = self.per_draw
        if per_draw is None:
            per_draw = bool(getattr(self.channel, "needs_target", True))
        preds = [DrawPredictive(model, self._draws, m) for m in range(self.num_samples)]
        device, dtype = x_train.device, x_train.dtype
        den = GaussianDenoiser(dim, hidden=self.hidden, depth=self.depth).to(device, dtype)
        opt = torch.optim.Adam(den.parameters(), lr=self.lr)
        self.losses = []
        index_gen = _cpu(self.generator)
        bar = tqdm(range(self.epochs), desc="DenoisingPPD.fit", disable=not progress)
        with eval_mode(model):
            for _ in bar:
                order = torch.randperm(num, generator=index_gen).to(device)
                total = 0.0
                for start in range(0, num, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    xb = x_train[idx]
                    yb = None if y_train is None else y_train[idx]
                    m = int(torch.randint(self.num_samples, (1,), generator=index_gen))
                    target = preds[m] if per_draw else None
                    sim = simulate(self.channel, xb, yb, target, self.generator)
                    loss = den.nll(sim.reshape(-1, dim), xb.reshape(-1, dim))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * idx.shape[0]
                self.losses.append(total / num)
        den.requires_grad_(False)
        self.denoiser = den.eval()
        self._input_shape = tuple(x_train.shape[1:])
        return self

    def forward(self, x_adv: Tensor) -> Tensor:
        """``(B, C)`` log-probabilities of the amortised reactive PPD (differentiable)."""
        if not self.is_fitted:
            raise RuntimeError("this DenoisingPPD is not fitted: call fit(x_train, y_train)")
        assert self.denoiser is not None and self._input_shape is not None
        if not isinstance(x_adv, Tensor) or tuple(x_adv.shape[1:]) != self._input_shape:
            raise ValueError(f"x_adv must have shape (B, {', '.join(map(str, self._input_shape))})")
        batch = x_adv.shape[0]
        clean = self.denoiser.sample(x_adv.reshape(batch, -1), self.num_denoised, self.generator)
        clean = clean.reshape(self.num_denoised * batch, *self._input_shape)
        with eval_mode(self.model):
            logits = forward_samples(
                self.model, clean, self.num_samples, weights=self._draws, method=self.method
            )  # (M, K·B, C)
        log_p = torch.log_softmax(logits, dim=-1).reshape(
            self.num_samples * self.num_denoised, batch, -1
        )
        return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])

    def denoise(self, x_adv: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` of ``q(x | x')``, each ``(B, *input_shape)``."""
        if not self.is_fitted:
            raise RuntimeError("this DenoisingPPD is not fitted")
        assert self.denoiser is not None and self._input_shape is not None
        mean, log_std = self.denoiser(x_adv.reshape(x_adv.shape[0], -1))
        shape = (x_adv.shape[0], *self._input_shape)
        return mean.reshape(shape), log_std.exp().reshape(shape)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the denoiser, the draws and the options (``torch.load(weights_only=True)``)."""
        if not self.is_fitted:
            raise RuntimeError("this DenoisingPPD is not fitted")
        assert self.denoiser is not None and self._input_shape is not None
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "denoiser": self.denoiser.state_dict(),
            "dim": self.denoiser.dim,
            "hidden": self.hidden,
            "depth": self.depth,
            "draws": dict(self._draws),
            "input_shape": list(self._input_shape),
            "num_samples": self.num_samples,
            "num_denoised": self.num_denoised,
            "method": self.method.value,
        }
        torch.save(payload, os.fspath(path))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        model: nn.Module,
        channel: Channel | Simulator | None = None,
        generator: torch.Generator | None = None,
        map_location: torch.device | str | None = "cpu",
    ) -> DenoisingPPD:
        """Load a :class:`DenoisingPPD` saved by :meth:`save` (prediction needs ``model``)."""
        payload = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"path {os.fspath(path)!r} is not a file saved by DenoisingPPD.save")
        obj = cls(
            model,
            channel,
            num_samples=payload["num_samples"],
            num_denoised=payload["num_denoised"],
            hidden=payload["hidden"],
            depth=payload["depth"],
            generator=generator,
            method=payload["method"],
        )
        den = GaussianDenoiser(payload["dim"], hidden=payload["hidden"], depth=payload["depth"])
        first = next(iter(payload["denoiser"].values()))
        den = den.to(first.device, first.dtype)
        den.load_state_dict(payload["denoiser"])
        den.requires_grad_(False)
        obj.denoiser = den.eval()
        obj._draws = dict(payload["draws"])
        obj._input_shape = tuple(payload["input_shape"])
        return obj


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """The generator for CPU-side index draws (a CUDA generator cannot drive randperm on CPU)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    return torch.Generator().manual_seed(int(generator.initial_seed()))
