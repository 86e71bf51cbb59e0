"""One-line recipes for the paper's models: the right objective and channel for each."""

from __future__ import annotations

import pytest

from adv_channels import (
    IdentityChannel,
    LearnedChannel,
    MixtureChannel,
    OneStepChannel,
    PGDChannel,
)
from robust_vi import (
    AdversarialTraining,
    ALPPenalty,
    GeneralisedELBO,
    IWAEBound,
    RatioOfMeans,
    Recipe,
    RecipeName,
    RobustGibbs,
    SurrogateELBO,
    TradesPenalty,
    recipe,
)

IMAGE = {"input_shape": (1, 28, 28)}


def _kinds(channel):
    if isinstance(channel, MixtureChannel):
        return [type(c).__name__ for c in channel.components], channel.weights
    return type(channel).__name__, None


@pytest.mark.parametrize(
    ("name", "objective", "kinds", "weights"),
    [
        ("BL", SurrogateELBO, "IdentityChannel", None),
        ("OS", SurrogateELBO, "OneStepChannel", None),
        ("OS50", SurrogateELBO, ["IdentityChannel", "OneStepChannel"], (0.5, 0.5)),
        (
            "MIX",
            SurrogateELBO,
            ["IdentityChannel", "OneStepChannel", "OneStepChannel", "OneStepChannel"],
            (0.4, 0.2, 0.2, 0.2),
        ),
        ("NN", SurrogateELBO, "LearnedChannel", None),
        ("NN50", SurrogateELBO, ["IdentityChannel", "LearnedChannel"], (0.5, 0.5)),
        ("AMO", SurrogateELBO, "AmortisedChannel", None),
        ("AMO50", SurrogateELBO, ["IdentityChannel", "AmortisedChannel"], (0.5, 0.5)),
        ("AT", AdversarialTraining, ["IdentityChannel", "OneStepChannel"], (0.5, 0.5)),
        ("AT-PGD", AdversarialTraining, ["IdentityChannel", "PGDChannel"], (0.5, 0.5)),
        ("TRADES", GeneralisedELBO, "IdentityChannel", None),
        ("ALP", GeneralisedELBO, ["IdentityChannel", "OneStepChannel"], (0.5, 0.5)),
        ("GIBBS", RobustGibbs, "PGDChannel", None),
    ],
)
def test_every_recipe(name, objective, kinds, weights):
    r = recipe(name, eps=2.0, **IMAGE)
    assert isinstance(r, Recipe) and r.name.value == name
    assert type(r.objective) is objective
    assert _kinds(r.channel) == (kinds, weights)
    point = name in ("AT", "AT-PGD", "TRADES", "ALP")
    assert r.point_estimate is point and r.needs_posterior is not point


def test_mix_is_the_papers_mixture():
    r = recipe("MIX", eps=2.0, sigma=0.3)
    objectives = [c.objective.value for c in r.channel.components[1:]]
    assert objectives == ["nll", "cw", "entropy"]
    assert all(c.eps == 2.0 and c.sigma == 0.3 for c in r.channel.components[1:])
    assert r.channel.components[0].sigma0 == 0.3  # the paper's clean Gaussian augmentation
    assert r.channel.stratified
    reg = recipe("MIX", eps=0.5, task="regression")
    assert reg.channel.weights == (0.4, 0.6)
    assert reg.channel.components[1].objective.value == "mse"
    assert reg.channel.components[1].clamp is None
    assert reg.task.value == "regression"


def test_at_channels_are_deterministic_and_at_pgd_multi_step():
    at = recipe("AT", eps=2.0).channel.components[1]
    assert isinstance(at, OneStepChannel) and at.sigma == 0.0
    pgd = recipe("AT-PGD", eps=2.0, pgd_steps=7).channel.components[1]
    assert isinstance(pgd, PGDChannel) and pgd.sigma == 0.0 and pgd.attack.steps == 7


def test_penalties_and_their_default_weights():
    trades = recipe("TRADES", eps=2.0)
    assert isinstance(trades.objective.penalty_fn, TradesPenalty)
    assert trades.objective.penalty_weight == 1.0
    assert isinstance(trades.channel, IdentityChannel)
    alp = recipe("ALP", eps=2.0, weight=0.25)
    assert isinstance(alp.objective.penalty_fn, ALPPenalty)
    assert alp.objective.penalty_weight == 0.25
    assert alp.objective.penalty_fn.adversary.sigma == 0.0


def test_learned_channels():
    nn = recipe("NN", eps=2.0, sigma=0.3, adversary_lr=0.01, **IMAGE).channel
    assert isinstance(nn, LearnedChannel) and nn.sigma_max == 0.3 and nn.lr == 0.01
    assert nn.num_classes == 10
    reg = recipe("NN50", eps=0.5, task="regression", input_shape=(8,)).channel
    assert reg.components[1].num_classes is None and reg.learnable


def test_amortised_and_random_start_channels():
    amo = recipe("AMO", eps=2.0, sigma=0.3, adversary_lr=0.01, **IMAGE).channel
    assert amo.needs_target and amo.sigma_max == 0.3 and amo.lr == 0.01 and amo.eps == 2.0
    assert type(amo.network).__name__ == "ConvAmortisedGenerator"
    reg = recipe("AMO50", eps=0.5, task="regression", input_shape=(8,)).channel
    assert type(reg.components[1].network).__name__ == "DenseAmortisedGenerator"
    mix = recipe("MIX", eps=2.0, random_start=True).channel
    assert all(c.random_start and c.step_size == 2.5 for c in mix.components[1:])
    assert recipe("OS50", eps=2.0, random_start=True).channel.components[1].random_start
    assert not recipe("OS", eps=2.0).channel.random_start
    with pytest.raises(ValueError, match="random_start"):
        recipe("AT", eps=2.0, random_start=True)


def test_amortised_update_and_stride_options():
    joint = recipe("AMO50", eps=2.0, adversary_update="joint", generator_stride=4, **IMAGE)
    amo = joint.channel.components[1]
    assert amo.update == "joint" and amo.network.stride == 4 and not joint.channel.learnable
    assert joint.channel.joint_parameters() == list(amo.network.parameters())
    default = recipe("AMO", eps=2.0, **IMAGE).channel
    assert default.update == "alternating" and default.network.stride == 1
    for name in ("MIX", "NN50", "AT-PGD"):
        with pytest.raises(ValueError, match="amortised"):
            recipe(name, eps=2.0, adversary_update="joint", **IMAGE)
        with pytest.raises(ValueError, match="amortised"):
            recipe(name, eps=2.0, generator_stride=2, **IMAGE)
    with pytest.raises(ValueError, match="update"):
        recipe("AMO", eps=2.0, adversary_update="both", **IMAGE)
    with pytest.raises(ValueError, match="stride"):
        recipe("AMO", eps=2.0, generator_stride=3, **IMAGE)


@pytest.mark.parametrize(
    ("bound", "cls"),
    [("surrogate", SurrogateELBO), ("iwae", IWAEBound), ("ratio_of_means", RatioOfMeans)],
)
def test_bounds_and_draws(bound, cls):
    r = recipe("OS50", eps=2.0, bound=bound, num_channel_samples=5, num_posterior_samples=2)
    assert type(r.objective) is cls
    assert r.objective.num_channel_samples == 5 and r.objective.num_posterior_samples == 2


def test_names_are_forgiving():
    assert recipe("mix", eps=1.0).name is RecipeName.MIX
    assert recipe("at_pgd", eps=1.0).name is RecipeName.AT_PGD
    assert recipe(RecipeName.BL).name is RecipeName.BL


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("XYZ", {"eps": 1.0}, ValueError, "name"),
        ("MIX", {}, ValueError, "eps"),
        ("NN", {"eps": 1.0}, ValueError, "input_shape"),
        ("AT", {"eps": 1.0, "num_channel_samples": 3}, ValueError, "num_channel_samples"),
        ("TRADES", {"eps": 1.0, "num_posterior_samples": 2}, ValueError, "num_posterior"),
        ("AT", {"eps": 1.0, "bound": "iwae"}, ValueError, "bound"),
        ("MIX", {"eps": 1.0, "weight": 1.0}, ValueError, "weight"),
        ("MIX", {"eps": -1.0}, ValueError, "eps"),
        ("MIX", {"eps": 1.0, "sigma": -0.1}, ValueError, "sigma"),
        ("MIX", {"eps": 1.0, "bound": "elbo"}, ValueError, "bound"),
        ("MIX", {"eps": 1.0, "task": "ranking"}, ValueError, "task"),
        ("TRADES", {"eps": 1.0, "weight": -1.0}, ValueError, "weight"),
    ],
)
def test_errors(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        recipe(name, **kwargs)


def test_gibbs_takes_posterior_draws():
    assert recipe("GIBBS", eps=1.0, num_posterior_samples=3).objective.num_posterior_samples == 3
