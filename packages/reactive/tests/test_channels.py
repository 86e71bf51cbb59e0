"""Which channels the reactive defence accepts, and their saved configuration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_channels import (
    GaussianChannel,
    IdentityChannel,
    MixtureChannel,
    OneStepChannel,
    PGDChannel,
)
from adv_reactive import channel_sigma
from adv_reactive.channels import channel_config, channel_from_config

SUPPORTED = [
    pytest.param(GaussianChannel(0.25), 0.25, id="gaussian"),
    pytest.param(IdentityChannel(0.1), 0.1, id="identity"),
    pytest.param(OneStepChannel(eps=0.5, sigma=0.3), 0.3, id="one_step"),
]


@pytest.mark.parametrize(("channel", "sigma"), SUPPORTED)
def test_sigma_of_supported_channels(channel: nn.Module, sigma: float) -> None:
    assert channel_sigma(channel) == sigma


@pytest.mark.parametrize(
    "channel",
    [
        pytest.param(GaussianChannel(0.0), id="gaussian-sigma0"),
        pytest.param(IdentityChannel(), id="identity-default"),
        pytest.param(OneStepChannel(eps=0.5, sigma=0.0), id="one_step-sigma0"),
    ],
)
def test_sigma_zero_is_refused(channel: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"sigma = 0\.0.*needs sigma > 0"):
        channel_sigma(channel)


def test_simulator_only_channel_is_refused_naming_it_and_why() -> None:
    with pytest.raises(ValueError, match=r"PGDChannel has no density.*likelihood-free"):
        channel_sigma(PGDChannel(eps=0.5, sigma=0.1))


def test_unsupported_channels() -> None:
    mixture = MixtureChannel([GaussianChannel(0.1), GaussianChannel(0.2)], [0.5, 0.5])
    with pytest.raises(ValueError, match="MixtureChannel is not supported"):
        channel_sigma(mixture)
    with pytest.raises(TypeError, match="adv_channels Channel"):
        channel_sigma(nn.Identity())


def _learned_channel() -> nn.Module | None:
    try:
        from adv_channels import DenseGenerator, LearnedChannel

        return LearnedChannel(DenseGenerator(4), eps=0.5, sigma_max=0.5)
    except (ImportError, TypeError, ValueError):  # pragma: no cover - adv_channels may change
        return None


def test_learned_channel_with_per_element_sigma_is_refused() -> None:
    channel = _learned_channel()
    if channel is None:
        pytest.skip("LearnedChannel's constructor differs")
    with pytest.raises(ValueError, match="LearnedChannel is not supported"):
        channel_sigma(channel)


@pytest.mark.parametrize(
    "channel",
    [
        GaussianChannel(0.25),
        IdentityChannel(0.1),
        OneStepChannel(eps=0.5, sigma=0.3, objective="cw", norm="linf", clamp=None, kappa=0.5),
    ],
    ids=["gaussian", "identity", "one_step"],
)
def test_config_round_trip(channel: nn.Module) -> None:
    config = channel_config(channel)
    rebuilt = channel_from_config(config)
    assert type(rebuilt) is type(channel)
    assert channel_config(rebuilt) == config
    assert repr(rebuilt) == repr(channel)


def test_one_step_config_rebuilds_the_same_attack() -> None:
    channel = OneStepChannel(eps=0.5, sigma=0.3, objective="entropy", entropy_sign=-1)
    rebuilt = channel_from_config(channel_config(channel))
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    torch.testing.assert_close(rebuilt.mean(x, None, net), channel.mean(x, None, net))


def test_unknown_channel_has_no_config() -> None:
    class Custom(GaussianChannel):
        pass

    assert channel_config(Custom(0.2)) is None
    with pytest.raises(ValueError, match="cannot rebuild"):
        channel_from_config({"class": "Custom", "kwargs": {}})
    with pytest.raises(ValueError, match="malformed"):
        channel_from_config(["GaussianChannel"])
