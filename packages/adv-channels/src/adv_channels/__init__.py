"""Stochastic adversarial channels p(x' | x, beta).

Stochastic adversarial channels p(x' | x, beta): Gaussian, one-step, PGD, mixtures and learned
generators, for any torch.nn.Module.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
