"""Argument validation shared by the channels: clear errors naming the argument."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TypeVar

import torch
from torch import Tensor, nn

from adv_attacks import check_clamp as check_clamp  # one rule for every package
from adv_attacks import check_in_range as check_in_range

E = TypeVar("E", bound=StrEnum)

Clamp = tuple[float, float] | None
"""The valid input range ``(low, high)``, or ``None`` for unbounded inputs."""


def coerce_option(enum_cls: type[E], value: object, name: str) -> E:
    """Return ``value`` as a member of ``enum_cls`` (members and their string values)."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}") from None


def check_scalar(value: object, name: str, *, positive: bool = False) -> float:
    """A finite real number ``>= 0`` (``> 0`` when ``positive``), as a float."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_x(x: object, name: str = "x") -> Tensor:
    """A floating-point batch ``(B, *)`` with finite values."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must be a batch of shape (B, *), got a 0-d tensor")
    if x.numel() and not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_y(y: object, x: Tensor) -> Tensor | None:
    """``None`` or one label per example: shape ``(B,)`` or ``(B, 1)``, on ``x``'s device."""
    if y is None:
        return None
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a tensor or None, got {type(y).__name__}")
    b = x.shape[0]
    if y.shape not in ((b,), (b, 1)):
        raise ValueError(
            f"y must hold one label per example, shape ({b},) or ({b}, 1) to match x of "
            f"shape {tuple(x.shape)}; got {tuple(y.shape)}"
        )
    if y.device != x.device:
        raise ValueError(f"y is on {y.device} but x is on {x.device}")
    return y


def check_x_adv(x_adv: object, x: Tensor) -> Tensor:
    """``x_adv`` must be a floating-point tensor of ``x``'s shape, on ``x``'s device."""
    x_adv = check_x(x_adv, "x_adv")
    if x_adv.shape != x.shape:
        raise ValueError(
            f"x_adv must have the shape of x, {tuple(x.shape)}; got {tuple(x_adv.shape)}"
        )
    if x_adv.device != x.device:
        raise ValueError(f"x_adv is on {x_adv.device} but x is on {x.device}")
    return x_adv


def check_module_device(module: nn.Module, x: Tensor, name: str) -> None:
    """Raise ``ValueError``/``TypeError`` if ``module``'s tensors do not match ``x``."""
    t = next(iter(module.parameters()), None)
    if t is None:
        return
    if t.device != x.device:
        raise ValueError(
            f"{name} has parameters on {t.device} but x is on {x.device}; move the channel "
            "(channel.to(device)) or the batch so that they share a device"
        )
    if t.dtype != x.dtype:
        raise TypeError(f"{name} has {t.dtype} parameters but x is {x.dtype}; cast one of them")


def require_target(target: object, owner: str) -> None:
    """Raise a clear error when an attack-based channel gets no (or a non-callable) target."""
    if target is None:
        raise ValueError(
            f"{owner} attacks a model: pass target= (a predictive returning (B, C) logits or "
            "log-probabilities, or (mean, var); e.g. the model itself)"
        )
    if not callable(target):
        raise TypeError(f"target must be callable (a predictive), got {type(target).__name__}")


def keep_input_grad(point: Tensor, x: Tensor) -> Tensor:
    """``point`` with the identity Jacobian with respect to ``x`` (value unchanged).

    ``point + (x - x.detach())`` adds an exact zero, so the value is ``point`` bit for bit,
    while gradients reach ``x`` as if the perturbation ``point - x`` were a constant.
    """
    if not x.requires_grad:
        return point
    return point + (x - x.detach())
