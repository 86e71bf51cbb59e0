"""White-box adversarial attacks.

White-box adversarial attacks (one-step, PGD L2/Linf, PGD+, CW, entropy) on any predictive,
Bayesian neural networks included.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
