from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from adv_channels import (
    GaussianChannel,
    IdentityChannel,
    MixtureChannel,
    NoDensityError,
    OneStepChannel,
    PGDChannel,
    stratified_counts,
)

WEIGHTS = [
    [0.5, 0.5],
    [0.4, 0.2, 0.2, 0.2],
    [0.4, 0.6],
    [0.1, 0.0, 0.9],
    [1 / 3, 1 / 3, 1 / 3],
    [0.29, 0.71],
]


@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
@pytest.mark.parametrize("batch", [0, 1, 2, 7, 10, 33, 128, 1001])
def test_stratified_counts_are_exact(weights, batch):
    for seed in range(3):
        counts = stratified_counts(weights, batch, generator=torch.Generator().manual_seed(seed))
        assert sum(counts) == batch
        for n, w in zip(counts, weights, strict=True):
            assert math.floor(w * batch + 1e-9) <= n <= math.ceil(w * batch - 1e-9)


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 64])
def test_stratified_counts_are_unbiased(batch):
    # E[n_k] = π_k B: largest remainders gave the extra slots to the same components in every
    # batch (at B = 1 MIX always drew the identity and never attacked)
    weights = [0.4, 0.2, 0.2, 0.2]
    runs = 4000
    g = torch.Generator().manual_seed(batch)
    total = torch.zeros(4, dtype=torch.float64)
    for _ in range(runs):
        counts = stratified_counts(weights, batch, generator=g)
        assert sum(counts) == batch
        total += torch.tensor(counts, dtype=torch.float64)
    mean = total / runs
    for k, w in enumerate(weights):
        frac = w * batch - math.floor(w * batch + 1e-9)
        se = math.sqrt(frac * (1 - frac) / runs)  # the extra slot is Bernoulli(frac)
        assert abs(float(mean[k]) - w * batch) <= 5 * se + 1e-12, (k, float(mean[k]))


def test_stratified_counts_hand_case():
    # π B = (1.5, 1.5, 0): one extra slot, to component 0 or 1, never 2
    seen = set()
    for seed in range(30):
        counts = stratified_counts(
            [0.5, 0.5, 0.0], 3, generator=torch.Generator().manual_seed(seed)
        )
        assert counts in ([2, 1, 0], [1, 2, 0])
        seen.add(tuple(counts))
    assert len(seen) == 2


def test_stratified_ties_are_broken_at_random():
    firsts = [
        stratified_counts([0.5, 0.5], 7, generator=torch.Generator().manual_seed(s))[0]
        for s in range(40)
    ]
    assert set(firsts) == {3, 4}


@pytest.mark.parametrize("batch", [1, 7, 10, 33, 128])
def test_stratified_assignment_has_exact_proportions(batch):
    mix = MixtureChannel(
        [IdentityChannel(), GaussianChannel(0.1), GaussianChannel(0.2)], [0.5, 0.3, 0.2]
    )
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros(batch)
    for _ in range(20):
        comp = mix.assign(batch, generator=g)
        counts = torch.bincount(comp, minlength=3).tolist()
        assert sum(counts) == batch
        for n, w in zip(counts, [0.5, 0.3, 0.2], strict=True):
            assert math.floor(w * batch + 1e-9) <= n <= math.ceil(w * batch - 1e-9)
        seen += comp == 0
    if batch > 1:
        assert (seen > 0).sum() > batch // 2  # positions are random, not a fixed block
    else:  # one example: its component is drawn, identity 10 of 20 times on average
        assert 3 <= int(seen.item()) <= 17


def test_per_example_sampling_converges_to_the_weights():
    weights = [0.4, 0.2, 0.2, 0.2]
    mix = MixtureChannel([IdentityChannel()] * 4, weights, stratified=False)
    n = 20_000
    comp = mix.assign(n, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(comp, minlength=4).double() / n
    for f, w in zip(freq.tolist(), weights, strict=True):
        assert abs(f - w) <= 5 * math.sqrt(w * (1 - w) / n)  # binomial standard error


def test_per_example_counts_vary_between_batches():
    mix = MixtureChannel([IdentityChannel(), GaussianChannel(1.0)], [0.5, 0.5], stratified=False)
    g = torch.Generator().manual_seed(0)
    counts = {int((mix.assign(10, generator=g) == 0).sum()) for _ in range(30)}
    assert len(counts) > 2


def test_samples_come_from_their_components(images, cnn):
    x, y = images
    mix = MixtureChannel(
        [IdentityChannel(), OneStepChannel(eps=1.0, sigma=0.0, clamp=None)], [0.5, 0.5]
    )
    x_adv, comp = mix.sample_with_components(x, y, cnn, generator=torch.Generator().manual_seed(3))
    clean = comp == 0
    assert int(clean.sum()) == 3
    assert torch.equal(x_adv[clean], x[clean])
    point = OneStepChannel(eps=1.0, sigma=0.0, clamp=None).sample(x, y, cnn)
    torch.testing.assert_close(x_adv[~clean], point[~clean])
    again = mix.sample(x, y, cnn, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, x_adv)


def test_zero_weight_components_are_never_used():
    mix = MixtureChannel([IdentityChannel(), GaussianChannel(1.0)], [1.0, 0.0])
    x = torch.rand(50, 3)
    for stratified in (True, False):
        mix.stratified = stratified
        assert torch.equal(mix.sample(x, generator=torch.Generator().manual_seed(0)), x)


def test_log_prob_is_the_log_sum_exp_of_the_components(linear_model, tabular):
    x, y = tabular
    comps = [
        GaussianChannel(0.2),
        OneStepChannel(eps=0.5, sigma=0.3, clamp=None),
        OneStepChannel(eps=0.5, sigma=0.1, objective="entropy", clamp=None),
    ]
    weights = [0.5, 0.3, 0.2]
    mix = MixtureChannel(comps, weights)
    x_adv = mix.sample(x, y, linear_model, generator=torch.Generator().manual_seed(0))
    dens = torch.zeros(5, dtype=torch.float64)
    for w, c in zip(weights, comps, strict=True):
        mu = c.mean(x, y, linear_model)
        dens += w * Normal(mu, c.sigma).log_prob(x_adv).sum(1).exp()
    torch.testing.assert_close(mix.log_prob(x_adv, x, y, linear_model), dens.log())
    ref_mean = sum(w * c.mean(x, y, linear_model) for w, c in zip(weights, comps, strict=True))
    torch.testing.assert_close(mix.mean(x, y, linear_model), ref_mean)


def test_log_prob_far_in_the_tail_is_finite():
    mix = MixtureChannel([GaussianChannel(0.01), GaussianChannel(0.02)], [0.5, 0.5])
    x = torch.zeros(2, 100, dtype=torch.float64)
    lp = mix.log_prob(x + 5.0, x)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, math.log(0.5) + GaussianChannel(0.02).log_prob(x + 5, x))


def test_density_flags(cnn, images):
    x, y = images
    mix = MixtureChannel(
        [GaussianChannel(0.1), PGDChannel(eps=1.0, sigma=0.1, steps=1)], [0.5, 0.5]
    )
    assert not mix.has_density and mix.needs_target
    with pytest.raises(NoDensityError, match="PGDChannel"):
        mix.log_prob(x, x, y, cnn)
    only_clean = MixtureChannel([GaussianChannel(0.1), PGDChannel(eps=1.0, sigma=0.1)], [1.0, 0.0])
    assert only_clean.has_density and not only_clean.needs_target


def test_gradients_flow_through_the_reassembled_batch(linear_model, tabular):
    x, y = tabular
    mix = MixtureChannel(
        [GaussianChannel(0.1), OneStepChannel(eps=0.5, sigma=0.1, clamp=None, differentiable=True)],
        [0.4, 0.6],
    )
    xr = x.clone().requires_grad_(True)
    x_adv = mix.sample(xr, y, linear_model)
    x_adv.sum().backward()
    torch.testing.assert_close(xr.grad, torch.ones_like(x))
    assert linear_model.weight.grad.abs().sum() > 0


def test_errors(cnn, images):
    x, y = images
    comps = [IdentityChannel(), GaussianChannel(0.1)]
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureChannel(comps, [0.5, 0.6])
    with pytest.raises(ValueError, match=">= 0"):
        MixtureChannel(comps, [-0.5, 1.5])
    with pytest.raises(ValueError, match="one entry per component"):
        MixtureChannel(comps, [1.0])
    with pytest.raises(ValueError, match="finite"):
        MixtureChannel(comps, [float("nan"), 1.0])
    with pytest.raises(TypeError, match="Channel instances"):
        MixtureChannel([IdentityChannel(), torch.nn.Identity()], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        MixtureChannel([], [])
    mix = MixtureChannel([IdentityChannel(), OneStepChannel(eps=1.0, sigma=0.1)], [0.5, 0.5])
    with pytest.raises(ValueError, match="OneStepChannel.*pass target="):
        mix.sample(x, y)
    with pytest.raises(ValueError, match="y must hold one label per example"):
        mix.sample(x, y[:2], cnn)
    with pytest.raises(ValueError, match="batch_size"):
        stratified_counts([1.0], -1)
