"""Dataset loaders for the advbayes benchmarks.

Dataset loaders for the advbayes benchmarks: MNIST, FashionMNIST, CIFAR-10 and UCI regression
sets, with checksums, caching and offline use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
