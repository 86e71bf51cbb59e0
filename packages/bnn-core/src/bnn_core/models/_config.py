"""How architecture builders record the configuration that rebuilds them (private)."""

from __future__ import annotations

from typing import Any

from torch import nn

from bnn_core._checks import as_enum, check_positive_float
from bnn_core.convert import to_bayesian
from bnn_core.enums import SampleMode
from bnn_core.priors import GaussianPrior

CONFIG_ATTR = "bnn_core_config"
"""Attribute holding ``{"architecture": name, "kwargs": {...}}`` on every built model."""


def finish(
    model: nn.Module,
    architecture: str,
    kwargs: dict[str, Any],
    *,
    bayesian: bool,
    prior: GaussianPrior | None,
    init_sigma: float,
    sample_mode: SampleMode | str,
) -> nn.Module:
    """Convert ``model`` to Bayesian (if asked) and stamp its rebuild configuration."""
    if not isinstance(bayesian, bool):
        raise TypeError(f"bayesian must be a bool; got {type(bayesian).__name__}")
    if prior is not None and not isinstance(prior, GaussianPrior):
        raise TypeError(f"prior must be a GaussianPrior or None; got {type(prior).__name__}")
    init_sigma = check_positive_float(init_sigma, "init_sigma")
    mode = as_enum(SampleMode, sample_mode, "sample_mode")
    if bayesian:
        model = to_bayesian(
            model, prior=prior, init_sigma=init_sigma, sample_mode=mode, inplace=True
        )
    config = {
        "architecture": architecture,
        "kwargs": {
            **kwargs,
            "bayesian": bayesian,
            "prior": None if prior is None else prior.to_dict(),
            "init_sigma": init_sigma,
            "sample_mode": mode.value,
        },
    }
    setattr(model, CONFIG_ATTR, config)
    return model
