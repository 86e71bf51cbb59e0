"""Argument validation shared by the package (private).

Every public entry point checks its arguments here, so that bad input raises a clear
``ValueError``/``TypeError`` naming the argument instead of failing deep inside torch.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TypeVar

import torch
from torch import Tensor, nn

from adv_attacks import check_clamp as check_clamp  # one rule for every package
from adv_attacks import check_in_range as check_in_range
from adv_channels import Channel, LearnedChannel, MixtureChannel
from bnn_core import GaussianLikelihood, Task

E = TypeVar("E", bound=StrEnum)


def as_enum(enum_cls: type[E], value: object, name: str) -> E:
    """Coerce ``value`` (a member or its string) to ``enum_cls``, or raise naming ``name``."""
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        try:
            return enum_cls(value)
        except ValueError:
            pass
    choices = ", ".join(repr(m.value) for m in enum_cls)
    raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def check_positive_int(value: object, name: str) -> int:
    """``value`` if it is an ``int >= 1`` (not a bool), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return value


def check_nonnegative_int(value: object, name: str) -> int:
    """``value`` if it is an ``int >= 0`` (not a bool), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0; got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}")
    return value


def check_float(value: object, name: str, *, positive: bool = False) -> float:
    """A finite real number ``>= 0`` (``> 0`` when ``positive``), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; got {value}")
    return value


def check_module(value: object, name: str = "model") -> nn.Module:
    """``value`` if it is an ``nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(value).__name__}")
    return value


def check_channel(value: object, name: str = "channel") -> Channel:
    """``value`` if it is an :class:`adv_channels.Channel`."""
    if not isinstance(value, Channel):
        raise TypeError(
            f"{name} must be an adv_channels.Channel (e.g. IdentityChannel(), mix_channel(...)); "
            f"got {type(value).__name__}"
        )
    return value


def check_generator(generator: object, device: torch.device) -> torch.Generator | None:
    """``None`` or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None; got {type(generator).__name__}"
        )
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the model is on {device}; create it with "
            f"torch.Generator(device={str(device)!r})"
        )
    return generator


def model_device(model: nn.Module) -> torch.device:
    """Device of ``model``'s first parameter or buffer (CPU when it has neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_batch(model: nn.Module, x: object, y: object, task: Task) -> tuple[Tensor, Tensor]:
    """Validate a training batch ``(x, y)`` against the model and the task.

    Returns:
        ``x`` and ``y`` (``y`` as ``int64`` class indices, or regression targets of ``x``'s
        dtype).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor; got dtype {x.dtype}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (B, *); got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    device = model_device(model)
    if x.device != device:
        raise ValueError(
            f"x is on {x.device} but the model is on {device}; move one of them "
            f"(e.g. x.to({str(device)!r}))"
        )
    if y is None:
        raise ValueError(
            "y is None: training needs labels, both for the likelihood p(y | x', β) and for "
            "channels that read them (attacks on the true label, label-conditioned generators)"
        )
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor; got {type(y).__name__}")
    b = x.shape[0]
    if y.device != x.device:
        raise ValueError(f"y is on {y.device} but x is on {x.device}")
    if task is Task.CLASSIFICATION:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(
                f"y must hold integer class indices for task='classification'; got {y.dtype} "
                "(for real-valued targets use task='regression')"
            )
        if y.shape != (b,):
            raise ValueError(f"y must have shape ({b},) to match x; got {tuple(y.shape)}")
        return x, y.long()
    if not y.is_floating_point():
        raise TypeError(
            f"y must hold real targets for task='regression'; got {y.dtype} "
            "(for class indices use task='classification')"
        )
    if y.shape not in ((b,), (b, 1)):
        raise ValueError(f"y must have shape ({b},) or ({b}, 1) to match x; got {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y contains NaN or infinite values")
    return x, y.to(x.dtype)


def check_dataset_size(dataset_size: object, batch_size: int) -> int:
    """``N``: an int at least the batch size ``B``."""
    n = check_positive_int(dataset_size, "dataset_size")
    if n < batch_size:
        raise ValueError(
            f"dataset_size (N = {n}) is smaller than the batch (B = {batch_size}); pass the "
            "number of training points N, which scales the likelihood by N/B"
        )
    return n


def resolve_likelihood(
    model: nn.Module, likelihood: GaussianLikelihood | None, task: Task
) -> GaussianLikelihood | None:
    """The Gaussian likelihood of a regression model (``likelihood`` or ``model.likelihood``)."""
    if task is Task.CLASSIFICATION:
        if likelihood is not None:
            raise ValueError("likelihood is only used with task='regression'")
        return None
    if likelihood is None:
        likelihood = getattr(model, "likelihood", None)
        if likelihood is None:
            raise ValueError(
                "task='regression' needs a GaussianLikelihood with the learned noise s: pass "
                "likelihood= or give the model a .likelihood attribute (bnn_core.regression_mlp)"
            )
    if not isinstance(likelihood, GaussianLikelihood):
        raise TypeError(
            f"likelihood must be a bnn_core.GaussianLikelihood; got {type(likelihood).__name__}"
        )
    return likelihood


def is_stochastic(channel: Channel) -> bool | None:
    """Whether ``channel`` is known to add randomness beyond its component assignment.

    ``True`` for Gaussian noise ``σ > 0`` (in any active mixture component) and learned
    channels, ``False`` for point masses (``σ = 0``) and mixtures of them, ``None`` when
    the channel does not say (a user-defined channel).
    """
    if isinstance(channel, MixtureChannel):
        verdicts = [
            is_stochastic(c) for w, c in zip(channel.weights, channel.components, strict=True) if w
        ]
        if any(v is True for v in verdicts):
            return True
        return None if any(v is None for v in verdicts) else False
    if isinstance(channel, LearnedChannel):
        return True
    sigma = getattr(channel, "sigma", None)
    if isinstance(sigma, int | float) and not isinstance(sigma, bool):
        return sigma > 0
    return None


def require_deterministic(channel: Channel, objective: str) -> None:
    """Raise if ``channel`` is known to be stochastic (``objective`` needs a point mass)."""
    if is_stochastic(channel):
        raise ValueError(
            f"{objective} needs a deterministic (point-mass) channel such as "
            "adv_channels.at_channel / at50_channel / pgd_at_channel; this channel adds noise "
            "(sigma > 0, or a learned generator)"
        )
