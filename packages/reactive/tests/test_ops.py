"""The reactive aggregation (PyTorch back end) against float64 brute forces of eqs. 4 and 5."""

from __future__ import annotations

import math

import pytest
import torch

from adv_reactive import (
    AggregationMode,
    Backend,
    ReactiveAggregate,
    reactive_aggregate,
    squared_norms,
)
from adv_reactive._triton import interpreting

MODES = ["online", "offline"]
LAYOUTS = [pytest.param(False, id="shared_keys"), pytest.param(True, id="per_draw_keys")]
DTYPES = [
    pytest.param(torch.float64, 1e-12, 1e-10, id="float64"),
    pytest.param(torch.float32, 1e-5, 1e-4, id="float32"),
]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _torch(*args: object, **kwargs: object) -> ReactiveAggregate:
    return reactive_aggregate(*args, backend="torch", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_matches_brute_force(
    mode: str, per_draw: bool, dtype: torch.dtype, atol: float, rtol: float, problem, reference
) -> None:
    q, k, v = problem(7, 150, 9, 4, 3, per_draw=per_draw, generator=_gen(), dtype=dtype)
    res = _torch(q, k, v, sigma=0.4, mode=mode, chunk_size=32)
    ref = reference(q, k, v, 0.4, mode)
    assert res.output.dtype == dtype
    torch.testing.assert_close(res.output, ref["output"].to(dtype), atol=atol, rtol=rtol)
    torch.testing.assert_close(
        res.log_normalizer, ref["log_normalizer"].to(dtype), atol=atol, rtol=rtol
    )
    torch.testing.assert_close(res.ess, ref["ess"].to(dtype), atol=atol, rtol=rtol)
    assert res.top_k_indices is None and res.top_k_weights is None


def test_online_and_offline_differ_with_per_draw_keys(problem) -> None:
    # Guards the test above: the two normalisations must actually be different here.
    q, k, v = problem(5, 40, 6, 3, 4, per_draw=True, generator=_gen(1), dtype=torch.float64)
    on = _torch(q, k, v, sigma=0.3, mode="online").output
    off = _torch(q, k, v, sigma=0.3, mode="offline").output
    assert (on - off).abs().max() > 1e-3


@pytest.mark.parametrize("values_layout", ["per_draw_values", "mean_values"])
def test_online_equals_offline_when_keys_do_not_depend_on_the_draw(
    values_layout: str, problem
) -> None:
    q, k, v = problem(6, 80, 5, 3, 4, per_draw=False, generator=_gen(), dtype=torch.float64)
    vals = v if values_layout == "per_draw_values" else v.mean(0)
    on = _torch(q, k, vals, sigma=0.5, mode="online")
    off = _torch(q, k, vals, sigma=0.5, mode="offline")
    torch.testing.assert_close(on.output, off.output, rtol=1e-12, atol=1e-14)
    # The same keys repeated per draw (a channel that ignores β) go through the per-draw path.
    repeated = k.expand(v.shape[0], *k.shape)
    for mode in MODES:
        res = _torch(q, repeated, v, sigma=0.5, mode=mode)
        torch.testing.assert_close(res.output, on.output, rtol=1e-12, atol=1e-14)


def test_shared_keys_accept_averaged_values(problem) -> None:
    q, k, v = problem(4, 30, 5, 3, 5, per_draw=False, generator=_gen(), dtype=torch.float64)
    full = _torch(q, k, v, sigma=0.5)
    mean = _torch(q, k, v.mean(0), sigma=0.5)
    torch.testing.assert_close(full.output, mean.output)
    assert full.log_normalizer.shape == (4, 5)
    assert mean.log_normalizer.shape == (4, 1)
    torch.testing.assert_close(full.log_normalizer, mean.log_normalizer.expand(4, 5))


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_small_sigma_picks_the_nearest_key(mode: str, per_draw: bool, problem) -> None:
    q, k, v = problem(6, 50, 4, 3, 3, per_draw=per_draw, generator=_gen(2))
    res = _torch(q, k, v, sigma=1e-3, mode=mode)
    keys = k if per_draw else k.expand(v.shape[0], *k.shape)
    dist = torch.cdist(q.double(), keys.double())  # (M, B, N)
    if not per_draw:  # the nearest key, with the values averaged over draws
        expected = v.mean(0)[dist[0].argmin(1)]
    elif mode == "online":  # the nearest (m, i) pair overall
        flat = dist.permute(1, 0, 2).flatten(1).argmin(1)
        expected = v.flatten(0, 1)[flat]
    else:  # each draw's nearest key, averaged over draws
        nearest = dist.argmin(2)  # (M, B)
        expected = torch.stack([v[m, nearest[m]] for m in range(v.shape[0])]).mean(0)
    torch.testing.assert_close(res.output, expected, atol=1e-6, rtol=0)
    expected_ess = torch.full_like(res.ess, 1.0)
    torch.testing.assert_close(res.ess, expected_ess, atol=1e-4, rtol=0)


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_large_sigma_averages_the_values(mode: str, per_draw: bool, problem) -> None:
    q, k, v = problem(5, 60, 4, 3, 3, per_draw=per_draw, generator=_gen(3))
    q, k, v = q.double(), k.double(), v.double()
    res = _torch(q, k, v, sigma=1e4, mode=mode)
    expected = v.mean((0, 1)).expand(5, -1)
    torch.testing.assert_close(res.output, expected, atol=1e-7, rtol=0)
    keys_counted = 60 * (3 if per_draw and mode == "online" else 1)
    torch.testing.assert_close(res.ess, torch.full_like(res.ess, keys_counted), rtol=1e-6, atol=0)


def _sphere_problem(
    dtype: torch.dtype, score_scale: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Keys all at squared distance ~ 2σ²·score_scale from the query, spread by O(1) in score.

    Every score is about ``−score_scale``, far below where ``exp`` underflows, while the
    weights stay non-trivial.
    """
    dim, num_keys = 6, 40
    sigma = 0.05
    directions = torch.randn(num_keys, dim, generator=gen, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)
    base = math.sqrt(2 * sigma**2 * score_scale)
    jitter = torch.rand(num_keys, 1, generator=gen, dtype=torch.float64) * 3.0  # score units
    radius = torch.sqrt(base**2 + 2 * sigma**2 * jitter)
    q = torch.zeros(2, dim, dtype=torch.float64)
    q[1, 0] = sigma**2 / base  # a second query off-centre, shifting scores by up to 1
    keys = directions * radius
    values = torch.softmax(torch.randn(1, num_keys, 3, generator=gen, dtype=torch.float64), -1)
    return q.to(dtype), keys.to(dtype), values.to(dtype), sigma


@pytest.mark.parametrize(
    ("dtype", "score_scale", "rtol"),
    [
        pytest.param(torch.float64, 1e6, 1e-6, id="float64-scores_1e6"),
        pytest.param(torch.float32, 1e4, 2e-2, id="float32-scores_1e4"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_extreme_sigma_stays_right_in_log_space(
    mode: str, dtype: torch.dtype, score_scale: float, rtol: float, reference
) -> None:
    q, k, v, sigma = _sphere_problem(dtype, score_scale, _gen(4))
    scores = -(torch.cdist(q, k) ** 2) / (2 * sigma**2)
    assert scores.max() < -0.9 * score_scale
    assert torch.exp(scores.float()).sum() == 0  # plain exp underflows: not a vacuous test
    ref = reference(q, k, v, sigma, mode)
    assert (ref["ess"] > 2).all()  # non-trivial weights
    res = _torch(q, k, v, sigma=sigma, mode=mode, chunk_size=7)
    torch.testing.assert_close(res.output, ref["output"].to(dtype), rtol=rtol, atol=rtol)
    torch.testing.assert_close(res.ess, ref["ess"].to(dtype), rtol=rtol * 10, atol=0)
    torch.testing.assert_close(
        res.log_normalizer, ref["log_normalizer"].to(dtype), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("mode", MODES)
def test_tiny_sigma_float32_nearest_value(mode: str, problem, reference) -> None:
    # Scores around -1e6 in float32: the weights are one-hot on the nearest key.
    q, k, v = problem(8, 300, 10, 3, 2, per_draw=True, generator=_gen(5))
    res = _torch(q, k, v, sigma=1e-3, mode=mode)
    ref = reference(q, k, v, 1e-3, mode)
    assert ref["log_normalizer"].max() < -1e4
    torch.testing.assert_close(res.output, ref["output"].float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.log_normalizer, ref["log_normalizer"].float(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_float64_queries_with_float32_keys_are_float64_throughout(
    mode: str, problem, reference
) -> None:
    # the key norms were computed in the keys' float32: 0.03 nats off at sigma 0.02, D 784
    q, k, v = problem(4, 50, 784, 3, 2, per_draw=True, generator=_gen(8))
    q64 = q.double()
    res = _torch(q64, k, v, sigma=0.02, mode=mode)
    ref = reference(q64, k.double(), v.double(), 0.02, mode)
    assert res.log_normalizer.dtype == torch.float64
    torch.testing.assert_close(res.log_normalizer, ref["log_normalizer"], rtol=1e-9, atol=1e-6)
    torch.testing.assert_close(squared_norms(k, dtype=torch.float64), k.double().square().sum(-1))
    with pytest.raises(ValueError, match="dtype must be"):
        squared_norms(k, dtype=torch.float16)


def test_sigma_too_small_for_float32_is_named(problem) -> None:
    q, k, v = problem(2, 20, 784, 3, 2, per_draw=False, generator=_gen(9))
    with pytest.raises(ValueError, match="too small for float32"):
        _torch(q, k, v, sigma=1e-25)
    with pytest.raises(ValueError, match=r"overflow torch.float32 at sigma=1e-19"):
        _torch(q, k, v, sigma=1e-19)
    res = _torch(q.double(), k.double(), v.double(), sigma=1e-19)  # float64 copes
    assert torch.isfinite(res.output).all()


@pytest.mark.parametrize(
    "chunk_size",
    [pytest.param(c, id=f"chunk_{c}") for c in (1, 63, 500, 1000, 1999)],
)
@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_streaming_equals_one_chunk(mode: str, per_draw: bool, chunk_size: int, problem) -> None:
    num_keys = 1999 if chunk_size != 1 else 130
    q, k, v = problem(
        5, num_keys, 8, 3, 2, per_draw=per_draw, generator=_gen(6), dtype=torch.float64
    )
    whole = _torch(q, k, v, sigma=0.3, mode=mode, chunk_size=num_keys, top_k=4)
    part = _torch(q, k, v, sigma=0.3, mode=mode, chunk_size=chunk_size, top_k=4)
    for got, want in zip(part, whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_top_k_is_the_posterior_over_training_inputs(
    mode: str, per_draw: bool, problem, reference
) -> None:
    q, k, v = problem(6, 90, 5, 3, 3, per_draw=per_draw, generator=_gen(7), dtype=torch.float64)
    res = _torch(q, k, v, sigma=0.3, mode=mode, top_k=5, chunk_size=16)
    posterior = reference(q, k, v, 0.3, mode)["posterior"]
    torch.testing.assert_close(posterior.sum(1), torch.ones(6, dtype=torch.float64))
    want_w, want_i = posterior.topk(5, dim=1)
    assert torch.equal(res.top_k_indices, want_i)
    torch.testing.assert_close(res.top_k_weights, want_w)
    everything = _torch(q, k, v, sigma=0.3, mode=mode, top_k=90)
    torch.testing.assert_close(everything.top_k_weights.sum(1), torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_queries(mode: str, per_draw: bool, problem) -> None:
    q, k, v = problem(3, 25, 4, 3, 2, per_draw=per_draw, generator=_gen(8), dtype=torch.float64)

    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = _torch(x, k, v, sigma=0.6, mode=mode, chunk_size=7)
        return res.output, res.log_normalizer

    assert torch.autograd.gradcheck(fn, (q.clone().requires_grad_(),))


@pytest.mark.parametrize("per_draw", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_gradient_matches_brute_force_autograd(
    mode: str, per_draw: bool, problem, reference
) -> None:
    q, k, v = problem(4, 40, 5, 3, 3, per_draw=per_draw, generator=_gen(9), dtype=torch.float64)
    w_out = torch.randn(4, 3, dtype=torch.float64, generator=_gen(10))
    w_lse = torch.randn(4, 3, dtype=torch.float64, generator=_gen(11))
    x = q.clone().requires_grad_()
    res = _torch(x, k, v, sigma=0.5, mode=mode, chunk_size=9)
    (got,) = torch.autograd.grad((res.output * w_out).sum() + (res.log_normalizer * w_lse).sum(), x)
    x_ref = q.clone().requires_grad_()
    ref = reference(x_ref, k, v, 0.5, mode)
    loss = (ref["output"] * w_out).sum() + (ref["log_normalizer"] * w_lse).sum()
    (want,) = torch.autograd.grad(loss, x_ref)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    assert not res.ess.requires_grad


def test_gradient_float32_nll_of_the_reactive_ppd(problem, reference) -> None:
    # An adaptive attack's use: the NLL of the defended predictor, in float32.
    q, k, v = problem(4, 300, 6, 3, 2, per_draw=True, generator=_gen(12))
    y = torch.tensor([0, 1, 2, 0])
    x = q.clone().requires_grad_()
    out = _torch(x, k, v, sigma=0.4, chunk_size=64).output
    (got,) = torch.autograd.grad(-out[torch.arange(4), y].log().sum(), x)
    x_ref = q.double().requires_grad_()
    ref = reference(x_ref, k, v, 0.4, "online")["output"]
    (want,) = torch.autograd.grad(-ref[torch.arange(4), y].log().sum(), x_ref)
    torch.testing.assert_close(got, want.float(), rtol=1e-3, atol=1e-4)


def test_half_precision_inputs_compute_in_float32(problem, reference) -> None:
    q, k, v = problem(4, 64, 8, 3, 2, per_draw=True, generator=_gen(13), dtype=torch.float16)
    res = _torch(q, k, v, sigma=0.5)
    ref = reference(q, k, v, 0.5, "online")
    assert res.output.dtype == torch.float32
    torch.testing.assert_close(res.output, ref["output"].float(), atol=1e-5, rtol=1e-4)


def test_cached_key_norms_are_used(problem) -> None:
    q, k, v = problem(3, 20, 4, 3, 2, per_draw=True, generator=_gen(14), dtype=torch.float64)
    norms = squared_norms(k)
    torch.testing.assert_close(norms, (k**2).sum(-1))
    a = _torch(q, k, v, sigma=0.5, key_sq_norms=norms)
    b = _torch(q, k, v, sigma=0.5)
    torch.testing.assert_close(a.output, b.output, rtol=0, atol=0)
    # Wrong norms change the answer: they are really read.
    c = _torch(q, k, v, sigma=0.5, key_sq_norms=norms + torch.rand(norms.shape, dtype=norms.dtype))
    assert (c.output - b.output).abs().max() > 1e-3


def test_empty_query_batch(problem) -> None:
    _, k, v = problem(1, 10, 4, 3, 2, per_draw=False, generator=_gen())
    res = _torch(torch.empty(0, 4), k, v, sigma=1.0, top_k=2)
    assert res.output.shape == (0, 3) and res.ess.shape == (0,)
    assert res.top_k_indices.shape == (0, 2)


def test_enums_accept_plain_strings(problem) -> None:
    q, k, v = problem(3, 20, 4, 3, 2, per_draw=True, generator=_gen(15))
    a = reactive_aggregate(q, k, v, sigma=0.5, mode="offline", backend="torch")
    b = reactive_aggregate(q, k, v, sigma=0.5, mode=AggregationMode.OFFLINE, backend=Backend.TORCH)
    torch.testing.assert_close(a.output, b.output, rtol=0, atol=0)


def test_auto_backend_on_cpu_uses_torch(problem) -> None:
    if interpreting():
        pytest.skip("the interpreter routes 'auto' to the kernel")
    q, k, v = problem(3, 20, 4, 3, 2, per_draw=True, generator=_gen(16))
    a = reactive_aggregate(q, k, v, sigma=0.5)
    b = _torch(q, k, v, sigma=0.5)
    torch.testing.assert_close(a.output, b.output, rtol=0, atol=0)
    with pytest.raises(ValueError, match="backend='triton' needs"):
        reactive_aggregate(q, k, v, sigma=0.5, backend="triton")


@pytest.fixture
def ok(problem) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A valid per-draw problem that each error test breaks in one way."""
    return problem(3, 20, 4, 3, 2, per_draw=True, generator=_gen(17))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        pytest.param({"sigma": 0.0}, ValueError, "sigma must be a positive", id="sigma_zero"),
        pytest.param({"sigma": -1.0}, ValueError, "sigma must be a positive", id="sigma_negative"),
        pytest.param({"sigma": math.nan}, ValueError, "sigma must be a positive", id="sigma_nan"),
        pytest.param({"sigma": 1e-200}, ValueError, "sigma is too small", id="sigma_underflow"),
        pytest.param({"sigma": "1"}, TypeError, "sigma must be a float", id="sigma_str"),
        pytest.param(
            {"sigma": torch.ones(2)}, ValueError, "sigma must be a scalar", id="sigma_vec"
        ),
        pytest.param({"mode": "both"}, ValueError, "mode must be one of", id="mode"),
        pytest.param({"backend": "cuda"}, ValueError, "backend must be one of", id="backend"),
        pytest.param({"top_k": 21}, ValueError, r"top_k must be in \[0, 20\]", id="top_k"),
        pytest.param({"top_k": 1.5}, TypeError, "top_k must be an int", id="top_k_float"),
        pytest.param({"chunk_size": 0}, ValueError, "chunk_size must be >= 1", id="chunk_zero"),
    ],
)
def test_bad_options(change: dict[str, object], error: type[Exception], match: str, ok) -> None:
    q, k, v = ok
    kwargs: dict[str, object] = {"sigma": 0.5, **change}
    with pytest.raises(error, match=match):
        reactive_aggregate(q, k, v, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("which", "make", "error", "match"),
    [
        pytest.param("q", lambda q, k, v: q[0], ValueError, r"queries must have shape \(B, D\)",
                     id="queries_1d"),
        pytest.param("q", lambda q, k, v: q[:, :3], ValueError, "same feature dimension D",
                     id="dim_mismatch"),
        pytest.param("q", lambda q, k, v: q.long(), TypeError, "queries must be a floating",
                     id="queries_int"),
        pytest.param("q", lambda q, k, v: q.numpy(), TypeError, "queries must be a torch.Tensor",
                     id="queries_numpy"),
        pytest.param("k", lambda q, k, v: k[:, :0], ValueError, "keys is empty", id="no_keys"),
        pytest.param("k", lambda q, k, v: k[0, 0], ValueError, r"keys must have shape \(N, D\)",
                     id="keys_1d"),
        pytest.param("v", lambda q, k, v: v[:, :10], ValueError, "values must have shape",
                     id="values_n"),
        pytest.param("v", lambda q, k, v: v[0], ValueError, "values must have shape",
                     id="values_2d_with_per_draw_keys"),
        pytest.param("v", lambda q, k, v: v[..., :0], ValueError, "C >= 1", id="values_c0"),
        pytest.param("q", lambda q, k, v: q.index_fill(0, torch.tensor([1]), math.nan),
                     ValueError, "queries holds NaN", id="queries_nan"),
        pytest.param("k", lambda q, k, v: k.index_fill(1, torch.tensor([3]), math.inf),
                     ValueError, "keys holds NaN or infinite", id="keys_inf"),
        pytest.param("v", lambda q, k, v: v.index_fill(1, torch.tensor([3]), math.nan),
                     ValueError, "values holds NaN", id="values_nan"),
        pytest.param("k", lambda q, k, v: k.to("meta"), ValueError, "keys is on meta",
                     id="keys_wrong_device"),
        pytest.param("k", lambda q, k, v: k.clone().requires_grad_(), ValueError,
                     "keys requires grad", id="keys_requires_grad"),
    ],
)  # fmt: skip
def test_bad_tensors(which: str, make: object, error: type[Exception], match: str, ok) -> None:
    q, k, v = ok
    args = {"q": q, "k": k, "v": v}
    args[which] = make(q, k, v)  # type: ignore[operator]
    with pytest.raises(error, match=match):
        reactive_aggregate(args["q"], args["k"], args["v"], sigma=0.5)


def test_bad_key_norms(ok) -> None:
    q, k, v = ok
    norms = squared_norms(k)
    with pytest.raises(ValueError, match=r"key_sq_norms must have shape \(2, 20\)"):
        reactive_aggregate(q, k, v, sigma=0.5, key_sq_norms=norms[0])
    with pytest.raises(ValueError, match="key_sq_norms holds NaN"):
        reactive_aggregate(q, k, v, sigma=0.5, key_sq_norms=norms * math.nan)
    with pytest.raises(ValueError, match="non-finite values"):  # NaN keys behind finite norms
        reactive_aggregate(q, k * math.nan, v, sigma=0.5, key_sq_norms=norms)
    with pytest.raises(TypeError, match="key_sq_norms must be a floating"):
        reactive_aggregate(q, k, v, sigma=0.5, key_sq_norms=norms.long())
