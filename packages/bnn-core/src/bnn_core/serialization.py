"""Saving and loading a trained posterior: its state dict plus what rebuilds the model."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from bnn_core._checks import check_module
from bnn_core._version import __version__
from bnn_core.layers.base import bayesian_modules
from bnn_core.models import ARCHITECTURES
from bnn_core.models._config import CONFIG_ATTR
from bnn_core.priors import GaussianPrior

__all__ = ["load_model", "save_model"]

_FORMAT = "bnn_core.model"
_FORMAT_VERSION = 1


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save ``model``'s posterior (state dict) and the configuration that rebuilds it.

    Models from :func:`~bnn_core.mnist_cnn`, :func:`~bnn_core.regression_mlp`,
    :func:`~bnn_core.cifar_cnn` and :func:`~bnn_core.resnet18` record their configuration,
    so :func:`load_model` rebuilds them from the file alone; any other module is saved
    too, and is loaded into a freshly built module of the same architecture
    (``load_model(path, model=...)``). Every Bayesian layer's prior and sampling mode are
    saved with it. The file is a ``torch.save`` archive readable with
    ``weights_only=True``.

    Args:
        model: The model (on any device; tensors are saved as they are).
        path: Destination file.

    Examples:
        >>> save_model(model, "bl.pt")
        >>> same = load_model("bl.pt")
    """
    check_module(model)
    config = getattr(model, CONFIG_ATTR, None)
    layers = {
        name: {"prior": layer.prior.to_dict(), "sample_mode": layer.sample_mode.value}
        for name, layer in bayesian_modules(model)
    }
    payload: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "bnn_core_version": __version__,
        "config": config,
        "layers": layers,
        "training": model.training,
        # sub-modules whose train/eval flag differs from the model's (e.g. a frozen
        # batch-norm left in eval mode inside a training model)
        "module_training": {
            name: m.training for name, m in model.named_modules() if m.training != model.training
        },
        "state_dict": model.state_dict(),
    }
    torch.save(payload, os.fspath(path))


def _build(config: object) -> nn.Module:
    if not isinstance(config, dict) or "architecture" not in config or "kwargs" not in config:
        raise ValueError("the file's model configuration is malformed")
    name = config["architecture"]
    if name not in ARCHITECTURES:
        raise ValueError(
            f"the file names architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    kwargs = dict(config["kwargs"])
    if kwargs.get("prior") is not None:
        kwargs["prior"] = GaussianPrior(**kwargs["prior"])
    return ARCHITECTURES[name](**kwargs)


def load_model(
    path: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    map_location: torch.device | str | None = "cpu",
) -> nn.Module:
    """Load a model saved by :func:`save_model`.

    Args:
        path: The file.
        model: A freshly built module of the saved architecture to load into; required
            when the file holds no configuration (a model not built by a bnn_core
            builder), optional otherwise.
        map_location: Where to put a rebuilt model (a given ``model`` stays on its
            device). Default ``"cpu"``.

    Returns:
        The model with the saved posterior, priors, sampling modes and train/eval flags
        (the model's and any sub-module's that differs); a rebuilt model has the saved
        floating-point dtype.

    Raises:
        ValueError: Not a bnn_core model file, unknown architecture, or a state dict that
            does not fit ``model``.
    """
    payload = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"path {os.fspath(path)!r} is not a model saved by bnn_core.save_model")
    if payload.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"path holds format version {payload.get('format_version')}; this bnn_core "
            f"reads version {_FORMAT_VERSION}"
        )
    rebuilt = model is None
    if model is None:
        if payload["config"] is None:
            raise ValueError(
                "the file holds no architecture configuration (the model was not built by "
                "a bnn_core builder): pass model=<a freshly built module of that architecture>"
            )
        model = _build(payload["config"])
        dtype = next(
            (t.dtype for t in payload["state_dict"].values() if t.is_floating_point()), None
        )
        if dtype is not None:  # rebuilt in the saved dtype, not the builder's float32
            model.to(dtype)
    else:
        check_module(model)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"the saved state dict does not fit model: {err}") from None
    layers = dict(bayesian_modules(model))
    saved = payload["layers"]
    if set(saved) != set(layers):
        raise ValueError("the saved Bayesian layers do not match the model's")
    for name, info in saved.items():
        layers[name].prior = GaussianPrior(**info["prior"])
        layers[name].sample_mode = info["sample_mode"]
    if payload["config"] is not None:
        setattr(model, CONFIG_ATTR, payload["config"])
    if rebuilt and map_location is not None:
        model.to(map_location)
    model.train(bool(payload.get("training", True)))
    modules = dict(model.named_modules())
    for name, training in payload.get("module_training", {}).items():  # absent in old files
        if name in modules:
            modules[name].training = bool(training)
    return model
