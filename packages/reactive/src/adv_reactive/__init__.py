"""Reactive adversarial defence (SPEC §5).

Online/offline reactive posterior predictives computed as a streaming, log-space weighted
aggregation (PyTorch and a fused Triton kernel), and randomized smoothing
(PREDICT/CERTIFY of Cohen et al. 2019).

Example:
    >>> import torch
    >>> from adv_reactive import reactive_aggregate
    >>> probs = torch.softmax(torch.randn(10, 50, 3), dim=-1)  # (M, N, C)
    >>> reactive_aggregate(torch.rand(4, 8), torch.rand(50, 8), probs, sigma=0.5).output.shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from adv_reactive import smoothing
from adv_reactive._triton import TRITON_AVAILABLE
from adv_reactive.binomial import betainc, binomial_test, clopper_pearson_lower
from adv_reactive.ops import ReactiveAggregate, reactive_aggregate, squared_norms
from adv_reactive.options import AggregationMode, Backend
from adv_reactive.smoothing import ABSTAIN, Certificate, certified_accuracy, certify

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "TRITON_AVAILABLE",
    "AggregationMode",
    "Backend",
    "Certificate",
    "ReactiveAggregate",
    "__version__",
    "betainc",
    "binomial_test",
    "certified_accuracy",
    "certify",
    "clopper_pearson_lower",
    "reactive_aggregate",
    "smoothing",
    "squared_norms",
]
