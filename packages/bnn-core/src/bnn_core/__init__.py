"""Mean-field Bayesian neural networks.

Mean-field Bayesian neural network layers, KL divergence, vectorised posterior sampling,
posterior predictive and metrics.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
