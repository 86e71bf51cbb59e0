"""ReactivePPD against eqs. 4 and 5 written out in float64 on a tiny Bayesian MLP (SPEC §5)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adv_reactive.draw_predictive as draw_predictive
from adv_attacks import one_step, pgd
from adv_channels import GaussianChannel, IdentityChannel, OneStepChannel, PGDChannel
from adv_reactive import ReactivePPD
from bnn_core import get_sample_modes

SHAPE = (1, 2, 3)
MODES = ["online", "offline"]
KINDS = ["identity", "one_step"]
TASKS = ["classification", "regression"]
NUM_DRAWS = 3
EPS = 0.4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _train(task: str, n: int = 30, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    x = torch.rand(n, *SHAPE, generator=g, dtype=torch.float64)
    if task == "classification":
        return x, torch.randint(0, 3, (n,), generator=g)
    return x.flatten(1), torch.randn(n, generator=g, dtype=torch.float64)


def _near(x: torch.Tensor, scale: float, n: int = 5, seed: int = 3) -> torch.Tensor:
    """Test inputs near the first ``n`` training inputs (kept in [0, 1] for attacks)."""
    g = _gen(seed)
    noise = torch.randn(x[:n].shape, generator=g, dtype=x.dtype).to(x.device)
    return (x[:n] + scale * noise).clamp(0.0, 1.0)


def _channel(kind: str, task: str, sigma: float) -> torch.nn.Module:
    if kind == "identity":
        return IdentityChannel(sigma)
    return OneStepChannel(
        eps=EPS, sigma=sigma, objective="nll" if task == "classification" else "mse"
    )


def _fit(model, kind: str, task: str, sigma: float, mode: str = "online", **kwargs) -> ReactivePPD:
    x, y = _train(task)
    fit_kwargs = {k: kwargs.pop(k) for k in ("batch_size", "progress") if k in kwargs}
    rppd = ReactivePPD(
        model,
        _channel(kind, task, sigma),
        mode=mode,
        num_samples=NUM_DRAWS,
        task=task,
        generator=_gen(2),
        **kwargs,
    )
    return rppd.fit(x, y, **fit_kwargs)


def _by_hand_outputs(model, draws, x, by_hand) -> torch.Tensor:
    return torch.stack([by_hand(model, draws, m, x) for m in range(NUM_DRAWS)])  # (M, N, C|1)


def _reference_keys(kind, task, model, draws, x, y, by_hand, noise_var=None) -> torch.Tensor:
    """(M, N, D) channel means: x_i, or adv_attacks' one-step of x_i under draw m alone."""
    flat = x.reshape(x.shape[0], -1)
    if kind == "identity":
        return flat.expand(NUM_DRAWS, *flat.shape)
    keys = []
    for m in range(NUM_DRAWS):
        if task == "classification":

            def predictive(t, m=m):
                return by_hand(model, draws, m, t)

            step = one_step(predictive, x, y, eps=EPS, objective="nll")
        else:

            def predictive(t, m=m):
                mean = by_hand(model, draws, m, t)
                return mean, torch.full_like(mean, noise_var)

            step = one_step(predictive, x, y, eps=EPS, objective="mse")
        keys.append(step.reshape(flat.shape))
    return torch.stack(keys)


def _reference(rppd, kind, task, model, by_hand, eqs_4_5, x_adv, mode):
    x, y = _train(task)
    draws = rppd.draws
    noise_var = None if task == "classification" else float(model.likelihood.variance.detach())
    keys = _reference_keys(kind, task, model, draws, x, y, by_hand, noise_var)
    outs = _by_hand_outputs(model, draws, x, by_hand)
    preds = torch.softmax(outs, dim=-1) if task == "classification" else outs
    return eqs_4_5(x_adv, keys, preds, rppd.sigma, mode), keys, outs, noise_var


def _expected_ess(weights: torch.Tensor, shared: bool, mode: str) -> torch.Tensor:
    """ESS of the weights (B, M, N) as the aggregation defines it (1 / Σ w²)."""
    if mode == "offline":
        per_draw = weights * weights.shape[1]  # each draw's weights sum to 1
        return (1.0 / per_draw.square().sum(2)).mean(1)
    if shared:  # the M copies of a shared key are one key
        return 1.0 / weights.sum(1).square().sum(1)
    return 1.0 / weights.square().sum(dim=(1, 2))


# -- against eqs. 4 and 5 --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_classification_matches_eqs_4_and_5(kind, mode, reactive_models, by_hand, eqs_4_5):
    model = reactive_models["classification"]()
    rppd = _fit(model, kind, "classification", 0.4, mode)
    x_adv = _near(_train("classification")[0], 0.1)
    ref, keys, _, _ = _reference(rppd, kind, "classification", model, by_hand, eqs_4_5, x_adv, mode)
    pred = rppd.predict(x_adv, top_k=4)
    tol = {"rtol": 1e-9, "atol": 1e-10}
    torch.testing.assert_close(pred.probs, ref["output"], **tol)
    torch.testing.assert_close(rppd(x_adv), ref["output"].log(), **tol)
    torch.testing.assert_close(pred.log_marginal_likelihood, ref["likelihood"].log(), **tol)
    lik = ref["likelihood"]
    torch.testing.assert_close(pred.draw_weights, lik / lik.sum(1, keepdim=True), **tol)
    shared = kind == "identity"
    torch.testing.assert_close(pred.ess, _expected_ess(ref["weights"], shared, mode), **tol)
    top_w, top_i = ref["posterior"].topk(4, dim=1)
    torch.testing.assert_close(pred.top_k_indices, top_i)
    torch.testing.assert_close(pred.top_k_weights, top_w, **tol)
    assert rppd.shared_keys is shared
    if not shared:
        torch.testing.assert_close(rppd.keys, keys, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_regression_matches_eqs_4_and_5(kind, mode, reactive_models, by_hand, eqs_4_5):
    model = reactive_models["regression"]()
    rppd = _fit(model, kind, "regression", 0.4, mode)
    x_train, y_train = _train("regression")
    x_adv = _near(x_train, 0.1)
    ref, _, outs, noise_var = _reference(
        rppd, kind, "regression", model, by_hand, eqs_4_5, x_adv, mode
    )
    w, f = ref["weights"], outs  # (B, M, N), (M, N, 1)
    mean = torch.einsum("bmi,mik->bk", w, f)
    var = noise_var + torch.einsum("bmi,mik->bk", w, f.square()) - mean.square()
    y = y_train[:5] + 0.5
    comp = torch.distributions.Normal(f[..., 0][None], math.sqrt(noise_var))
    log_p = (w * comp.log_prob(y[:, None, None]).exp()).sum(dim=(1, 2)).log()

    got_mean, got_var = rppd(x_adv)
    tol = {"rtol": 1e-9, "atol": 1e-10}
    assert got_mean.shape == (5, 1) and got_var.shape == (5, 1)  # the model's output shape
    torch.testing.assert_close(got_mean, mean, **tol)
    torch.testing.assert_close(got_var, var, **tol)
    torch.testing.assert_close(rppd.log_prob(x_adv, y), log_p, **tol)
    torch.testing.assert_close(rppd.nll(x_adv, y), -log_p.mean(), **tol)
    assert rppd.noise_var == pytest.approx(noise_var)


@pytest.mark.parametrize("task", TASKS)
def test_one_step_keys_are_adv_attacks_one_step_under_each_draw(task, reactive_models, by_hand):
    model = reactive_models[task]()
    rppd = _fit(model, "one_step", task, 0.3)
    x, y = _train(task)
    noise_var = None if task == "classification" else float(model.likelihood.variance.detach())
    keys = _reference_keys("one_step", task, model, rppd.draws, x, y, by_hand, noise_var)
    torch.testing.assert_close(rppd.keys, keys, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rppd.inputs, x.reshape(x.shape[0], -1))
    # The keys really depend on the draw (else the per-draw path would not be exercised).
    assert (rppd.keys[0] - rppd.keys[1]).abs().max() > 1e-2


@pytest.mark.parametrize("task", TASKS)
def test_online_equals_offline_for_the_identity_channel(task, reactive_models):
    rppd = _fit(reactive_models[task](), "identity", task, 0.4)
    x_adv = _near(_train(task)[0], 0.1)
    online = rppd(x_adv)
    rppd.mode = "offline"
    offline = rppd(x_adv)
    torch.testing.assert_close(offline, online, rtol=1e-12, atol=1e-12)
    if task == "regression":
        y = torch.zeros(5, dtype=torch.float64)
        rppd.mode = "online"
        log_on = rppd.log_prob(x_adv, y)
        rppd.mode = "offline"
        torch.testing.assert_close(rppd.log_prob(x_adv, y), log_on, rtol=1e-12, atol=1e-12)


def test_online_differs_from_offline_for_the_one_step_channel(reactive_models):
    # Guards the test above: with per-draw keys the draws are reweighted online.
    rppd = _fit(reactive_models["classification"](), "one_step", "classification", 0.2)
    x_adv = _near(_train("classification")[0], 0.1)
    online = rppd.predict(x_adv)
    rppd.mode = "offline"
    offline = rppd.predict(x_adv)
    assert (online.probs - offline.probs).abs().max() > 1e-3
    assert (online.draw_weights - 1.0 / NUM_DRAWS).abs().max() > 1e-2


# -- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_small_sigma_picks_the_nearest_training_inputs_prediction(kind, mode, reactive_models):
    rppd = _fit(reactive_models["classification"](), kind, "classification", 1e-3, mode)
    keys = rppd.keys.expand(NUM_DRAWS, *rppd.keys.shape[-2:])  # (M, N, D)
    probs = rppd.values  # (M, N, C)
    # Each test input sits next to the key of one (draw, input) pair.
    g = _gen(4)
    m0 = torch.randint(0, NUM_DRAWS, (5,), generator=g)
    i0 = torch.randperm(keys.shape[1], generator=g)[:5]
    x_adv = keys[m0, i0] + 1e-3 * torch.randn(5, keys.shape[2], generator=g, dtype=keys.dtype)
    d2 = (x_adv[:, None, None, :] - keys[None]).square().sum(-1)  # (B, M, N)
    nearest = d2.argmin(dim=2)  # per draw
    if mode == "online" and kind == "one_step":
        expected = probs[m0, i0]  # the single nearest (draw, input) pair
    else:
        expected = torch.stack([probs[m, nearest[:, m]] for m in range(NUM_DRAWS)]).mean(0)
    pred = rppd.predict(x_adv.reshape(5, *SHAPE))
    torch.testing.assert_close(pred.probs, expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(pred.ess, torch.ones(5, dtype=pred.ess.dtype), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_large_sigma_gives_the_average_prediction(kind, mode, reactive_models):
    rppd = _fit(reactive_models["classification"](), kind, "classification", 1e4, mode)
    x_adv = _near(_train("classification")[0], 0.3)
    pred = rppd.predict(x_adv)
    average = rppd.values.mean(dim=(0, 1))
    torch.testing.assert_close(pred.probs, average.expand(5, -1), rtol=1e-6, atol=1e-8)
    n = rppd.num_train
    full = n if (kind == "identity" or mode == "offline") else NUM_DRAWS * n
    torch.testing.assert_close(pred.ess, torch.full((5,), float(full), dtype=pred.ess.dtype))


@pytest.mark.parametrize("sigma", [1e-3, 0.1, 0.4, 3.0, 1e3])
@pytest.mark.parametrize("kind", KINDS)
def test_ess_is_between_one_and_the_number_of_weighted_keys(kind, sigma, reactive_models):
    rppd = _fit(reactive_models["classification"](), kind, "classification", sigma)
    x_adv = _near(_train("classification")[0], 0.2)
    n_keys = rppd.num_train * (1 if kind == "identity" else NUM_DRAWS)
    for mode in MODES:
        rppd.mode = mode
        ess = rppd.predict(x_adv).ess
        assert bool((ess >= 1 - 1e-9).all() and (ess <= n_keys + 1e-6).all()), ess


# -- gradients and adaptive attacks ---------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_with_respect_to_the_test_input(kind, task, reactive_models):
    rppd = _fit(reactive_models[task](), kind, task, 0.5)
    x_adv = _near(_train(task)[0], 0.1, n=2).requires_grad_(True)
    assert torch.autograd.gradcheck(rppd, (x_adv,))
    if task == "regression":
        y = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(rppd.log_prob, (x_adv, y), fast_mode=True)


def test_adaptive_pgd_through_the_defence_stays_in_its_ball(reactive_models):
    rppd = _fit(reactive_models["classification"](), "one_step", "classification", 0.3)
    x, y = _train("classification")
    x_test, y_test = _near(x, 0.05, n=8), y[:8]
    params = {n: p.detach().clone() for n, p in rppd.named_parameters()}
    x_adv = pgd(rppd, x_test, y_test, eps=0.3, steps=10, random_start=False)
    dist = (x_adv - x_test).flatten(1).norm(dim=1)
    assert bool((dist <= 0.3 + 1e-9).all()) and bool((dist > 0.1).all())
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # The attack targets the defended predictor: its NLL goes up.
    assert rppd.nll(x_adv, y_test) > rppd.nll(x_test, y_test) + 0.05
    for n, p in rppd.named_parameters():
        assert torch.equal(p, params[n]) and p.requires_grad


@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_fit_with_the_kernel_matches_torch_and_the_cpu(kind, reactive_models):
    model = reactive_models["classification"]().cuda()
    x, y = (t.cuda() for t in _train("classification"))
    fits = {}
    for backend in ("auto", "torch"):  # "auto" is the fused Triton kernel on CUDA
        gen = torch.Generator(device="cuda").manual_seed(2)
        rppd = ReactivePPD(
            model,
            _channel(kind, "classification", 0.4),
            num_samples=NUM_DRAWS,
            backend=backend,
            generator=gen,
        )
        fits[backend] = rppd.fit(x, y)
    x_adv = _near(x, 0.1).requires_grad_(True)
    outs, grads = {}, {}
    for backend, rppd in fits.items():
        outs[backend] = rppd(x_adv)
        (grads[backend],) = torch.autograd.grad(outs[backend][:, 0].sum(), x_adv)
    torch.testing.assert_close(outs["auto"], outs["torch"], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grads["auto"], grads["torch"], rtol=1e-9, atol=1e-10)
    on_cpu = fits["torch"].cpu()
    torch.testing.assert_close(on_cpu(x_adv.detach().cpu()), outs["torch"].detach().cpu())


# -- fit: memory, state, batches ------------------------------------------------------------


def test_fit_does_not_change_the_model(reactive_models):
    model = reactive_models["classification"]().train()
    model[3].sample_mode = "mean"
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    modes = get_sample_modes(model)
    rppd = _fit(model, "one_step", "classification", 0.3)
    assert model.training and all(m.training for m in model.modules())
    assert get_sample_modes(model) == modes
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and p.requires_grad and p.grad is None
    assert set(rppd.draws) == {"1.weight", "1.bias"}  # the layer in mean mode uses its mean


def test_fit_is_independent_of_the_batch_size_and_seeded(reactive_models):
    model = reactive_models["classification"]()
    x, y = _train("classification")
    fits = [
        ReactivePPD(
            model, _channel("one_step", "classification", 0.3), num_samples=2, generator=_gen(5)
        ).fit(x, y, batch_size=b)
        for b in (7, 1000)
    ]
    for name in ("keys", "key_sq_norms", "values"):
        torch.testing.assert_close(getattr(fits[0], name), getattr(fits[1], name))


def test_fit_reuses_the_attacks_forward_pass_for_the_values(reactive_models, monkeypatch):
    calls = []
    original = draw_predictive.DrawPredictive.model_output

    def counted(self, x):
        calls.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(draw_predictive.DrawPredictive, "model_output", counted)
    _fit(reactive_models["classification"](), "one_step", "classification", 0.3, batch_size=16)
    assert len(calls) == NUM_DRAWS * 2  # one forward per (draw, batch of 16 of 30 inputs)


def test_identity_keys_are_the_inputs_stored_once(reactive_models):
    rppd = _fit(reactive_models["classification"](), "identity", "classification", 0.3)
    x, _ = _train("classification")
    assert rppd.keys.shape == (30, 6) and rppd.inputs is rppd.keys
    torch.testing.assert_close(rppd.keys, x.flatten(1))
    torch.testing.assert_close(rppd.key_sq_norms, x.flatten(1).square().sum(1))


def test_progress_bar_can_be_shown(reactive_models, capsys):
    _fit(reactive_models["classification"](), "identity", "classification", 0.3, progress=True)
    assert "ReactivePPD.fit" in capsys.readouterr().err


def test_to_moves_the_fitted_state_and_the_draws(reactive_models):
    rppd = _fit(reactive_models["classification"](), "one_step", "classification", 0.3)
    rppd.float()
    assert rppd.keys.dtype == torch.float32 and rppd.values.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in rppd.draws.values())
    assert rppd(torch.rand(2, *SHAPE)).dtype == torch.float32


def test_purified_inputs_are_the_training_inputs_with_the_largest_weight(reactive_models):
    rppd = _fit(reactive_models["classification"](), "one_step", "classification", 0.05)
    x, _ = _train("classification")
    x_adv = rppd.keys[1, 3:7].reshape(4, *SHAPE)  # one-step attacks of inputs 3..6 (draw 1)
    found = rppd.purified_inputs(x_adv, top_k=3)
    assert found.inputs.shape == (4, 3, *SHAPE)
    torch.testing.assert_close(found.inputs, x[found.indices])
    assert bool((found.weights[:, :-1] >= found.weights[:, 1:]).all())
    assert torch.equal(found.indices[:, 0], torch.arange(3, 7))  # the attacked inputs


MEMORY_WORKER = Path(__file__).with_name("fit_memory_worker.py")
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to read peak memory"
)


def _fit_memory(num_train: int, num_draws: int) -> tuple[float, float, float]:
    """Peak RSS growth of a one-step fit on MNIST-shaped inputs, stored MB, peak RSS MB."""
    out = subprocess.run(
        [sys.executable, str(MEMORY_WORKER), str(num_train), str(num_draws)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr
    growth, stored, peak = map(float, out.stdout.split())
    return growth, stored, peak


@needs_proc
def test_fit_memory_is_the_stored_state_plus_a_batch():
    growth, stored, _ = _fit_memory(9000, 10)  # keys alone: 282 MB
    # Any temporary copy of the keys would break this bound.
    assert growth <= 1.05 * stored + 40, (growth, stored)


@pytest.mark.slow
@needs_proc
def test_full_mnist_scale_fit_fits_in_8_gib():
    growth, stored, peak = _fit_memory(60_000, 10)  # keys: 1.9 GB
    assert growth <= 1.05 * stored + 40, (growth, stored)
    assert peak < 8 * 1024


# -- save / load ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "task"), [("identity", "regression"), ("one_step", "classification")]
)
def test_save_load_round_trip(kind, task, reactive_models, tmp_path):
    model = reactive_models[task]()
    rppd = _fit(model, kind, task, 0.4, mode="offline")
    path = tmp_path / "reactive.pt"
    rppd.save(path)
    payload = torch.load(path, weights_only=True)  # plain data and tensors only
    assert payload["sigma"] == 0.4 and payload["mode"] == "offline"

    loaded = ReactivePPD.load(path)  # no model: prediction only; channel rebuilt
    x_adv = _near(_train(task)[0], 0.1)
    expected, got = rppd(x_adv), loaded(x_adv)
    for a, b in zip(
        expected if task == "regression" else (expected,),
        got if task == "regression" else (got,),
        strict=True,
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert loaded.mode == "offline" and loaded.sigma == 0.4 and loaded.num_samples == NUM_DRAWS
    assert type(loaded.channel) is type(rppd.channel)
    assert loaded.shared_keys is rppd.shared_keys
    for k, v in rppd.draws.items():
        torch.testing.assert_close(loaded.draws[k], v, rtol=0, atol=0)
    if task == "regression":
        y = torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(loaded.log_prob(x_adv, y), rppd.log_prob(x_adv, y))
    with pytest.raises(RuntimeError, match="without a model"):
        loaded.fit(*_train(task))

    refit = ReactivePPD.load(path, model=model)  # with the model: can be fitted again
    refit.fit(*_train(task))
    assert refit.is_fitted


def test_load_errors(reactive_models, tmp_path):
    rppd = _fit(reactive_models["classification"](), "identity", "classification", 0.4)
    path = tmp_path / "reactive.pt"
    rppd.save(path)
    with pytest.raises(ValueError, match="sigma"):
        ReactivePPD.load(path, channel=GaussianChannel(0.5))
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file saved by ReactivePPD.save"):
        ReactivePPD.load(tmp_path / "other.pt")


# -- errors ---------------------------------------------------------------------------------


def test_sigma_must_be_positive(reactive_models):
    model = reactive_models["classification"]()
    for channel in (IdentityChannel(), GaussianChannel(0.0), OneStepChannel(eps=0.5, sigma=0.0)):
        with pytest.raises(ValueError, match="sigma > 0"):
            ReactivePPD(model, channel)


def test_simulator_only_channel_is_refused(reactive_models):
    with pytest.raises(ValueError, match="PGDChannel has no density.*likelihood-free"):
        ReactivePPD(reactive_models["classification"](), PGDChannel(eps=0.5, sigma=0.1))


def test_empty_training_set(reactive_models):
    rppd = ReactivePPD(reactive_models["classification"](), GaussianChannel(0.3))
    with pytest.raises(ValueError, match="x_train is empty"):
        rppd.fit(torch.zeros(0, *SHAPE, dtype=torch.float64))


def test_predict_before_fit(reactive_models):
    rppd = ReactivePPD(reactive_models["classification"](), GaussianChannel(0.3))
    with pytest.raises(RuntimeError, match="not fitted"):
        rppd(torch.rand(2, *SHAPE, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="not fitted"):
        rppd.save("unused.pt")


def test_test_input_shape_must_match_the_training_inputs(reactive_models):
    rppd = _fit(reactive_models["classification"](), "identity", "classification", 0.3)
    with pytest.raises(ValueError, match=r"x_adv must have shape \(B, 1, 2, 3\)"):
        rppd(torch.rand(2, 1, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x_adv must have shape"):
        rppd(torch.rand(2, 6, dtype=torch.float64))
    with pytest.raises(TypeError, match="x_adv"):
        rppd(torch.zeros(2, *SHAPE, dtype=torch.long))
    with pytest.raises(ValueError, match="x_adv holds NaN"):
        rppd(torch.full((2, *SHAPE), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="x_adv holds NaN or infinite"):
        rppd.predict(torch.full((2, *SHAPE), float("inf"), dtype=torch.float64))
    # a float32 query against the float64 fit: refused, not half-float64 (key norms)
    with pytest.raises(TypeError, match="x_adv is torch.float32 but the fitted state is"):
        rppd.predict(torch.rand(2, *SHAPE))


def test_bad_options_and_training_data(reactive_models):
    model = reactive_models["classification"]()
    channel = GaussianChannel(0.3)
    with pytest.raises(ValueError, match="mode"):
        ReactivePPD(model, channel, mode="both")
    with pytest.raises(ValueError, match="num_samples"):
        ReactivePPD(model, channel, num_samples=0)
    with pytest.raises(ValueError, match="backend"):
        ReactivePPD(model, channel, backend="cuda")
    with pytest.raises(TypeError, match="model"):
        ReactivePPD(lambda x: x, channel)
    with pytest.raises(ValueError, match="likelihood"):
        ReactivePPD(model, channel, task="regression")
    with pytest.raises(TypeError, match="channel"):
        ReactivePPD(model, torch.nn.Identity())
    rppd = ReactivePPD(model, channel)
    x, y = _train("classification")
    with pytest.raises(TypeError, match="x_train"):
        rppd.fit(x.float())  # the model is float64
    with pytest.raises(ValueError, match="y_train"):
        rppd.fit(x, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        rppd.fit(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="batch_size"):
        rppd.fit(x, batch_size=0)
    rppd.fit(x)
    with pytest.raises(ValueError, match="class indices"):
        rppd.log_prob(x[:2], torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="top_k"):
        rppd.predict(x[:2], top_k=31)
