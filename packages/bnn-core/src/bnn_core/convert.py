"""Turning a deterministic network into its mean-field Bayesian counterpart."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from bnn_core._checks import check_module
from bnn_core.enums import SampleMode
from bnn_core.layers.base import DEFAULT_INIT_SIGMA, BayesianModule, other_owner
from bnn_core.layers.conv import BayesConv2d, is_channels_last
from bnn_core.layers.linear import BayesLinear
from bnn_core.likelihood import GaussianLikelihood
from bnn_core.priors import GaussianPrior

__all__ = ["to_bayesian"]

# Modules with parameters that stay point estimates: normalisation layers (as in the
# paper's Bayesian ResNet-18) and the learned observation noise of regression models.
_DETERMINISTIC_OK = (_NormBase, nn.GroupNorm, nn.LayerNorm, GaussianLikelihood)


def _convert_leaf(
    module: nn.Module, prior: GaussianPrior | None, init_sigma: float, mode: SampleMode | str
) -> BayesianModule | None:
    if type(module) not in (nn.Linear, nn.Conv2d):
        return None
    kwargs = {"prior": prior, "init_sigma": init_sigma, "sample_mode": mode}
    factory = {"device": module.weight.device, "dtype": module.weight.dtype}
    new: BayesianModule
    if type(module) is nn.Linear:
        new = BayesLinear(
            module.in_features, module.out_features, module.bias is not None, **kwargs, **factory
        )
    else:
        new = BayesConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            **kwargs,
            **factory,
        )
    if isinstance(new, BayesConv2d) and is_channels_last(module.weight):
        new = new.to(memory_format=torch.channels_last)  # keep the network's layout
    with torch.no_grad():
        new.weight_mu.copy_(module.weight)
        if module.bias is not None and new.bias_mu is not None:
            new.bias_mu.copy_(module.bias)
    new.train(module.training)
    return new


def _unsupported(module: nn.Module) -> bool:
    if isinstance(module, (BayesianModule, *_DETERMINISTIC_OK)):
        return False
    return any(True for _ in module.parameters(recurse=False))


def _refuse_tied_parameters(module: nn.Module) -> None:
    """Raise if two different ``Linear``/``Conv2d`` layers share a weight or bias tensor.

    Each would become a layer with its own posterior, silently untying them. (One layer
    used twice is fine: it stays one Bayesian layer.)
    """
    owners: dict[int, str] = {}
    for name, m in module.named_modules():  # a reused module is listed once
        if type(m) not in (nn.Linear, nn.Conv2d):
            continue
        for pname, p in m.named_parameters(recurse=False):
            qualified = f"{name}.{pname}" if name else pname
            first = other_owner(owners, (p,), qualified)
            if first is not None:
                raise ValueError(
                    f"'{qualified}' is the same tensor as '{first}' (tied weights): to_bayesian "
                    "would give each layer its own posterior and untie them; reuse one layer "
                    "instead, or untie them first"
                )


def to_bayesian(
    module: nn.Module,
    *,
    prior: GaussianPrior | None = None,
    init_sigma: float = DEFAULT_INIT_SIGMA,
    sample_mode: SampleMode | str = SampleMode.SAMPLE,
    inplace: bool = False,
    strict: bool = True,
) -> nn.Module:
    """The mean-field Bayesian counterpart of a network of ``Linear``/``Conv2d`` layers.

    Every ``nn.Linear`` becomes a :class:`~bnn_core.BayesLinear` and every ``nn.Conv2d`` a
    :class:`~bnn_core.BayesConv2d` with the same hyper-parameters, posterior means copied
    from the given weights and biases, and ``σ = init_sigma``. Activations, pooling,
    flattening and normalisation layers (batch-, group-, layer-norm) are kept as they are
    (deterministic), as is a :class:`~bnn_core.GaussianLikelihood`. In ``"mean"`` mode the
    result computes the same function as the input network.

    Args:
        module: The deterministic network (left untouched unless ``inplace``).
        prior: Prior of every new layer. Default ``GaussianPrior(0, 1)``.
        init_sigma: Initial posterior standard deviation. Default ``1e-3``.
        sample_mode: Sampling mode of every new layer. Default ``"sample"``.
        inplace: Convert ``module`` itself instead of a deep copy.
        strict: Raise if another module type holds parameters of its own (e.g.
            ``Conv1d``, ``Embedding``) that would silently stay deterministic.

    Returns:
        The Bayesian network (a new module unless ``inplace``; a bare ``Linear``/``Conv2d``
        always gives a new layer).

    Raises:
        ValueError: ``strict`` and a parametrised module that cannot be converted; or two
            different layers sharing a weight or bias tensor (tied weights).

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> bnn = to_bayesian(net, init_sigma=1e-2)
        >>> type(bnn[0]).__name__
        'BayesLinear'
    """
    check_module(module, "module")
    if not isinstance(inplace, bool) or not isinstance(strict, bool):
        raise TypeError("inplace and strict must be bools")
    leaf = _convert_leaf(module, prior, init_sigma, sample_mode)
    if leaf is not None:
        return leaf
    # Validate the arguments once, even when there is nothing to convert.
    BayesLinear(1, 1, prior=prior, init_sigma=init_sigma, sample_mode=sample_mode)
    if strict:
        bad = [
            f"{name or '<root>'} ({type(m).__name__})"
            for name, m in module.named_modules()
            if type(m) not in (nn.Linear, nn.Conv2d) and _unsupported(m)
        ]
        if bad:
            raise ValueError(
                "to_bayesian converts Linear and Conv2d layers only; these modules hold "
                f"parameters that would stay deterministic: {', '.join(bad)} "
                "(pass strict=False to keep them as point estimates)"
            )
    _refuse_tied_parameters(module)
    root = module if inplace else copy.deepcopy(module)
    # A layer used twice stays one (tied) layer; the old layer is kept alive meanwhile so
    # that its id cannot be reused.
    converted: dict[int, tuple[nn.Module, BayesianModule]] = {}
    for parent in list(root.modules()):
        # _modules, not named_children(): the latter skips the second slot of a tied layer.
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in converted:
                new = converted[id(child)][1]
            else:
                new = _convert_leaf(child, prior, init_sigma, sample_mode)
            if new is not None:
                converted[id(child)] = (child, new)
                setattr(parent, child_name, new)
    return root
