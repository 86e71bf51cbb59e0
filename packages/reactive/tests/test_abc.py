"""The likelihood-free (ABC) reactive defence against eqs. 4/5 and float64 brute forces."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from adv_channels import (
    DenseGenerator,
    GaussianChannel,
    LearnedChannel,
    MixtureChannel,
    OneStepChannel,
    PGDChannel,
)
from adv_reactive import (
    ABC,
    ReactivePPD,
    nearest_neighbour_bandwidth,
    nearest_simulations,
    reactive_aggregate,
    squared_norms,
)
from bnn_core import BayesLinear

SHAPE = (1, 2, 3)
MODES = ["online", "offline"]
NUM_DRAWS = 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _train(n: int = 20, seed: int = 1, shape: tuple[int, ...] = SHAPE):
    g = _gen(seed)
    x = torch.rand(n, *shape, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def _mean_simulator(channel):
    """A custom simulator that returns the channel's mean: the ABC keys are then the μ_mi."""

    def simulate(x, y, target, generator):
        return channel.mean(x, y, target)

    return simulate


# -- the aggregation with S simulations per pair, against a float64 brute force -------------------


def _brute_force_abc(q, keys, values, h, mode, sims, shared):
    """k_bmi = (1/S) Σ_s exp(−‖q − k_msi‖² / 2h²), then eqs. 4/5 (shared: one draw)."""
    d2 = ((q[:, None, None, :] - keys[None]) ** 2).sum(-1)  # (B, G, N)
    k = torch.exp(-d2 / (2 * h**2))
    k = k.reshape(q.shape[0], -1, sims, k.shape[-1]).mean(2)  # (B, M or 1, N)
    v = values.mean(0, keepdim=True) if shared else values
    if mode == "online" or shared:
        w = k / k.sum(dim=(1, 2), keepdim=True)
        out = torch.einsum("bmi,mic->bc", w, v)
    else:
        w = k / k.sum(dim=2, keepdim=True)
        out = torch.einsum("bmi,mic->bc", w, v) / v.shape[0]
    return out, torch.log(k.sum(2)), w.sum(1) / (w.sum(dim=(1, 2))[:, None])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shared", [False, True])
def test_aggregation_with_simulations_matches_the_brute_force(mode, shared):
    g = _gen(0)
    num_draws, sims, num, dim = 3, 4, 25, 5
    groups = sims if shared else num_draws * sims
    keys = torch.rand(groups, num, dim, generator=g, dtype=torch.float64)
    values = torch.softmax(3 * torch.randn(num_draws, num, 4, generator=g), -1).double()
    q = keys[0, :6] + 0.2 * torch.randn(6, dim, generator=g, dtype=torch.float64)
    res = reactive_aggregate(
        q, keys, values, sigma=0.3, mode=mode, simulations=sims, top_k=3, chunk_size=7
    )
    out, log_norm, posterior = _brute_force_abc(q, keys, values, 0.3, mode, sims, shared)
    torch.testing.assert_close(res.output, out, rtol=1e-10, atol=1e-12)
    expect_norm = log_norm.expand(-1, num_draws) if shared else log_norm
    torch.testing.assert_close(res.log_normalizer, expect_norm, rtol=1e-10, atol=1e-10)
    top_w, top_i = posterior.topk(3, dim=1)
    torch.testing.assert_close(res.top_k_indices, top_i)
    torch.testing.assert_close(res.top_k_weights, top_w, rtol=1e-9, atol=1e-12)
    # gradients flow to x' through the merged groups
    qq = q[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: (
            reactive_aggregate(t, keys, values, sigma=0.3, mode=mode, simulations=sims).output
        ),
        (qq,),
    )


def test_aggregation_simulation_shape_errors():
    keys = torch.rand(6, 5, 2)
    values = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="simulations must be >= 1"):
        reactive_aggregate(torch.rand(1, 2), keys, values, sigma=1.0, simulations=0)
    with pytest.raises(ValueError, match="not a multiple of simulations=4"):
        reactive_aggregate(torch.rand(1, 2), keys, values, sigma=1.0, simulations=4)
    with pytest.raises(ValueError, match="do not match keys"):
        reactive_aggregate(torch.rand(1, 2), keys, torch.rand(4, 5, 3), sigma=1.0, simulations=3)
    with pytest.raises(ValueError, match=r"\(M·S, N, D\)"):
        reactive_aggregate(torch.rand(1, 2), torch.rand(5, 2), values, sigma=1.0, simulations=2)


# -- ReactivePPD(abc=...) equals eqs. 4/5 exactly at the channel means with h = σ ---------------


@pytest.mark.parametrize("sims", [1, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["gaussian", "one_step"])
def test_simulations_at_the_means_with_h_sigma_equal_eqs_4_5(kind, mode, sims, reactive_models):
    model = reactive_models["classification"]()
    sigma = 0.4
    channel = GaussianChannel(sigma) if kind == "gaussian" else OneStepChannel(eps=0.4, sigma=sigma)
    x, y = _train()
    exact = ReactivePPD(model, channel, mode=mode, num_samples=NUM_DRAWS, generator=_gen(2))
    exact.fit(x, y)
    abc = ABC(simulations=sims, bandwidth=sigma, per_draw=kind == "one_step")
    rppd = ReactivePPD(
        model,
        _mean_simulator(channel),
        mode=mode,
        num_samples=NUM_DRAWS,
        generator=_gen(2),
        abc=abc,
    )
    rppd.fit(x, y)
    assert rppd.shared_keys is (kind == "gaussian") and rppd.sigma == sigma
    x_adv = (x[:6] + 0.1 * torch.randn(x[:6].shape, generator=_gen(3), dtype=x.dtype)).clamp(0, 1)
    a, b = exact.predict(x_adv, top_k=3), rppd.predict(x_adv, top_k=3)
    for name in ("probs", "log_normalizer", "log_marginal_likelihood", "draw_weights", "ess"):
        got, want = getattr(b, name), getattr(a, name)
        if name == "ess" and sims > 1:
            want = want * sims  # S copies of every key
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(b.top_k_indices, a.top_k_indices)
    torch.testing.assert_close(b.top_k_weights, a.top_k_weights, rtol=1e-10, atol=1e-12)


# -- convergence to eqs. 4/5 as S grows and h shrinks (a Gaussian-family channel) ----------------


def _model_2d(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        BayesLinear(2, 8, init_sigma=0.5, dtype=torch.float64),
        nn.ReLU(),
        BayesLinear(8, 3, init_sigma=0.5, dtype=torch.float64),
    )
    with torch.no_grad():
        model[1].weight_mu.mul_(3.0)
        model[3].weight_mu.mul_(3.0)
    return model


@pytest.mark.parametrize(  # shared keys (Gaussian channel): online and offline coincide
    ("kind", "mode"), [("gaussian", "online"), ("one_step", "online"), ("one_step", "offline")]
)
def test_abc_converges_to_eqs_4_5_as_s_grows_and_h_shrinks(kind, mode):
    model = _model_2d()
    sigma = 0.3
    channel = GaussianChannel(sigma) if kind == "gaussian" else OneStepChannel(eps=0.3, sigma=sigma)
    x, y = _train(n=8, shape=(1, 2))
    x_adv = x + sigma * torch.randn(x.shape, generator=_gen(5), dtype=x.dtype)
    exact = ReactivePPD(model, channel, mode=mode, num_samples=NUM_DRAWS, generator=_gen(2))
    want = exact.fit(x, y).predict(x_adv)
    errors = []
    for sims, h_ratio in ((16, 0.5), (512, 0.25), (16384, 0.1)):
        abc = ABC(simulations=sims, bandwidth=h_ratio * sigma)
        rppd = ReactivePPD(
            model, channel, mode=mode, num_samples=NUM_DRAWS, generator=_gen(2), abc=abc
        )
        got = rppd.fit(x, y).predict(x_adv)
        err = float((got.probs - want.probs).abs().max())
        if kind == "one_step" and mode == "online":
            err = max(err, float((got.draw_weights - want.draw_weights).abs().max()))
        errors.append(err)
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < errors[0] / 4 and errors[2] < 0.03, errors


def test_fixed_h_and_many_simulations_give_eqs_4_5_with_sigma_squared_plus_h_squared():
    """E_ξ N(x'; μ + σξ, h²) = N(x'; μ, σ² + h²): the S → ∞ limit at a fixed bandwidth."""
    model = _model_2d()
    sigma, h = 0.3, 0.2
    x, y = _train(n=8, shape=(1, 2))
    x_adv = x + sigma * torch.randn(x.shape, generator=_gen(5), dtype=x.dtype)
    wider = GaussianChannel(math.hypot(sigma, h))
    want = ReactivePPD(model, wider, num_samples=NUM_DRAWS, generator=_gen(2)).fit(x, y)
    abc = ABC(simulations=4096, bandwidth=h)
    rppd = ReactivePPD(
        model, GaussianChannel(sigma), num_samples=NUM_DRAWS, generator=_gen(2), abc=abc
    )
    got = rppd.fit(x, y).predict(x_adv)
    assert float((got.probs - want.predict(x_adv).probs).abs().max()) < 5e-3


# -- simulators: PGD (clean input recoverable), mixtures, learned channels, callables -------------


@pytest.mark.parametrize("mode", MODES)
def test_pgd_channel_recovers_the_clean_input_of_well_separated_points(mode, reactive_models):
    model = reactive_models["classification"]()
    # 8 training inputs at corners of a cube of side 1 (pairwise distance >= 1 >> eps).
    corners = torch.tensor(
        [[a, b, c, a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)],
        dtype=torch.float64,
    ).reshape(8, *SHAPE)
    labels = torch.arange(8) % 3
    channel = PGDChannel(eps=0.25, sigma=0.02, steps=5)
    abc = ABC(simulations=4)
    rppd = ReactivePPD(model, channel, mode=mode, num_samples=NUM_DRAWS, generator=_gen(2), abc=abc)
    rppd.fit(corners, labels)
    assert not rppd.shared_keys and rppd.keys.shape == (NUM_DRAWS * 4, 8, 6)
    offsets = (rppd.keys - rppd.inputs[None]).norm(dim=-1)  # PGD stays in its ball (+ noise)
    assert float(offsets.max()) <= 0.25 + 6 * 0.02 * math.sqrt(6)
    # Fresh attacks (not the stored simulations) of each input under one draw.
    pred = rppd.predict(corners)  # warm: the object predicts from its state alone
    assert pred.probs.shape == (8, 3)
    x_adv = torch.stack(
        [
            channel.sample(corners, labels, _DrawModel(rppd, m), generator=_gen(10 + m))
            for m in range(NUM_DRAWS)
        ]
    )[1]
    purified = rppd.purified_inputs(x_adv, top_k=1)
    assert torch.equal(purified.indices[:, 0], torch.arange(8))
    assert bool((purified.weights[:, 0] > 0.99).all())
    clean = rppd.values.mean(0)  # offline: the PPD at the true clean input, Σ_m P_mi / M
    if mode == "offline":
        torch.testing.assert_close(rppd.predict(x_adv).probs, clean, atol=1e-3, rtol=0)


class _DrawModel(nn.Module):
    """The predictive of one stored draw of a fitted ReactivePPD (for fresh attacks)."""

    def __init__(self, rppd: ReactivePPD, m: int) -> None:
        super().__init__()
        from adv_reactive import DrawPredictive

        self.pred = DrawPredictive(rppd.model, rppd.draws, m)

    def forward(self, x):
        return self.pred(x)


def test_custom_simulator_is_called_under_each_posterior_draw(reactive_models, by_hand):
    model = reactive_models["classification"]()
    x, y = _train(n=6)
    seen = []

    def simulate(xb, yb, target, generator):
        seen.append(target(xb).detach())
        return xb + 0.05 * torch.randn(xb.shape, generator=generator, dtype=xb.dtype)

    rppd = ReactivePPD(
        model, simulate, num_samples=NUM_DRAWS, generator=_gen(2), abc=ABC(simulations=2)
    )
    rppd.fit(x, y)
    assert len(seen) == NUM_DRAWS  # one call per draw: the batch repeated S = 2 times
    for m in range(NUM_DRAWS):
        torch.testing.assert_close(seen[m], by_hand(model, rppd.draws, m, x.repeat(2, 1, 1, 1)))
    assert rppd.sigma is not None and rppd.sigma > 0  # the rule chose h


def test_mixture_with_a_pgd_component_and_a_learned_channel_are_simulators(reactive_models):
    model = reactive_models["classification"]()
    x, y = _train(n=10)
    mix = MixtureChannel(
        [GaussianChannel(0.1), PGDChannel(eps=0.3, sigma=0.1, steps=3)], [0.5, 0.5]
    )
    rppd = ReactivePPD(model, mix, num_samples=2, generator=_gen(2), abc=ABC(simulations=2))
    assert rppd.fit(x, y).keys.shape == (4, 10, 6)  # reads the model: per draw
    probs = rppd(x[:3]).exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(3, dtype=torch.float64))

    flat = x.reshape(10, 6)
    gen_net = DenseGenerator(6, num_classes=3).double()
    learned = LearnedChannel(gen_net, eps=0.3, sigma_max=0.1)
    flat_model = nn.Sequential(*list(model.children())[1:])  # takes (B, 6)
    rppd = ReactivePPD(
        flat_model, learned, num_samples=2, generator=_gen(2), abc=ABC(simulations=3)
    )
    rppd.fit(flat, y)
    assert rppd.shared_keys and rppd.keys.shape == (3, 10, 6)  # ignores the model: shared
    assert bool(((rppd.keys - flat[None]).norm(dim=-1) < 0.3 + 0.1 * 6 * math.sqrt(6)).all())


# -- k nearest simulations -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_nearest_simulations_match_the_brute_force(mode):
    g = _gen(0)
    num_draws, sims, num, dim, k = 3, 2, 40, 4, 5
    keys = torch.rand(num_draws * sims, num, dim, generator=g, dtype=torch.float64)
    values = torch.softmax(torch.randn(num_draws, num, 3, generator=g, dtype=torch.float64), -1)
    q = torch.rand(7, dim, generator=g, dtype=torch.float64)
    out, counts = nearest_simulations(
        q,
        keys,
        squared_norms(keys),
        values,
        k=k,
        mode=mode,
        simulations=sims,
        shared=False,
        chunk_size=6,
    )
    d = torch.cdist(q, keys.reshape(-1, dim)).reshape(7, num_draws, sims * num)
    vals = values.repeat_interleave(sims, dim=0).reshape(num_draws, sims * num, 3)
    if mode == "online":
        idx = d.reshape(7, -1).topk(k, largest=False).indices
        want = vals.reshape(-1, 3)[idx].mean(1)
        torch.testing.assert_close(counts.sum(1), torch.full((7,), float(k), dtype=q.dtype))
    else:
        idx = d.topk(k, dim=2, largest=False).indices  # (B, M, k)
        want = torch.stack([vals[m][idx[:, m]].mean(1) for m in range(num_draws)], 1).mean(1)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_nearest_kernel_through_reactive_ppd(reactive_models):
    model = reactive_models["classification"]()
    x, y = _train()
    abc = ABC(simulations=2, kernel="nearest", k=4)
    rppd = ReactivePPD(model, OneStepChannel(eps=0.3, sigma=0.1), num_samples=2, abc=abc)
    rppd.fit(x, y)
    pred = rppd.predict(x[:5])
    torch.testing.assert_close(pred.probs.sum(1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(pred.ess, torch.full((5,), 4.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="top_k"):
        rppd.predict(x[:2], top_k=2)


# -- bandwidth rule ------------------------------------------------------------------------------


def test_nearest_neighbour_bandwidth_matches_the_brute_force():
    keys = torch.rand(3, 30, 4, generator=_gen(0), dtype=torch.float64)
    flat = keys.reshape(-1, 4)
    d = torch.cdist(flat, flat).fill_diagonal_(math.inf).amin(1)
    for q in (0.1, 0.5, 1.0):
        h = nearest_neighbour_bandwidth(keys, squared_norms(keys), quantile=q, chunk_size=7)
        assert h == pytest.approx(float(torch.quantile(d, q)), rel=1e-9)
    sub = nearest_neighbour_bandwidth(keys, squared_norms(keys), reference_size=20)
    assert float(d.min()) <= sub <= float(d.max())
    # exact copies (an identity component simulated under every draw) are not neighbours
    copies = torch.cat([keys, keys[:1]])
    h = nearest_neighbour_bandwidth(copies, squared_norms(copies), quantile=1.0)
    assert h == pytest.approx(float(d.max()), rel=1e-9)
    with pytest.raises(ValueError, match="every simulation coincides"):
        same = torch.ones(2, 3, 2, dtype=torch.float64).cumsum(1)[:, :1].expand(2, 3, 2)
        nearest_neighbour_bandwidth(same.contiguous(), squared_norms(same.contiguous()))


def test_bandwidth_rule_shrinks_as_simulations_grow(reactive_models):
    model = reactive_models["classification"]()
    x, y = _train(n=10)
    hs = []
    for sims in (1, 8, 64):
        rppd = ReactivePPD(
            model, GaussianChannel(0.3), num_samples=2, generator=_gen(2), abc=ABC(sims)
        )
        hs.append(rppd.fit(x, y).sigma)
    assert hs[0] > hs[1] > hs[2], hs


# -- memory at N = 60,000 ------------------------------------------------------------------------

MEMORY_WORKER = Path(__file__).with_name("abc_memory_worker.py")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_stays_bounded_at_60000_training_inputs():
    out = subprocess.run(
        [sys.executable, str(MEMORY_WORKER), "60000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    fit_growth, stored, predict_growth, b_n_d = map(float, out.stdout.split())
    # A B×N×D tensor (b_n_d MB) would break these bounds many times over.
    assert fit_growth <= 1.05 * stored + 60, (fit_growth, stored)
    assert predict_growth <= 60 < b_n_d / 10, (predict_growth, b_n_d)


# -- save / load, errors --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["gaussian", "nearest"])
def test_save_load_round_trip(kernel, reactive_models, tmp_path):
    model = reactive_models["classification"]()
    x, y = _train()
    channel = PGDChannel(eps=0.3, sigma=0.05, steps=3)
    abc = ABC(simulations=2, kernel=kernel, k=3)
    rppd = ReactivePPD(model, channel, mode="offline", num_samples=2, generator=_gen(2), abc=abc)
    rppd.fit(x, y)
    path = tmp_path / "abc.pt"
    rppd.save(path)
    loaded = ReactivePPD.load(path)  # a PGD channel is not rebuilt: prediction only
    x_adv = x[:5] + 0.05
    torch.testing.assert_close(loaded(x_adv), rppd(x_adv), rtol=0, atol=0)
    assert loaded.abc == abc and loaded.sigma == rppd.sigma and loaded.mode == "offline"
    assert loaded.shared_keys is False and loaded.simulations == 2
    with pytest.raises(RuntimeError, match="without its channel"):
        ReactivePPD.load(path, model=model).fit(x, y)
    refit = ReactivePPD.load(path, model=model, channel=channel)
    assert refit.fit(x, y).is_fitted


def test_abc_bad_inputs(reactive_models):
    model = reactive_models["classification"]()
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="bandwidth must be a positive"):
            ABC(bandwidth=bad)
    with pytest.raises(ValueError, match="simulations must be >= 1"):
        ABC(simulations=0)
    with pytest.raises(TypeError, match="simulations must be an int"):
        ABC(simulations=2.0)
    with pytest.raises(ValueError, match="quantile"):
        ABC(quantile=0.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        ABC(kernel="box")
    with pytest.raises(ValueError, match="k must be >= 1"):
        ABC(k=0)
    with pytest.raises(TypeError, match="without sample"):
        ReactivePPD(model, nn.Identity(), abc=ABC())
    with pytest.raises(TypeError, match="without sample"):
        ReactivePPD(model, object(), abc=ABC())
    with pytest.raises(TypeError, match="abc must be"):
        ReactivePPD(model, GaussianChannel(0.1), abc={"simulations": 2})
    x, y = _train(n=4)
    rppd = ReactivePPD(model, lambda x, y, t, g: x[:1], abc=ABC())
    with pytest.raises(ValueError, match="simulator must return"):
        rppd.fit(x, y)
    rppd = ReactivePPD(model, lambda x, y, t, g: x * math.nan, abc=ABC())
    with pytest.raises(ValueError, match="NaN"):
        rppd.fit(x, y)


def test_abc_regression_predicts_moments_but_refuses_the_exact_log_density(reactive_models):
    model = reactive_models["regression"]()
    x = torch.rand(12, 6, generator=_gen(1), dtype=torch.float64)
    y = torch.randn(12, generator=_gen(2), dtype=torch.float64)
    channel = GaussianChannel(0.3)
    exact = ReactivePPD(model, channel, task="regression", num_samples=2, generator=_gen(3))
    exact.fit(x, y)
    abc = ABC(bandwidth=0.3, per_draw=False)
    rppd = ReactivePPD(
        model,
        _mean_simulator(channel),
        task="regression",
        num_samples=2,
        generator=_gen(3),
        abc=abc,
    )
    rppd.fit(x, y)
    for a, b in zip(exact(x[:4]), rppd(x[:4]), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="not available with abc"):
        rppd.log_prob(x[:2], y[:2])


def test_bfloat16_offsets_and_an_adaptive_attack_through_the_abc_predictive(reactive_models):
    from adv_attacks import pgd

    model = reactive_models["classification"]()
    x, y = _train()
    channel = PGDChannel(eps=0.3, sigma=0.05, steps=2)
    abc = ABC(simulations=2, bandwidth=0.3)
    full = ReactivePPD(model, channel, num_samples=2, generator=_gen(2), abc=abc).fit(x, y)
    split = ReactivePPD(
        model, channel, num_samples=2, generator=_gen(2), abc=abc, offset_dtype=torch.bfloat16
    ).fit(x, y)
    assert split.offset_keys and split.keys.dtype == torch.bfloat16
    # same simulations, stored as bfloat16 offsets from the inputs: within the stated bound
    torch.testing.assert_close(split.keys.double() + split.inputs, full.keys, atol=2e-3, rtol=0)
    torch.testing.assert_close(split(x[:4]).exp(), full(x[:4]).exp(), atol=2e-2, rtol=0)
    x_adv = pgd(full, x[:4], y[:4], eps=0.2, steps=3)  # gradients reach x' through the kernel
    assert bool(((x_adv - x[:4]).flatten(1).norm(dim=1) <= 0.2 + 1e-9).all())
    assert not torch.equal(x_adv, x[:4])
