"""Reactive adversarial defence (paper, Section 3.2).

Online/offline reactive posterior predictives computed as a streaming, log-space weighted
aggregation (PyTorch and a fused Triton kernel), the fit/predict object
:class:`ReactivePPD` (classification and regression, identity and one-step channels; any
simulator channel through likelihood-free ABC weights, :class:`ABC`), and randomized
smoothing (PREDICT/CERTIFY of Cohen et al. 2019).

Examples:
    >>> import torch
    >>> from adv_reactive import reactive_aggregate
    >>> probs = torch.softmax(torch.randn(10, 50, 3), dim=-1)  # (M, N, C)
    >>> reactive_aggregate(torch.rand(4, 8), torch.rand(50, 8), probs, sigma=0.5).output.shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from adv_reactive import smoothing
from adv_reactive._triton import TRITON_AVAILABLE
from adv_reactive.abc import (
    ABC,
    ABCKernel,
    BandwidthRule,
    Simulator,
    nearest_neighbour_bandwidth,
    nearest_simulations,
)
from adv_reactive.binomial import betainc, binomial_test, clopper_pearson_lower
from adv_reactive.channels import channel_sigma
from adv_reactive.denoiser import DenoisingPPD, GaussianDenoiser
from adv_reactive.draw_predictive import DrawPredictive
from adv_reactive.gaussian_mixture import reactive_gaussian_log_prob
from adv_reactive.offset_keys import OffsetKeys
from adv_reactive.ops import ReactiveAggregate, reactive_aggregate, squared_norms
from adv_reactive.options import AggregationMode, Backend
from adv_reactive.prediction import PurifiedInputs, ReactivePrediction
from adv_reactive.reactive_ppd import ReactivePPD
from adv_reactive.smoothing import ABSTAIN, Certificate, certified_accuracy, certify

__version__ = "0.1.0"

__all__ = [
    "ABC",
    "ABSTAIN",
    "ABCKernel",
    "BandwidthRule",
    "Simulator",
    "TRITON_AVAILABLE",
    "AggregationMode",
    "Backend",
    "Certificate",
    "DenoisingPPD",
    "DrawPredictive",
    "GaussianDenoiser",
    "OffsetKeys",
    "PurifiedInputs",
    "ReactiveAggregate",
    "ReactivePPD",
    "ReactivePrediction",
    "__version__",
    "betainc",
    "binomial_test",
    "certified_accuracy",
    "certify",
    "channel_sigma",
    "clopper_pearson_lower",
    "nearest_neighbour_bandwidth",
    "nearest_simulations",
    "reactive_aggregate",
    "reactive_gaussian_log_prob",
    "smoothing",
    "squared_norms",
]
