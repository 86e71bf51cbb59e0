"""The paper's channels as ready constructors (paper §5 and SM-5; docs/theory.md).

* :func:`os_channel` -- **OS**: one-step ``nll`` attack plus noise ``σ``;
* :func:`os50_channel` -- **OS50**: ½ identity(``σ₀``) + ½ OS;
* :func:`mix_channel` -- **MIX**: classification 0.4 identity(``σ₀``) + 0.2 one-step
  ``nll`` + 0.2 ``cw`` + 0.2 ``entropy``; regression 0.4 identity + 0.6 one-step ``mse``;
* :func:`nn_channel` -- **NN**: the learned generator (conv for images, dense for tables);
* :func:`nn50_channel` -- **NN50**: ½ identity(``σ₀``) + ½ NN;
* :func:`amo_channel` -- **AMO**: the amortised adversary (a generator that also reads the
  model's input gradient; docs/theory.md);
* :func:`amo50_channel` -- **AMO50**: ½ identity(``σ₀``) + ½ AMO;
* :func:`at_channel` -- the deterministic one-step point mass (AT's attack);
* :func:`at50_channel` -- **AT**: ½ clean + ½ deterministic one-step;
* :func:`pgd_at_channel` -- the deterministic multi-step PGD channel (random start);
* :func:`pgd_at50_channel` -- **AT-PGD**: ½ clean + ½ PGD.

Mixtures are stratified per minibatch by default (exact proportions, as in the paper).
Budgets and noise levels are required arguments: they depend on the data's scale. On MNIST
in ``[0, 1]`` with L2 budgets, ``eps`` around 2–3 and ``sigma`` around 0.1–0.3 per pixel
work well. ``clamp="auto"`` means ``(0.0, 1.0)`` for classification/images and ``None``
for regression/tabular data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from torch import nn

from adv_attacks import Norm, Objective
from adv_channels._checks import check_scalar, coerce_option
from adv_channels.amortised import (
    AmortisedChannel,
    ConvAmortisedGenerator,
    DenseAmortisedGenerator,
)
from adv_channels.enums import Task
from adv_channels.generators import ConvGenerator, DenseGenerator
from adv_channels.learned import LearnedChannel
from adv_channels.mixture import MixtureChannel
from adv_channels.noise import IdentityChannel
from adv_channels.one_step import OneStepChannel
from adv_channels.pgd import PGDChannel

__all__ = [
    "amo50_channel",
    "amo_channel",
    "at50_channel",
    "at_channel",
    "mix_channel",
    "nn50_channel",
    "nn_channel",
    "os50_channel",
    "os_channel",
    "pgd_at50_channel",
    "pgd_at_channel",
]

ClampOption = tuple[float, float] | None | Literal["auto"]
IMAGE_RANGE = (0.0, 1.0)


def _half_clean(channel, sigma0: float, stratified: bool) -> MixtureChannel:
    return MixtureChannel([IdentityChannel(sigma0), channel], [0.5, 0.5], stratified=stratified)


def _generator_for(
    input_shape: Sequence[int],
    image: Callable[[int, tuple[int, int]], nn.Module],
    tabular: Callable[[int], nn.Module],
) -> tuple[nn.Module, tuple[float, float] | None]:
    """The generator for ``input_shape`` and the valid range ``"auto"`` stands for there.

    ``image(C, (H, W))`` for ``(C, H, W)``, ``tabular(D)`` for ``(D,)``.
    """
    shape = tuple(input_shape)
    if len(shape) == 3:
        return image(shape[0], (shape[1], shape[2])), IMAGE_RANGE
    if len(shape) == 1:
        return tabular(shape[0]), None
    raise ValueError(f"input_shape must be (C, H, W) (images) or (D,) (tabular data); got {shape}")


def os_channel(
    *,
    eps: float,
    sigma: float,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
    differentiable: bool = False,
    random_start: bool = False,
) -> OneStepChannel:
    """**OS**: the one-step channel ``x' ~ N(clip(x + ε g/‖g‖), σ² I)``.

    Args:
        eps: Step ``ε >= 0`` (L2 by default; MNIST: about 2–3).
        sigma: Noise ``σ >= 0`` (MNIST: about 0.1–0.3).
        objective: Attack objective; default ``"nll"``.
        norm: ``"l2"`` or ``"linf"``.
        clamp: Valid input range of the attack point; default ``(0, 1)``.
        differentiable: Differentiate through the attack direction.
        random_start: Step ``α = 1.25 ε`` from a uniform start in the ball, projected
            (:class:`~adv_channels.OneStepChannel`); default ``False``.

    Examples:
        >>> os_channel(eps=2.0, sigma=0.2).has_density
        True
    """
    return OneStepChannel(
        eps=eps,
        sigma=sigma,
        objective=objective,
        norm=norm,
        clamp=clamp,
        differentiable=differentiable,
        random_start=random_start,
    )


def os50_channel(
    *,
    eps: float,
    sigma: float,
    sigma0: float = 0.0,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
    stratified: bool = True,
    random_start: bool = False,
) -> MixtureChannel:
    """**OS50**: ½ identity(``σ₀``, default clean) + ½ OS, stratified per minibatch.

    ``random_start``: the one-step part starts uniformly in the ball (see :func:`os_channel`).

    Examples:
        >>> os50_channel(eps=2.0, sigma=0.2).weights
        (0.5, 0.5)
    """
    one_step = os_channel(
        eps=eps,
        sigma=sigma,
        objective=objective,
        norm=norm,
        clamp=clamp,
        random_start=random_start,
    )
    return _half_clean(one_step, sigma0, stratified)


def mix_channel(
    task: Task | str = Task.CLASSIFICATION,
    *,
    eps: float,
    sigma: float,
    sigma0: float | None = None,
    norm: Norm | str = Norm.L2,
    clamp: ClampOption = "auto",
    stratified: bool = True,
    random_start: bool = False,
) -> MixtureChannel:
    """**MIX**: the paper's mixture of identity and one-step channels (paper SM-5.3).

    Classification: ``0.4 N(x, σ₀²) + 0.2 OS(nll) + 0.2 OS(cw) + 0.2 OS(entropy, +1)``;
    regression: ``0.4 N(x, σ₀²) + 0.6 OS(mse)``; ``σ`` fixed in the one-step parts, the
    batch stratified in these proportions.

    Args:
        task: ``"classification"`` (default) or ``"regression"``.
        eps: One-step budget ``ε >= 0``.
        sigma: Noise ``σ >= 0`` of the one-step components.
        sigma0: Gaussian augmentation of the identity component (the paper's "clean
            Gaussian augmentation"); default ``None``: the same as ``sigma``.
        norm: ``"l2"`` or ``"linf"``.
        clamp: Valid input range of the attack points; ``"auto"``: ``(0, 1)`` for
            classification, ``None`` for regression.
        stratified: Exact proportions per minibatch (default) or per-example draws.
        random_start: The one-step components step ``α = 1.25 ε`` from a uniform start in
            the ball (:class:`~adv_channels.OneStepChannel`); default ``False``.

    Examples:
        >>> mix = mix_channel(eps=2.0, sigma=0.2)
        >>> mix.weights, [c.objective.value for c in mix.components[1:]]
        ((0.4, 0.2, 0.2, 0.2), ['nll', 'cw', 'entropy'])
    """
    task = coerce_option(Task, task, "task")
    sigma = check_scalar(sigma, "sigma")
    sigma0 = sigma if sigma0 is None else check_scalar(sigma0, "sigma0")
    if clamp == "auto":
        clamp = IMAGE_RANGE if task is Task.CLASSIFICATION else None
    objectives: Sequence[str]
    if task is Task.CLASSIFICATION:
        objectives, weights = ("nll", "cw", "entropy"), [0.4, 0.2, 0.2, 0.2]
    else:
        objectives, weights = ("mse",), [0.4, 0.6]
    one_steps = [
        OneStepChannel(
            eps=eps,
            sigma=sigma,
            objective=o,
            norm=norm,
            clamp=clamp,
            entropy_sign=1,
            random_start=random_start,
        )
        for o in objectives
    ]
    return MixtureChannel([IdentityChannel(sigma0), *one_steps], weights, stratified=stratified)


def nn_channel(
    input_shape: Sequence[int],
    *,
    eps: float,
    sigma_max: float,
    num_classes: int | None,
    clamp: ClampOption = "auto",
    lr: float = 1e-3,
) -> LearnedChannel:
    """**NN**: the learned channel with the paper's generator for this input shape.

    Args:
        input_shape: ``(C, H, W)`` for images (:class:`~adv_channels.ConvGenerator`) or
            ``(D,)`` for tabular data (:class:`~adv_channels.DenseGenerator`).
        eps: Budget of the mean perturbation, ``‖m‖₂ < ε``.
        sigma_max: Bound of the per-element noise scale.
        num_classes: Classes of the label (one-hot), or ``None`` for a real (regression)
            label.
        clamp: Valid input range of the mean point; ``"auto"``: ``(0, 1)`` for images,
            ``None`` for tabular data.
        lr: Adam learning rate of the adversary step.

    Examples:
        >>> ch = nn_channel((1, 28, 28), eps=2.0, sigma_max=0.3, num_classes=10)
        >>> type(ch.network).__name__, ch.clamp
        ('ConvGenerator', (0.0, 1.0))
    """
    network, auto = _generator_for(
        input_shape,
        lambda c, hw: ConvGenerator(c, hw, num_classes=num_classes),
        lambda d: DenseGenerator(d, num_classes=num_classes),
    )
    return LearnedChannel(
        network,
        eps=eps,
        sigma_max=sigma_max,
        clamp=auto if clamp == "auto" else clamp,
        lr=lr,
    )


def nn50_channel(
    input_shape: Sequence[int],
    *,
    eps: float,
    sigma_max: float,
    num_classes: int | None,
    sigma0: float = 0.0,
    clamp: ClampOption = "auto",
    lr: float = 1e-3,
    stratified: bool = True,
) -> MixtureChannel:
    """**NN50**: ½ identity(``σ₀``, default clean) + ½ NN, stratified per minibatch.

    Its :meth:`~adv_channels.MixtureChannel.adversary_step` trains the learned component on
    the whole batch.

    Examples:
        >>> ch = nn50_channel((8,), eps=1.0, sigma_max=0.2, num_classes=None)
        >>> ch.learnable, ch.weights
        (True, (0.5, 0.5))
    """
    learned = nn_channel(
        input_shape, eps=eps, sigma_max=sigma_max, num_classes=num_classes, clamp=clamp, lr=lr
    )
    return _half_clean(learned, sigma0, stratified)


def amo_channel(
    input_shape: Sequence[int],
    *,
    eps: float,
    sigma_max: float,
    num_classes: int | None,
    clamp: ClampOption = "auto",
    lr: float = 1e-3,
    adversary_fraction: float = 1.0,
    update: Literal["alternating", "joint"] = "alternating",
    stride: int = 1,
) -> AmortisedChannel:
    """**AMO**: the amortised adversary for this input shape (paper §7's future work).

    :class:`~adv_channels.ConvAmortisedGenerator` for images ``(C, H, W)``,
    :class:`~adv_channels.DenseAmortisedGenerator` for tabular data ``(D,)``; arguments as
    :func:`nn_channel`; ``adversary_fraction`` the share of each batch the adversary step
    trains on and ``update`` how the generator is trained (``"alternating"``, the paper's
    GAN step, or ``"joint"``, from the training step's own backward pass:
    :class:`~adv_channels.AmortisedChannel`); ``stride`` the resolution of the image
    generator's refinement (``1``, ``2`` or ``4``: full, half or a quarter,
    :class:`~adv_channels.ConvAmortisedGenerator`; ignored for tabular data).

    Examples:
        >>> ch = amo_channel((1, 28, 28), eps=2.0, sigma_max=0.3, num_classes=10)
        >>> type(ch.network).__name__, ch.needs_target
        ('ConvAmortisedGenerator', True)
    """
    network, auto = _generator_for(
        input_shape,
        lambda c, hw: ConvAmortisedGenerator(c, hw, num_classes=num_classes, stride=stride),
        lambda d: DenseAmortisedGenerator(d, num_classes=num_classes),
    )
    return AmortisedChannel(
        network,
        eps=eps,
        sigma_max=sigma_max,
        clamp=auto if clamp == "auto" else clamp,
        lr=lr,
        adversary_fraction=adversary_fraction,
        update=update,
    )


def amo50_channel(
    input_shape: Sequence[int],
    *,
    eps: float,
    sigma_max: float,
    num_classes: int | None,
    sigma0: float = 0.0,
    clamp: ClampOption = "auto",
    lr: float = 1e-3,
    stratified: bool = True,
    update: Literal["alternating", "joint"] = "alternating",
    stride: int = 1,
) -> MixtureChannel:
    """**AMO50**: ½ identity(``σ₀``, default clean) + ½ AMO, stratified per minibatch.

    The alternating adversary step trains on half of each batch (``adversary_fraction=0.5``),
    the share the channel perturbs: the generator sees as many examples per step as it
    attacks (the joint update trains on exactly the perturbed half). ``update`` and
    ``stride`` as :func:`amo_channel`.

    Examples:
        >>> ch = amo50_channel((8,), eps=1.0, sigma_max=0.2, num_classes=None)
        >>> ch.learnable, ch.needs_target, ch.weights
        (True, True, (0.5, 0.5))
    """
    amortised = amo_channel(
        input_shape,
        eps=eps,
        sigma_max=sigma_max,
        num_classes=num_classes,
        clamp=clamp,
        lr=lr,
        adversary_fraction=0.5,
        update=update,
        stride=stride,
    )
    return _half_clean(amortised, sigma0, stratified)


def at_channel(
    *,
    eps: float,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
) -> OneStepChannel:
    """The deterministic one-step channel ``x' = clip(x + ε g/‖g‖)`` (a point mass).

    The attack of the paper's AT baseline (paper, Section 4: the MAP limit with a deterministic
    channel); no noise, no density.

    Examples:
        >>> ch = at_channel(eps=2.0)
        >>> ch.sigma, ch.has_density
        (0.0, False)
    """
    return OneStepChannel(eps=eps, sigma=0.0, objective=objective, norm=norm, clamp=clamp)


def at50_channel(
    *,
    eps: float,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
    stratified: bool = True,
) -> MixtureChannel:
    """**AT**: minibatches of ½ clean + ½ deterministic one-step attacks (paper §6).

    Examples:
        >>> at50_channel(eps=2.0).has_density
        False
    """
    one_step = at_channel(eps=eps, objective=objective, norm=norm, clamp=clamp)
    return _half_clean(one_step, 0.0, stratified)


def pgd_at_channel(
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
) -> PGDChannel:
    """The deterministic multi-step PGD channel of AT-PGD (paper SM, multi-step AT).

    ``x' = PGD_T(x)``, no noise (random start on by default, as in Madry et al.); a
    simulator. ``steps`` defaults to 10 for training (the evaluation's 50 steps are the evaluation
    attack), with ``η = 2.5 ε / T``.

    Examples:
        >>> pgd_at_channel(eps=2.0).attack.steps
        10
    """
    return PGDChannel(
        eps=eps,
        sigma=0.0,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        objective=objective,
        norm=norm,
        clamp=clamp,
    )


def pgd_at50_channel(
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    objective: Objective | str = Objective.NLL,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None = IMAGE_RANGE,
    stratified: bool = True,
) -> MixtureChannel:
    """½ clean + ½ deterministic PGD (AT trained with multi-step PGD), stratified.

    Examples:
        >>> pgd_at50_channel(eps=2.0).needs_target
        True
    """
    pgd = pgd_at_channel(
        eps=eps,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        objective=objective,
        norm=norm,
        clamp=clamp,
    )
    return _half_clean(pgd, 0.0, stratified)
