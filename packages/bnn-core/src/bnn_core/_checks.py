"""Argument validation shared by the package (private).

Every public entry point checks its arguments here, so that bad input raises a clear
``ValueError``/``TypeError`` that names the argument, rather than failing deep in torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

import torch
from torch import Tensor, nn

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
    """Return ``value`` if it is an ``int >= 1`` (not a bool), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return value


def check_positive_float(value: object, name: str) -> float:
    """Return ``float(value)`` if it is a finite real number > 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a positive float; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be finite and > 0; got {value}")
    return value


def check_finite_float(value: object, name: str) -> float:
    """Return ``float(value)`` if it is a finite real number, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return value


def check_tensor(
    value: object,
    name: str,
    *,
    ndim: int | Iterable[int] | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    integer: bool = False,
    allow_nan: bool = False,
) -> Tensor:
    """Check that ``value`` is a tensor of the expected rank and kind, without NaNs.

    Args:
        value: What the caller passed.
        name: The argument's name, used in the error message.
        ndim: Allowed number(s) of dimensions, or ``None`` for any.
        min_ndim: Smallest allowed number of dimensions.
        floating: Require a floating-point dtype.
        integer: Require an integer (not bool) dtype.
        allow_nan: Skip the NaN check (floating tensors only are checked).

    Returns:
        ``value``, typed as a tensor.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.dim() not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimensions; got shape {tuple(value.shape)}")
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions; got shape {tuple(value.shape)}"
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype; got {value.dtype}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must have an integer dtype; got {value.dtype}")
    checkable = value.is_floating_point() and value.device.type != "meta"
    if not allow_nan and checkable and bool(torch.isnan(value).any()):
        raise ValueError(f"{name} contains NaN")
    return value


def check_generator(
    generator: object, device: torch.device, name: str = "generator"
) -> torch.Generator | None:
    """Check that ``generator`` is ``None`` or a ``torch.Generator`` on ``device``'s type."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None; got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(
            f"{name} is on {generator.device} but the samples are drawn on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )
    return generator


def model_device(model: nn.Module) -> torch.device | None:
    """Device of ``model``'s first parameter or buffer (``None`` when it has neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def check_same_device(x: Tensor, model: nn.Module, name: str = "x") -> None:
    """Raise a ``ValueError`` naming ``name`` if ``x`` is not on ``model``'s device."""
    device = model_device(model)
    if device is not None and x.device != device:
        raise ValueError(
            f"{name} is on {x.device} but the model is on {device}; move one of them "
            f"(e.g. x.to({str(device)!r}))"
        )


def check_module(value: object, name: str = "model") -> nn.Module:
    """Check that ``value`` is an ``nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(value).__name__}")
    return value
