"""The robust Gibbs posterior (SPEC §4): the surrogate under a deterministic channel."""

from __future__ import annotations

import pytest
import torch

from adv_channels import at_channel, mix_channel, os_channel
from robust_vi import robust_gibbs, surrogate_elbo


def test_is_the_surrogate_elbo_with_the_worst_case_channel(images, small_cnn):
    model = small_cnn(init_sigma=0.05)
    x, y = images
    kw = {"dataset_size": 100, "num_posterior_samples": 2}
    gibbs = robust_gibbs(
        model, at_channel(eps=1.0), x, y, generator=torch.Generator().manual_seed(0), **kw
    )
    sur = surrogate_elbo(
        model, at_channel(eps=1.0), x, y, generator=torch.Generator().manual_seed(0), **kw
    )
    torch.testing.assert_close(gibbs, sur)


@pytest.mark.parametrize(
    "channel",
    [os_channel(eps=1.0, sigma=0.1), mix_channel(eps=1.0, sigma=0.1)],
    ids=["one-step-noise", "mix"],
)
def test_rejects_stochastic_channels(images, small_cnn, channel):
    x, y = images
    with pytest.raises(ValueError, match="deterministic"):
        robust_gibbs(small_cnn(), channel, x, y, dataset_size=100)
