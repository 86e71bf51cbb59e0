"""The models the reproduction scripts train and compare: one registry entry per model.

:data:`MNIST_MODELS` declares the paper's MNIST models (Tables 1, 2, 7; Figure 5; Table 5
uses MIX with other bounds) in table order: each entry names its recipe as a function of the
run's settings (any object with the training fields of ``bench/mnist.py``'s profile:
``train_eps``, ``sigma``, ``sigma0``, ``adversary_lr``, ``at_pgd_steps``, ...), whether it
is a point estimate, and, for a reactive defence, the purification mode it applies to the
BL model. Adding a model to ``bench/mnist.py`` and ``bench/selective.py`` is one entry, e.g.::

    MNIST_MODELS["TRADES"] = ModelDecl(lambda s: recipe("TRADES", eps=s.train_eps))

:func:`mnist_train_specs` turns entries into :class:`~benchlib.experiment.TrainSpec` s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchlib.experiment import TrainSpec, training_settings
from bnn_core import mnist_cnn
from robust_vi import Recipe, recipe

MNIST_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class ModelDecl:
    """One model of a comparison.

    Attributes:
        recipe: ``recipe(settings) -> Recipe`` for a trained (proactive) model; ``None`` for a
            reactive defence, which wraps the trained BL model.
        point_estimate: A deterministic network (AT, AT-PGD) instead of a BNN.
        reactive_mode: ``"online"`` (eq. 4) or ``"offline"`` (eq. 5) for a reactive defence.
        reactive_channel: The channel a reactive defence purifies: ``"one-step"`` (the
            one-step channel's density, the paper's onPure/offPure) or ``"pgd"`` (a multi-step
            PGD channel known only as a simulator: the ABC weights of docs/theory.md,
            "Likelihood-free reactive defence").
    """

    recipe: Callable[[Any], Recipe] | None
    point_estimate: bool = False
    reactive_mode: str | None = None
    reactive_channel: str = "one-step"

    @property
    def reactive(self) -> bool:
        """Whether this is a test-time (reactive) defence rather than a trained model."""
        return self.reactive_mode is not None


def _learned(name: str, **options: Any) -> ModelDecl:
    """A model trained against a learned channel (NN, NN50) or amortised adversary (AMO);
    ``options``: more :func:`robust_vi.recipe` arguments (the amortised variants')."""
    return ModelDecl(
        lambda s: recipe(
            name,
            eps=s.train_eps,
            sigma=s.sigma,
            input_shape=MNIST_SHAPE,
            adversary_lr=s.adversary_lr,
            **options,
        )
    )


MNIST_MODELS: dict[str, ModelDecl] = {
    "BL": ModelDecl(lambda s: recipe("BL")),
    "OS": ModelDecl(lambda s: recipe("OS", eps=s.train_eps, sigma=s.sigma)),
    "OS50": ModelDecl(lambda s: recipe("OS50", eps=s.train_eps, sigma=s.sigma)),
    "MIX": ModelDecl(lambda s: recipe("MIX", eps=s.train_eps, sigma=s.sigma, sigma0=s.sigma0)),
    "NN": _learned("NN"),
    "NN50": _learned("NN50"),
    "onPure": ModelDecl(None, reactive_mode="online"),
    "offPure": ModelDecl(None, reactive_mode="offline"),
    "onPure-PGD": ModelDecl(None, reactive_mode="online", reactive_channel="pgd"),
    "offPure-PGD": ModelDecl(None, reactive_mode="offline", reactive_channel="pgd"),
    "AT": ModelDecl(lambda s: recipe("AT", eps=s.train_eps), point_estimate=True),
    "AT-PGD": ModelDecl(
        lambda s: recipe("AT-PGD", eps=s.train_eps, pgd_steps=s.at_pgd_steps),
        point_estimate=True,
    ),
}
"""The paper's MNIST models in its table order (AT-PGD: the appendix's multi-step AT;
onPure-PGD/offPure-PGD: the reactive defences with a PGD channel as ABC simulator, beyond the
paper)."""


CHANNEL_MODELS: dict[str, ModelDecl] = {
    **{k: v for k, v in MNIST_MODELS.items() if not v.reactive},
    "OS50-RS": ModelDecl(
        lambda s: recipe("OS50", eps=s.train_eps, sigma=s.sigma, random_start=True)
    ),
    "MIX-RS": ModelDecl(
        lambda s: recipe("MIX", eps=s.train_eps, sigma=s.sigma, sigma0=s.sigma0, random_start=True)
    ),
    "AMO": _learned("AMO"),
    "AMO50": _learned("AMO50"),
    "AMO-J": _learned("AMO", adversary_update="joint", generator_stride=4),
    "AMO50-J": _learned("AMO50", adversary_update="joint", generator_stride=4),
    "AMO-J2": _learned("AMO", adversary_update="joint", generator_stride=2),
    "AMO50-J2": _learned("AMO50", adversary_update="joint", generator_stride=2),
}
"""The MNIST models of the channels study (``bench/channels.py``): the trained models of
:data:`MNIST_MODELS`, the random-start one-step variants OS50-RS and MIX-RS, and the amortised
adversary AMO/AMO50 and its one-pass variants AMO-J/AMO50-J (the generator trained jointly
from the model step's backward pass, its refinement on a quarter-resolution grid; AMO-J2 and
AMO50-J2 with the half-resolution refinement, outside the default study; docs/theory.md)."""


def proactive(registry: dict[str, ModelDecl]) -> tuple[str, ...]:
    """The trained models of ``registry``, in order."""
    return tuple(k for k, v in registry.items() if not v.reactive)


def reactive(registry: dict[str, ModelDecl]) -> tuple[str, ...]:
    """The reactive defences of ``registry``, in order."""
    return tuple(k for k, v in registry.items() if v.reactive)


def mnist_train_specs(
    settings: Any,
    names: Sequence[str],
    *,
    recipes: dict[str, Recipe] | None = None,
    registry: dict[str, ModelDecl] | None = None,
) -> list[TrainSpec]:
    """The training specifications of the proactive MNIST models ``names``.

    Args:
        settings: The run's training settings (``epochs``, ``lr``, ``lr_decay``,
            ``batch_size``, ``seed`` and what the recipes read).
        names: Keys of ``registry`` (trained ones).
        recipes: Recipes to use instead of the registry's, by name (the bounds study's MIX
            variants).
        registry: Where the models are declared (default :data:`MNIST_MODELS`;
            :data:`CHANNEL_MODELS` for the channels study).
    """
    registry = MNIST_MODELS if registry is None else registry
    common = training_settings(settings)
    specs = []
    for name in names:
        decl = registry.get(name)
        if recipes is not None and name in recipes:
            fit = recipes[name]
        elif decl is not None and decl.recipe is not None:
            fit = decl.recipe(settings)
        else:
            raise ValueError(f"no recipe for model {name!r}")
        bayesian = not (decl is not None and decl.point_estimate)
        specs.append(
            TrainSpec(
                name=name,
                build=lambda bayesian=bayesian: mnist_cnn(bayesian=bayesian),
                recipe=fit,
                **common,
            )
        )
    return specs
