"""Reactive adversarial defence.

Reactive adversarial defence: online/offline reactive posterior predictives, randomized
smoothing, and a fused Triton log-weight kernel.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
