"""Many posterior draws in one call: weight samples and per-draw forward passes.

Two evaluation paths sit behind :func:`forward_samples` and give the same result for the
same draws: a batched one (``torch.func.vmap`` over ``torch.func.functional_call``, the
drawn weights substituted for the ``*_mu`` parameters) and a loop over draws (each draw's
weights handed to the Bayesian layers directly, which costs less per draw than
``functional_call``). Both put the model in ``"mean"`` mode for the duration of the call,
so layers without drawn weights use ``μ``; gradients reach ``μ`` and ``ρ`` through
``w = μ + softplus(ρ) ⊙ ε`` and reach the input.

Which is faster depends on the device (``bench/perf.py``, section ``bnn_core``): on a
small CPU the loop wins, since one draw's activations stay in cache while the batched
pass streams ``M`` times more memory; on a GPU the batched pass wins. ``method="auto"``
picks accordingly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from bnn_core._checks import (
    as_enum,
    check_generator,
    check_module,
    check_positive_int,
    check_same_device,
    check_tensor,
)
from bnn_core.enums import SampleMode, SamplingMethod
from bnn_core.layers.base import BayesianModule, bayesian_modules, variational_items
from bnn_core.modes import sample_mode

__all__ = ["forward_samples", "resolve_method", "sample_weights"]


def _sampled_parameters(model: nn.Module) -> dict[str, tuple[nn.Parameter, nn.Parameter]]:
    """``{"<layer>.weight": (mu, rho), ...}`` for every Bayesian layer not in mean mode."""
    return {
        name: (mu, rho)
        for name, layer, mu, rho in variational_items(model)
        if layer.sample_mode is not SampleMode.MEAN
    }


def _all_parameters(model: nn.Module) -> dict[str, tuple[nn.Parameter, nn.Parameter]]:
    """``{"<layer>.weight": (mu, rho), ...}`` for every Bayesian layer."""
    return {name: (mu, rho) for name, _, mu, rho in variational_items(model)}


def draw_noise(
    model: nn.Module,
    num_samples: int,
    generator: torch.Generator | None = None,
    *,
    all_layers: bool = False,
) -> dict[str, Tensor]:
    """Standard normal noise ``ε`` for ``num_samples`` draws of every sampled parameter.

    All the noise comes from one ``randn`` call (when all parameters share a device and
    dtype): one fast call, and a seeded generator gives reproducible draws.

    Args:
        model: Any module.
        num_samples: ``M >= 1``.
        generator: Source of randomness (on the parameters' device), or ``None``.
        all_layers: Include layers in ``"mean"`` mode (by default they get no entry).

    Returns:
        ``{"<layer>.weight": (M, *weight_mu.shape), "<layer>.bias": ...}``.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    params = _all_parameters(model) if all_layers else _sampled_parameters(model)
    if not params:
        return {}
    first = next(iter(params.values()))[0]
    check_generator(generator, first.device)
    same = all(mu.device == first.device and mu.dtype == first.dtype for mu, _ in params.values())
    if not same:
        return {
            key: torch.randn(
                (num_samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device
            )
            for key, (mu, _) in params.items()
        }
    sizes = [num_samples * mu.numel() for mu, _ in params.values()]
    flat = torch.randn(sum(sizes), generator=generator, dtype=first.dtype, device=first.device)
    chunks = flat.split(sizes)
    return {
        key: chunk.view(num_samples, *mu.shape)
        for (key, (mu, _)), chunk in zip(params.items(), chunks, strict=True)
    }


def weights_from_noise(model: nn.Module, noise: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Reparameterised weights ``w = μ + softplus(ρ) ⊙ ε`` for the given noise.

    Args:
        model: The model the noise was drawn for.
        noise: ``{"<layer>.weight": (M, *shape), ...}`` as from :func:`draw_noise`.

    Returns:
        The weights, same keys and shapes, differentiable in ``μ`` and ``ρ``.
    """
    params = _all_parameters(model)
    out = {}
    for key, eps in noise.items():
        if key not in params:
            raise ValueError(f"noise has an entry {key!r} that is no Bayesian parameter of model")
        mu, rho = params[key]
        out[key] = torch.addcmul(mu, F.softplus(rho), eps)
    return out


def sample_weights(
    model: nn.Module, num_samples: int, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Draw ``M`` reparameterised samples of every Bayesian weight and bias of ``model``.

    ``w_m = μ + softplus(ρ) ⊙ ε_m`` (the pathwise draws of the paper's Section 3.3), differentiable
    in ``μ`` and ``ρ``. Layers in ``"mean"`` mode get no entry: :func:`forward_samples` then uses
    their ``μ`` in every draw, so a model in mean mode is a point estimate.

    Args:
        model: Any module (a model without Bayesian layers gives ``{}``).
        num_samples: ``M >= 1``.
        generator: Source of randomness (on the parameters' device), or ``None``.

    Returns:
        ``{"<layer>.weight": (M, *weight_mu.shape), "<layer>.bias": (M, out), ...}``,
        keyed by the layer's qualified name (``"weight"``/``"bias"`` for a bare layer).

    Examples:
        >>> model = mnist_cnn()
        >>> w = sample_weights(model, 10, generator=torch.Generator().manual_seed(0))
        >>> w["0.weight"].shape
        torch.Size([10, 16, 1, 3, 3])
    """
    check_module(model)
    return weights_from_noise(model, draw_noise(model, num_samples, generator))


def _check_weights(
    model: nn.Module, weights: object, num_samples: int | None
) -> tuple[dict[str, Tensor], int]:
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a dict of tensors; got {type(weights).__name__}")
    params = _all_parameters(model)
    draws: int | None = None
    for key, value in weights.items():
        if key not in params:
            known = ", ".join(repr(k) for k in list(params)[:6])
            raise ValueError(
                f"weights has an entry {key!r} that is no Bayesian parameter of model "
                f"(expected keys like {known})"
            )
        check_tensor(value, f"weights[{key!r}]", floating=True)
        mu = params[key][0]
        if value.dim() != mu.dim() + 1 or value.shape[1:] != mu.shape:
            raise ValueError(
                f"weights[{key!r}] must have shape (M, {', '.join(map(str, mu.shape))}); "
                f"got {tuple(value.shape)}"
            )
        if value.device != mu.device or value.dtype != mu.dtype:
            raise ValueError(
                f"weights[{key!r}] is {value.dtype} on {value.device} but the parameter is "
                f"{mu.dtype} on {mu.device}"
            )
        if draws is None:
            draws = value.shape[0]
        elif value.shape[0] != draws:
            raise ValueError(
                f"every entry of weights must hold the same number of draws; "
                f"{key!r} has {value.shape[0]}, others {draws}"
            )
    if draws is None:
        if num_samples is None:
            raise ValueError("weights is empty: pass num_samples too, to say how many draws")
        draws = check_positive_int(num_samples, "num_samples")
    elif num_samples is not None and check_positive_int(num_samples, "num_samples") != draws:
        raise ValueError(f"num_samples={num_samples} but weights hold {draws} draws")
    if draws < 1:
        raise ValueError("weights hold no draws (M = 0)")
    return dict(weights), draws


def _training_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.training for m in model.modules())


def resolve_method(
    method: SamplingMethod | str, model: nn.Module, device: torch.device
) -> SamplingMethod:
    """The concrete path (``"vmap"`` or ``"loop"``) that :func:`forward_samples` takes.

    ``"auto"`` is ``"vmap"`` on CUDA and ``"loop"`` elsewhere (the faster of the two, as
    measured by ``bench/perf.py``), and ``"loop"`` whenever a batch-norm layer is in
    training mode: ``vmap`` cannot update its running statistics in place.

    Raises:
        ValueError: ``method="vmap"`` with a batch-norm layer in training mode.
    """
    method = as_enum(SamplingMethod, method, "method")
    training_bn = _training_batchnorm(model)
    if method is SamplingMethod.VMAP and training_bn:
        raise ValueError(
            "method='vmap' cannot run batch-norm layers in training mode (their running "
            "statistics are updated in place); use method='loop' or 'auto', or model.eval()"
        )
    if method is SamplingMethod.AUTO:
        if device.type == "cuda" and not training_bn:
            return SamplingMethod.VMAP
        return SamplingMethod.LOOP
    return method


def _as_output(out: object) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"model(x) must return a tensor; got {type(out).__name__}")
    return out


def forward_samples(
    model: nn.Module,
    x: Tensor,
    num_samples: int | None = None,
    *,
    weights: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    method: SamplingMethod | str = SamplingMethod.AUTO,
) -> Tensor:
    """Outputs of ``model`` at ``x`` under ``M`` posterior draws, stacked.

    Either draws ``M = num_samples`` fresh weight samples (:func:`sample_weights`) or uses
    the given ``weights``; every example of the batch sees the same ``M`` draws (so layers
    in ``"local"`` mode are sampled in weight space here, like ``"sample"`` ones: the same
    marginals, but one joint function draw per ``m``). Layers without an entry in
    ``weights`` (e.g. those in ``"mean"`` mode) use their ``μ``; a
    model without Bayesian layers is evaluated once and its output repeated ``M`` times.
    The model's train/eval flag is left alone (batch-norm layers in eval mode are
    deterministic); its sampling modes are restored on exit.

    Args:
        model: Any module whose Bayesian layers are :class:`bnn_core.BayesianModule`.
        x: Input batch ``(B, ...)`` on the model's device.
        num_samples: ``M >= 1`` (optional when ``weights`` is given).
        weights: Draws from :func:`sample_weights` (reuse them to hold the draws fixed).
        generator: Source of randomness for fresh draws (not allowed with ``weights``).
        method: ``"vmap"`` (batched), ``"loop"`` or ``"auto"`` (see
            :func:`resolve_method`). All give the same result for the same draws.

    Returns:
        ``(M, B, ...)``: ``out[m] = model(x)`` with the ``m``-th weights; differentiable in
        ``x`` and in every ``μ`` and ``ρ``.

    Shape:
        - x: ``(B, ...)``, whatever ``model`` accepts.
        - Output: ``(M, *model(x).shape)``.

    Examples:
        >>> model = mnist_cnn()
        >>> logits = forward_samples(model, torch.rand(8, 1, 28, 28), 10)
        >>> logits.shape
        torch.Size([10, 8, 10])
    """
    check_module(model)
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_same_device(x, model)
    method = as_enum(SamplingMethod, method, "method")
    if weights is None:
        if num_samples is None:
            raise ValueError("pass num_samples (the number of draws) or weights")
        draws = check_positive_int(num_samples, "num_samples")
        params = sample_weights(model, draws, generator=generator)
    else:
        if generator is not None:
            raise ValueError("generator is unused when weights are given; pass one or the other")
        params, draws = _check_weights(model, weights, num_samples)
    with sample_mode(model, SampleMode.MEAN):
        if not params:
            out = _as_output(model(x))
            return out.unsqueeze(0).expand(draws, *out.shape)
        if resolve_method(method, model, x.device) is SamplingMethod.VMAP:
            # vmap batches a convolution as one grouped convolution over the M kernels: from
            # kernels drawn around a channels-last mean it copied them at every call, 1.3x
            # slower (bench/perf.py); one contiguous copy of the draws up front is cheap
            substituted = {key + "_mu": value.contiguous() for key, value in params.items()}

            def one_draw(p: dict[str, Tensor]) -> Tensor:
                return _as_output(functional_call(model, p, (x,)))

            return vmap(one_draw, randomness="different")(substituted)
        return _loop_draws(model, x, params, draws)


def _loop_draws(model: nn.Module, x: Tensor, params: Mapping[str, Tensor], draws: int) -> Tensor:
    """The loop path: one forward per draw with the draw's weights set on each layer.

    Each parameter's draws are split with one ``unbind`` (its backward stacks the ``M``
    gradients into one tensor, where per-draw indexing would zero-fill an ``(M, ...)``
    buffer per draw), and the weights are handed to the layers directly: the same result
    as ``functional_call`` with ``weight_mu`` substituted, without its per-call cost of
    swapping every parameter of the module (about 5% of a draw of the MNIST CNN). A model
    with a Bayesian layer that overrides ``forward`` (which might read ``weight_mu``
    itself) goes through ``functional_call``, which substitutes the parameter.
    """
    split = {key: value.unbind(0) for key, value in params.items()}
    layers = list(bayesian_modules(model))
    if any(type(layer).forward is not BayesianModule.forward for _, layer in layers):
        return torch.stack(
            [
                _as_output(
                    functional_call(model, {f"{k}_mu": v[m] for k, v in split.items()}, (x,))
                )
                for m in range(draws)
            ]
        )
    plan: list[tuple[BayesianModule, Sequence[Tensor] | None, Sequence[Tensor] | None]] = []
    for name, layer in layers:
        prefix = f"{name}." if name else ""
        weights, biases = split.get(prefix + "weight"), split.get(prefix + "bias")
        if weights is not None or biases is not None:
            plan.append((layer, weights, biases))
    outs = []
    try:
        for m in range(draws):
            for layer, weights, biases in plan:
                layer._drawn = (
                    layer.weight_mu if weights is None else weights[m],
                    layer.bias_mu if biases is None else biases[m],
                )
            outs.append(_as_output(model(x)))
    finally:
        for layer, _, _ in plan:
            layer._drawn = None
    return torch.stack(outs)
