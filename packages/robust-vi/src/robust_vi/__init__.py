"""Robust variational inference.

Robust variational inference: surrogate, IWAE and ratio-of-means ELBOs, AT/TRADES/ALP limits,
and a trainer.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
