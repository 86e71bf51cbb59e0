"""One-line recipes for the paper's models (paper, Section 5): objective + channel, ready to train.

| recipe | objective | channel (:mod:`adv_channels`) |
|---|---|---|
| ``BL`` | surrogate ELBO (= the plain ELBO) | identity (``σ₀``, default clean) |
| ``OS`` | surrogate ELBO | one-step ``N(x + ε g/‖g‖, σ²)`` |
| ``OS50`` | surrogate ELBO | ½ identity + ½ one-step |
| ``MIX`` | surrogate ELBO | 0.4 identity + 0.2 each one-step nll/cw/entropy (regr.: 0.6 mse) |
| ``NN`` | surrogate ELBO | learned generator (GAN-style) |
| ``NN50`` | surrogate ELBO | ½ identity + ½ learned |
| ``AMO`` | surrogate ELBO | amortised adversary (learned, reads the input gradient) |
| ``AMO50`` | surrogate ELBO | ½ identity + ½ amortised adversary |
| ``AT`` | adversarial training (point estimate) | ½ clean + ½ deterministic one-step |
| ``AT-PGD`` | adversarial training (point estimate) | ½ clean + ½ deterministic PGD |
| ``TRADES`` | CE(clean) + λ KL(p(·|x) ‖ p(·|x*)) (point estimate) | identity |
| ``ALP`` | AT loss + λ ‖z(x) − z(x*)‖² (point estimate) | ½ clean + ½ one-step; ``x*`` one-step |
| ``GIBBS`` | robust Gibbs posterior | deterministic PGD |

``OS``, ``OS50`` and ``MIX`` take ``random_start=True``: their one-step components then step
``α = 1.25 ε`` from a uniform start in the ball (Wong et al. 2020; docs/theory.md).
The Bayesian recipes (``BL`` … ``AMO50``) take ``bound="surrogate"`` (default, the paper's),
``"iwae"`` or ``"ratio_of_means"`` with ``K`` channel draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from adv_attacks import Norm
from adv_channels import (
    Channel,
    IdentityChannel,
    amo50_channel,
    amo_channel,
    at50_channel,
    at_channel,
    mix_channel,
    nn50_channel,
    nn_channel,
    os50_channel,
    os_channel,
    pgd_at50_channel,
    pgd_at_channel,
)
from bnn_core import GaussianLikelihood, Task
from robust_vi._checks import as_enum, check_float, check_positive_int
from robust_vi.adversarial_training import AdversarialTraining
from robust_vi.generalised import GeneralisedELBO
from robust_vi.gibbs import RobustGibbs
from robust_vi.iwae import IWAEBound
from robust_vi.objective import Objective
from robust_vi.penalties import ALPPenalty, TradesPenalty
from robust_vi.ratio_of_means import RatioOfMeans
from robust_vi.surrogate import SurrogateELBO

__all__ = [
    "DEFAULT_SIGMA",
    "DEFAULT_WEIGHTS",
    "Bound",
    "Recipe",
    "RecipeName",
    "recipe",
]

DEFAULT_SIGMA = 0.2
"""Default channel noise ``σ`` (per input element; the learned channels' ``σ_max``)."""

DEFAULT_WEIGHTS = {"TRADES": 1.0, "ALP": 0.5}
"""Default penalty weights ``λ``: TRADES' reference MNIST ``β``, ALP's (Kannan et al.)."""


class RecipeName(StrEnum):
    """The paper's models (Section 5) and the defences robust VI recovers (Section 4)."""

    BL = "BL"
    """Baseline: the plain ELBO on clean data."""
    OS = "OS"
    """One-step channel only."""
    OS50 = "OS50"
    """½ identity + ½ one-step."""
    MIX = "MIX"
    """The paper's mixture of identity and one-step nll/cw/entropy (regression: mse)."""
    NN = "NN"
    """The learned channel only."""
    NN50 = "NN50"
    """½ identity + ½ learned."""
    AMO = "AMO"
    """The amortised adversary only (a learned generator reading the input gradient)."""
    AMO50 = "AMO50"
    """½ identity + ½ amortised adversary."""
    AT = "AT"
    """Point-estimate adversarial training, ½ clean + ½ deterministic one-step."""
    AT_PGD = "AT-PGD"
    """Point-estimate adversarial training, ½ clean + ½ deterministic multi-step PGD."""
    TRADES = "TRADES"
    """TRADES (point estimate): clean CE + λ KL to the KL-maximising input."""
    ALP = "ALP"
    """Adversarial logit pairing (point estimate): AT loss + λ squared logit distance."""
    GIBBS = "GIBBS"
    """The robust Gibbs posterior: surrogate ELBO under a deterministic PGD channel."""


class Bound(StrEnum):
    """Which bound of the robust ELBO a Bayesian recipe optimises (docs/theory.md)."""

    SURROGATE = "surrogate"
    """The surrogate ELBO (the paper's main objective)."""
    IWAE = "iwae"
    """The importance-weighted bound with ``K`` channel draws."""
    RATIO_OF_MEANS = "ratio_of_means"
    """The consistent ratio-of-means gradient of the exact ELBO."""


@dataclass(frozen=True)
class Recipe:
    """An objective and the channel it trains against (pass it to :class:`~robust_vi.Trainer`).

    Attributes:
        name: Which model of the paper.
        objective: The loss (:class:`~robust_vi.Objective`).
        channel: The adversarial channel (its state, e.g. a learned generator, lives here).
    """

    name: RecipeName
    objective: Objective
    channel: Channel

    @property
    def point_estimate(self) -> bool:
        """Whether the recipe trains a point estimate (no posterior, no KL)."""
        return self.objective.point_estimate

    @property
    def needs_posterior(self) -> bool:
        """Whether the model must hold Bayesian layers."""
        return not self.objective.point_estimate

    @property
    def task(self) -> Task:
        """Classification or regression."""
        return self.objective.task


_NEEDS_EPS = {n for n in RecipeName if n is not RecipeName.BL}
_BAYESIAN = {
    RecipeName.BL,
    RecipeName.OS,
    RecipeName.OS50,
    RecipeName.MIX,
    RecipeName.NN,
    RecipeName.NN50,
    RecipeName.AMO,
    RecipeName.AMO50,
}
_RANDOM_START = {RecipeName.OS, RecipeName.OS50, RecipeName.MIX}


def _bound_objective(
    bound: Bound, k: int, s: int, task: Task, likelihood: GaussianLikelihood | None
) -> Objective:
    kwargs = {
        "num_channel_samples": k,
        "num_posterior_samples": s,
        "task": task,
        "likelihood": likelihood,
    }
    if bound is Bound.IWAE:
        return IWAEBound(**kwargs)
    if bound is Bound.RATIO_OF_MEANS:
        return RatioOfMeans(**kwargs)
    return SurrogateELBO(**kwargs)


_LEARNED_CHANNELS = {
    RecipeName.NN: (nn_channel, False),
    RecipeName.NN50: (nn50_channel, True),
    RecipeName.AMO: (amo_channel, False),
    RecipeName.AMO50: (amo50_channel, True),
}
"""The learned-channel recipes: the channel's constructor and whether half the batch is clean
(identity with ``σ₀``)."""


def recipe(
    name: RecipeName | str,
    *,
    eps: float | None = None,
    sigma: float = DEFAULT_SIGMA,
    sigma0: float | None = None,
    task: Task | str = Task.CLASSIFICATION,
    bound: Bound | str = Bound.SURROGATE,
    num_channel_samples: int = 1,
    num_posterior_samples: int = 1,
    weight: float | None = None,
    norm: Norm | str = Norm.L2,
    clamp: tuple[float, float] | None | Literal["auto"] = "auto",
    pgd_steps: int = 10,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = 10,
    adversary_lr: float = 1e-3,
    likelihood: GaussianLikelihood | None = None,
    random_start: bool = False,
    adversary_update: Literal["alternating", "joint"] = "alternating",
    generator_stride: int = 1,
) -> Recipe:
    """The paper's model ``name`` as an objective and a channel, in one line.

    Args:
        name: ``"BL"``, ``"OS"``, ``"OS50"``, ``"MIX"``, ``"NN"``, ``"NN50"``, ``"AMO"``,
            ``"AMO50"``, ``"AT"``,
            ``"AT-PGD"``, ``"TRADES"``, ``"ALP"`` or ``"GIBBS"`` (case-insensitive;
            ``"AT_PGD"`` also accepted).
        eps: The training budget ``ε`` (L2 by default; input units). Required by every
            recipe but ``BL``. MNIST in ``[0, 1]``: about 2–3.
        sigma: Noise ``σ`` of the one-step components, and ``σ_max`` of the learned ones.
            Default ``0.2`` (MNIST pixels; rescale for other data).
        sigma0: Gaussian augmentation of the identity component; default ``0`` (clean),
            except ``MIX``, where ``None`` means ``σ`` (the paper's clean Gaussian
            augmentation, :func:`adv_channels.mix_channel`).
        task: ``"classification"`` (default) or ``"regression"``.
        bound: Bayesian recipes: ``"surrogate"`` (default), ``"iwae"`` or
            ``"ratio_of_means"``.
        num_channel_samples: ``K`` channel draws per point (Bayesian recipes).
        num_posterior_samples: ``S`` posterior draws per batch (Bayesian recipes).
        weight: ``λ`` of TRADES/ALP; defaults :data:`DEFAULT_WEIGHTS`.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range of attack points; ``"auto"``: ``(0, 1)`` for
            classification, ``None`` for regression.
        pgd_steps: Steps of the multi-step channels (``AT-PGD``, ``GIBBS``) and of TRADES'
            inner maximisation. Default ``10``.
        input_shape: ``(C, H, W)`` or ``(D,)``: required by ``NN``, ``NN50``, ``AMO`` and
            ``AMO50``.
        num_classes: Classes of the learned channel's one-hot label (classification);
            ignored for regression. Default ``10``.
        adversary_lr: Adam learning rate of the learned channel's adversary step.
        likelihood: Regression: the Gaussian likelihood (default ``model.likelihood``).
        random_start: ``OS``, ``OS50``, ``MIX``: one-step components from a uniform random
            start with step ``1.25 ε`` (:class:`adv_channels.OneStepChannel`). Default off.
        adversary_update: ``AMO``, ``AMO50``: how the generator is trained,
            ``"alternating"`` (default: its own GAN step per batch) or ``"joint"`` (from
            the model step's backward pass; :class:`adv_channels.LearnedChannel`).
        generator_stride: ``AMO``, ``AMO50`` on images: ``1`` (default), ``2`` or ``4``,
            the resolution of the generator's refinement (full, half, a quarter)
            (:class:`adv_channels.ConvAmortisedGenerator`).

    Returns:
        A :class:`Recipe`.

    Raises:
        ValueError: For an unknown name, a missing ``eps`` or ``input_shape``, ``K``/``S``
            other than 1 for a point-estimate recipe.

    Examples:
        >>> mix = recipe("MIX", eps=2.0)
        >>> mix.objective, mix.channel.weights  # doctest: +ELLIPSIS
        (SurrogateELBO(...), (0.4, 0.2, 0.2, 0.2))
        >>> recipe("AT", eps=2.0).point_estimate
        True
    """
    if isinstance(name, str) and not isinstance(name, RecipeName):
        name = name.strip().upper().replace("_", "-")
    rname = as_enum(RecipeName, name, "name")
    task = as_enum(Task, task, "task")
    bound = as_enum(Bound, bound, "bound")
    norm = as_enum(Norm, norm, "norm")
    k = check_positive_int(num_channel_samples, "num_channel_samples")
    s = check_positive_int(num_posterior_samples, "num_posterior_samples")
    sigma = check_float(sigma, "sigma")
    steps = check_positive_int(pgd_steps, "pgd_steps")
    if clamp == "auto":
        clamp = (0.0, 1.0) if task is Task.CLASSIFICATION else None
    if rname in _NEEDS_EPS:
        if eps is None:
            raise ValueError(f"recipe {rname.value!r} needs the training budget eps=")
        eps = check_float(eps, "eps")
    if rname not in _BAYESIAN:
        if k != 1 or bound is not Bound.SURROGATE:
            raise ValueError(
                f"recipe {rname.value!r} has a deterministic channel: num_channel_samples and "
                "bound apply to the Bayesian recipes (BL, OS, OS50, MIX, NN, NN50, AMO, AMO50)"
            )
        if s != 1 and rname is not RecipeName.GIBBS:
            raise ValueError(
                f"recipe {rname.value!r} trains a point estimate: num_posterior_samples must be 1"
            )
    random_start = bool(random_start)
    if random_start and rname not in _RANDOM_START:
        raise ValueError(
            f"random_start applies to the one-step recipes (OS, OS50, MIX), not {rname.value!r}"
        )
    amortised = rname in (RecipeName.AMO, RecipeName.AMO50)
    if (adversary_update != "alternating" or generator_stride != 1) and not amortised:
        raise ValueError(
            "adversary_update and generator_stride apply to the amortised recipes (AMO, "
            f"AMO50), not {rname.value!r}"
        )
    if weight is not None and rname not in (RecipeName.TRADES, RecipeName.ALP):
        raise ValueError(f"weight (λ) applies to TRADES and ALP, not {rname.value!r}")
    attack = "nll" if task is Task.CLASSIFICATION else "mse"
    labels = num_classes if task is Task.CLASSIFICATION else None
    zero0 = 0.0 if sigma0 is None else check_float(sigma0, "sigma0")
    assert eps is not None or rname is RecipeName.BL

    def learned_shape() -> Sequence[int]:
        if input_shape is None:
            raise ValueError(
                f"recipe {rname.value!r} needs input_shape= ((C, H, W) for images, (D,) for "
                "tabular data) to build the learned channel's generator"
            )
        return input_shape

    channel: Channel
    if rname is RecipeName.BL:
        channel = IdentityChannel(zero0)
    elif rname is RecipeName.OS:
        channel = os_channel(
            eps=eps,
            sigma=sigma,
            objective=attack,
            norm=norm,
            clamp=clamp,
            random_start=random_start,
        )
    elif rname is RecipeName.OS50:
        channel = os50_channel(
            eps=eps,
            sigma=sigma,
            sigma0=zero0,
            objective=attack,
            norm=norm,
            clamp=clamp,
            random_start=random_start,
        )
    elif rname is RecipeName.MIX:
        channel = mix_channel(
            task,
            eps=eps,
            sigma=sigma,
            sigma0=sigma0,
            norm=norm,
            clamp=clamp,
            random_start=random_start,
        )
    elif rname in _LEARNED_CHANNELS:
        build, half = _LEARNED_CHANNELS[rname]
        extra: dict[str, object] = {"sigma0": zero0} if half else {}
        if amortised:
            extra.update(update=adversary_update, stride=generator_stride)
        channel = build(
            learned_shape(),
            eps=eps,
            sigma_max=sigma,
            num_classes=labels,
            clamp=clamp,
            lr=adversary_lr,
            **extra,
        )
    elif rname in (RecipeName.AT, RecipeName.ALP):
        channel = at50_channel(eps=eps, objective=attack, norm=norm, clamp=clamp)
    elif rname is RecipeName.AT_PGD:
        channel = pgd_at50_channel(eps=eps, steps=steps, objective=attack, norm=norm, clamp=clamp)
    elif rname is RecipeName.GIBBS:
        channel = pgd_at_channel(eps=eps, steps=steps, objective=attack, norm=norm, clamp=clamp)
    else:  # TRADES
        channel = IdentityChannel()

    objective: Objective
    if rname in _BAYESIAN:
        objective = _bound_objective(bound, k, s, task, likelihood)
    elif rname in (RecipeName.AT, RecipeName.AT_PGD):
        objective = AdversarialTraining(task=task, likelihood=likelihood)
    elif rname is RecipeName.GIBBS:
        objective = RobustGibbs(num_posterior_samples=s, task=task, likelihood=likelihood)
    else:
        lam = DEFAULT_WEIGHTS[rname.value] if weight is None else check_float(weight, "weight")
        penalty = (
            TradesPenalty(eps=eps, steps=steps, norm=norm, clamp=clamp)
            if rname is RecipeName.TRADES
            else ALPPenalty(at_channel(eps=eps, objective=attack, norm=norm, clamp=clamp))
        )
        objective = GeneralisedELBO(
            penalty, weight=lam, task=task, likelihood=likelihood, point_estimate=True
        )
    return Recipe(rname, objective, channel)
