"""How architecture builders record the configuration that rebuilds them (private)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnn_core._checks import as_enum, check_positive_float
from bnn_core.convert import to_bayesian
from bnn_core.enums import SampleMode
from bnn_core.priors import GaussianPrior

CONFIG_ATTR = "bnn_core_config"
"""Attribute holding ``{"architecture": name, "kwargs": {...}}`` on every built model."""

MEMORY_FORMATS = {
    "channels_last": torch.channels_last,
    "contiguous": torch.contiguous_format,
}
"""The layouts a CNN builder accepts for its kernels, by the name recorded in its config."""


FASTEST_MEMORY_FORMAT = {"cpu": "channels_last", "cuda": "channels_last"}
"""The layout ``memory_format="auto"`` picks, by device type (others: ``"contiguous"``).

CPU: ``bench/perf.py``'s ``bnn_core.cnn.channels_last`` section measured channels-last
training, attack and posterior-predictive steps of the CNNs 1.1-1.6x faster than contiguous
ones on this project's 2-core CPU (the deterministic MNIST step 1.0-1.5x). CUDA:
channels-last is the layout cuDNN's tensor-core convolutions run natively (NVIDIA's and
PyTorch's guidance for mixed precision); ``bench/gpu_check.py`` measures both layouts on the
GPU at hand.
"""


def fastest_memory_format(device: torch.device | str | None = None) -> str:
    """The layout ``memory_format="auto"`` resolves to on ``device``.

    Args:
        device: Where the model will run; ``None``: CUDA when available, else the CPU.

    Returns:
        ``"channels_last"`` or ``"contiguous"`` (see :data:`FASTEST_MEMORY_FORMAT`).

    Examples:
        >>> fastest_memory_format("cpu")
        'channels_last'
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return FASTEST_MEMORY_FORMAT.get(torch.device(device).type, "contiguous")


def memory_format_name(memory_format: object) -> str:
    """The recorded name of a kernel layout given as a name or a ``torch.memory_format``.

    ``"auto"`` resolves to :func:`fastest_memory_format` of the default device, so a saved
    model records (and a loaded one gets back) the layout it was built with.
    """
    if memory_format == "auto":
        return fastest_memory_format()
    for name, fmt in MEMORY_FORMATS.items():
        if memory_format == name or memory_format is fmt:
            return name
    raise ValueError(
        "memory_format must be 'auto', 'channels_last', 'contiguous', torch.channels_last or "
        f"torch.contiguous_format; got {memory_format!r}"
    )


def finish(
    model: nn.Module,
    architecture: str,
    kwargs: dict[str, Any],
    *,
    bayesian: bool,
    prior: GaussianPrior | None,
    init_sigma: float,
    sample_mode: SampleMode | str,
    memory_format: str | torch.memory_format | None = None,
) -> nn.Module:
    """Convert ``model`` to Bayesian (if asked), lay out its kernels, stamp its config.

    ``memory_format`` (CNNs only; ``None`` for models without convolutions): the layout of
    every 4-D parameter and buffer, recorded by name so that a loaded model gets it back.
    """
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
    layout = {}
    if memory_format is not None:
        name = memory_format_name(memory_format)
        model = model.to(memory_format=MEMORY_FORMATS[name])
        layout = {"memory_format": name}
    config = {
        "architecture": architecture,
        "kwargs": {
            **kwargs,
            **layout,
            "bayesian": bayesian,
            "prior": None if prior is None else prior.to_dict(),
            "init_sigma": init_sigma,
            "sample_mode": mode.value,
        },
    }
    setattr(model, CONFIG_ATTR, config)
    return model
