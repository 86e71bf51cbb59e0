"""Per-draw keys stored as points plus offsets (``OffsetKeys``, ``ReactivePPD(offset_dtype=)``).

References: the float64 brute force of eqs. 4 and 5 on the keys ``base + offsets``, and the
full-key path (float32 offsets must reproduce it; bfloat16 ones stay within the stated
bound ``2⁻⁷ ‖q‖ ‖δ‖ / σ²`` on the log-weights: two bfloat16 roundings, of the queries and
of the products).
"""

from __future__ import annotations

import math

import pytest
import torch

from adv_attacks import pgd
from adv_channels import IdentityChannel, OneStepChannel
from adv_reactive import OffsetKeys, ReactivePPD, reactive_aggregate, squared_norms

MODES = ["online", "offline"]


def _problem(seed: int = 0, *, num_q: int = 12, num_keys: int = 200, dim: int = 48, draws: int = 3):
    """Training points in [0, 1], per-draw offsets of norm <= 1, queries near the points."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(num_keys, dim, generator=g)
    direction = torch.randn(draws, num_keys, dim, generator=g)
    offsets = direction / direction.norm(dim=-1, keepdim=True)
    offsets = (base + offsets).clamp(0.0, 1.0) - base  # a one-step channel's means
    pick = torch.randint(0, num_keys, (num_q,), generator=g)
    queries = (base[pick] + 0.2 * torch.randn(num_q, dim, generator=g)).clamp(0.0, 1.0)
    values = torch.softmax(2 * torch.randn(draws, num_keys, 4, generator=g), dim=-1)
    return queries, base, offsets, values


def _bound(queries: torch.Tensor, offsets: torch.Tensor, sigma: float) -> float:
    """The stated log-weight error of bfloat16 offsets: ``2⁻⁷ max‖q‖ max‖δ‖ / σ²``."""
    q_norm = float(queries.norm(dim=1).max())
    d_norm = float(offsets.float().norm(dim=-1).max())
    return 2.0**-7 * q_norm * d_norm / sigma**2


@pytest.mark.parametrize("mode", MODES)
def test_bfloat16_offsets_match_the_brute_force_within_the_bound(mode, reference) -> None:
    queries, base, offsets, values = _problem()
    keys = OffsetKeys(base, offsets.to(torch.bfloat16))
    sigma = 0.5
    res = reactive_aggregate(queries, keys, values, sigma=sigma, mode=mode, chunk_size=64)
    ref = reference(queries, keys.materialize(torch.float64), values, sigma, mode)
    bound = _bound(queries, keys.offsets, sigma)
    assert 0.0 < bound < 0.5  # the test means something at this size
    lse_err = (res.log_normalizer.double() - ref["log_normalizer"]).abs().max()
    assert lse_err <= bound + 1e-4
    # Each weight is off by a factor within exp(±2·bound); the values are probabilities.
    out_err = (res.output.double() - ref["output"]).abs().max()
    assert out_err <= math.expm1(2 * bound)


def test_the_bound_test_would_see_offsets_left_out(reference) -> None:
    # Guards the test above: dropping the offsets moves the log-weights far past the bound.
    queries, base, offsets, values = _problem()
    res = reactive_aggregate(queries, base, values.mean(0), sigma=0.5)
    ref = reference(queries, base + offsets, values, 0.5, "online")
    lse_err = (res.log_normalizer[:, :1].double() - ref["log_normalizer"]).abs().max()
    assert lse_err > 10 * _bound(queries, offsets, 0.5)


@pytest.mark.parametrize("mode", MODES)
def test_float32_offsets_reproduce_the_full_keys(mode) -> None:
    """The split ``q·x + q·δ`` is exact arithmetic: same results as the keys themselves."""
    queries, base, offsets, values = _problem(1, num_keys=150)
    keys = OffsetKeys(base, offsets)
    full = keys.materialize()
    a = reactive_aggregate(queries, keys, values, sigma=0.4, mode=mode, chunk_size=7, top_k=3)
    b = reactive_aggregate(queries, full, values, sigma=0.4, mode=mode, chunk_size=7, top_k=3)
    torch.testing.assert_close(a.log_normalizer, b.log_normalizer, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(a.output, b.output, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.ess, b.ess, atol=1e-4, rtol=1e-4)
    assert torch.equal(a.top_k_indices, b.top_k_indices)
    torch.testing.assert_close(a.top_k_weights, b.top_k_weights, atol=1e-5, rtol=1e-4)


def test_gradients_with_offsets() -> None:
    queries, base, offsets, values = _problem(2)
    grads = {}
    for name, keys in {
        "full": base + offsets,
        "float32": OffsetKeys(base, offsets),
        "bfloat16": OffsetKeys(base, offsets.to(torch.bfloat16)),
    }.items():
        q = queries.clone().requires_grad_()
        res = reactive_aggregate(q, keys, values, sigma=0.5, mode="offline")
        (grads[name],) = torch.autograd.grad(res.output[:, 1].sum(), q)
    torch.testing.assert_close(grads["float32"], grads["full"], atol=1e-5, rtol=1e-4)
    rel = (grads["bfloat16"] - grads["full"]).norm() / grads["full"].norm()
    assert 0.0 < rel < 0.05


def test_squared_norms_of_offset_keys() -> None:
    _, base, offsets, _ = _problem(3)
    keys = OffsetKeys(base, offsets.to(torch.bfloat16))
    torch.testing.assert_close(squared_norms(keys), squared_norms(keys.materialize()))
    assert squared_norms(keys).shape == (3, 200)


def test_offset_keys_errors() -> None:
    queries, base, offsets, values = _problem(4)
    keys = OffsetKeys(base, offsets.to(torch.bfloat16))
    with pytest.raises(ValueError, match="PyTorch back end"):
        reactive_aggregate(queries, keys, values, sigma=0.5, backend="triton")
    with pytest.raises(ValueError, match=r"offsets .* must be \(M, N, D\)"):
        reactive_aggregate(queries, OffsetKeys(base, offsets[:, :-1]), values, sigma=0.5)
    with pytest.raises(ValueError, match="base \\(N, D\\) and offsets \\(M, N, D\\)"):
        reactive_aggregate(queries, OffsetKeys(base, offsets[0]), values, sigma=0.5)
    with pytest.raises(TypeError, match="keys.base must be float32 or float64"):
        reactive_aggregate(queries, OffsetKeys(base.bfloat16(), offsets), values, sigma=0.5)
    with pytest.raises(TypeError, match="keys.offsets must be a floating-point tensor"):
        reactive_aggregate(queries, OffsetKeys(base, offsets.long()), values, sigma=0.5)
    with pytest.raises(ValueError, match="keys.offsets requires grad"):
        reactive_aggregate(queries, OffsetKeys(base, offsets.requires_grad_()), values, sigma=0.5)
    with pytest.raises(ValueError, match="values must have shape"):
        reactive_aggregate(queries, keys, values[:2], sigma=0.5)


# -- ReactivePPD(offset_dtype=...) ----------------------------------------------------------


def _fit(offset_dtype, channel, reactive_models, task="classification", seed=1):
    g = torch.Generator().manual_seed(seed)
    model = reactive_models[task]().float()
    x = torch.rand(40, 1, 2, 3, generator=g)
    y = torch.randint(0, 3, (40,), generator=g) if task == "classification" else None
    if task == "regression":
        x = x.flatten(1)
        y = torch.randn(40, generator=g)
    rppd = ReactivePPD(
        model,
        channel,
        num_samples=3,
        task=task,
        generator=torch.Generator().manual_seed(2),
        offset_dtype=offset_dtype,
    )
    return rppd.fit(x, y), x


@pytest.mark.parametrize("mode", MODES)
def test_reactive_ppd_with_bfloat16_offsets(mode, reactive_models, tmp_path) -> None:
    channel = OneStepChannel(eps=0.5, sigma=0.3)
    full, x = _fit(None, channel, reactive_models)
    split, _ = _fit(torch.bfloat16, channel, reactive_models)
    full.mode = split.mode = mode
    assert split.offset_keys and not full.offset_keys
    assert split.keys.dtype == torch.bfloat16 and full.keys.dtype == torch.float32
    torch.testing.assert_close(
        split.keys.float(), full.keys - split.inputs, atol=4e-3, rtol=2**-8
    )  # the stored offsets are the one-step keys minus the inputs
    x_test = x[:6] + 0.1 * torch.randn(6, 1, 2, 3, generator=torch.Generator().manual_seed(5))
    a, b = full.predict(x_test), split.predict(x_test)
    # against the float32 keys: the offsets' own rounding as well, 3 · 2⁻⁸
    bound = 3 * 2.0**-8 * float(x_test.flatten(1).norm(dim=1).max()) * 0.5 / 0.3**2
    assert (a.log_normalizer - b.log_normalizer).abs().max() <= bound + 1e-4
    assert (a.probs - b.probs).abs().max() <= math.expm1(2 * bound)
    path = tmp_path / "split.pt"
    split.save(path)
    loaded = ReactivePPD.load(path)
    assert loaded.offset_keys and loaded.keys.dtype == torch.bfloat16
    loaded.mode = mode
    torch.testing.assert_close(loaded.predict(x_test).probs, b.probs)
    # an attack on the loaded (parameter-free) PPD: its first buffer is bfloat16, and the
    # attacks' dtype check once refused float32 inputs for it
    y_test = b.probs.argmax(-1)
    x_adv = pgd(loaded, x_test.clamp(0, 1), y_test, eps=0.3, steps=2, clamp=(0.0, 1.0))
    assert x_adv.dtype == torch.float32 and torch.isfinite(x_adv).all()


def test_reactive_ppd_regression_log_prob_with_offsets(reactive_models) -> None:
    channel = OneStepChannel(eps=0.5, sigma=0.3, objective="mse")
    full, x = _fit(None, channel, reactive_models, task="regression")
    split, _ = _fit(torch.float32, channel, reactive_models, task="regression")
    y = torch.randn(5, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(
        split.log_prob(x[:5], y), full.log_prob(x[:5], y), atol=1e-4, rtol=1e-4
    )


def test_offset_dtype_leaves_shared_keys_alone_and_checks_its_argument(reactive_models) -> None:
    shared, _ = _fit(torch.bfloat16, IdentityChannel(0.3), reactive_models)
    assert not shared.offset_keys and shared.keys.dtype == torch.float32
    model = reactive_models["classification"]()
    with pytest.raises(TypeError, match="offset_dtype"):
        ReactivePPD(model, IdentityChannel(0.3), offset_dtype="bfloat16")
    with pytest.raises(TypeError, match="offset_dtype"):
        ReactivePPD(model, IdentityChannel(0.3), offset_dtype=torch.int8)
    with pytest.raises(ValueError, match="PyTorch back end"):
        ReactivePPD(model, IdentityChannel(0.3), offset_dtype=torch.bfloat16, backend="triton")
