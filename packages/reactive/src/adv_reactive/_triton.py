"""Import shim for Triton: without Triton the decorators are no-ops and the flags are false.

Modelled on Fast-LLM's ``fast_llm/functional/triton/__init__.py``. Triton decides between
compiling and interpreting a kernel when ``@triton.jit`` runs, that is when
:mod:`adv_reactive._kernels` is first imported: set ``TRITON_INTERPRET=1`` before that to run
the kernels on the CPU (slowly) through Triton's interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "TRITON_AVAILABLE",
    "interpreting",
    "kernel_can_run",
    "tl",
    "triton",
    "triton_autotune",
    "triton_config",
    "triton_jit",
]

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where Triton is missing
    triton = None
    tl = None

TRITON_AVAILABLE: bool = triton is not None
"""Whether Triton could be imported."""


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET=1``, read as Triton reads it)."""
    return TRITON_AVAILABLE and bool(triton.knobs.runtime.interpret)


def kernel_can_run(device: torch.device) -> bool:
    """The one gate: can the Triton kernels run on tensors living on ``device``?

    True on CUDA devices when Triton is importable, and on any device under the interpreter.
    """
    if not TRITON_AVAILABLE:
        return False
    return interpreting() or device.type == "cuda"


def _identity_decorator(*_args: Any, **_kwargs: Any) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        return fn

    return wrap


if TRITON_AVAILABLE:
    triton_jit = triton.jit
    triton_autotune = triton.autotune
    triton_config = triton.Config
else:  # pragma: no cover
    triton_jit = _identity_decorator()
    triton_autotune = _identity_decorator

    def triton_config(*_args: Any, **_kwargs: Any) -> None:
        """Stand-in for ``triton.Config`` where Triton is missing."""
        return None
