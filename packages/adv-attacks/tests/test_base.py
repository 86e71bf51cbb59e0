from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adv_attacks import (
    Attack,
    AttackProblem,
    ObjectiveSpec,
    PGDPlus,
    entropy_attack,
    one_step,
    pgd,
    pgd_plus,
)

ATTACKS = {
    "one_step": lambda m, x, y, **kw: one_step(m, x, y, eps=1.0, **kw),
    "pgd_l2": lambda m, x, y, **kw: pgd(m, x, y, eps=1.0, steps=3, **kw),
    "pgd_linf_cw": lambda m, x, y, **kw: pgd(
        m, x, y, eps=0.1, norm="linf", objective="cw", steps=3, **kw
    ),
    "pgd_plus": lambda m, x, y, **kw: pgd_plus(
        m, x, y, eps=1.0, nll_steps=2, entropy_steps=2, **kw
    ),
    "entropy": lambda m, x, y, **kw: entropy_attack(m, x, y, eps=1.0, steps=3, **kw),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_caller_state_is_untouched(make_cnn, images, name, training):
    model = make_cnn(seed=2).train(training)
    model[0].bias.requires_grad_(False)
    model[-1].weight.grad = torch.ones_like(model[-1].weight)
    x, y = images
    x_copy, y_copy, version = x.clone(), y.clone(), x._version
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x_adv = ATTACKS[name](model, x, y, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(x_adv, x)
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert torch.equal(x, x_copy) and x._version == version and torch.equal(y, y_copy)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and p.requires_grad is flags[n]
    assert torch.equal(model[-1].weight.grad, torch.ones_like(model[-1].weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "4.weight")
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_batch_norm_running_statistics_are_restored(images, name, training):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10)
    )
    x, y = images
    model(x)  # materialise the lazy layer; moves the running statistics once
    model.train(training)
    stats = {k: b.clone() for k, b in model[1].named_buffers()}
    x_adv = ATTACKS[name](model, x, y, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(x_adv, x)
    for k, b in model[1].named_buffers():
        assert torch.equal(b, stats[k]), k
    if training:  # the guard matters: a forward pass in training mode moves them
        model(x_adv)
        assert not torch.equal(model[1].running_mean, stats["running_mean"])


def test_flags_restored_when_the_predictive_raises(cnn, images):
    calls = []

    class Flaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn

        def forward(self, x):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("boom")
            return self.net(x)

    with pytest.raises(RuntimeError, match="boom"):
        pgd(Flaky(), images[0], images[1], eps=1.0, steps=3)
    assert all(p.requires_grad for p in cnn.parameters())


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_works_inside_no_grad_and_inference_mode(cnn, images, mode):
    x, y = images
    ref = pgd(cnn, x, y, eps=1.0, steps=3, random_start=False)
    with mode():
        got = pgd(cnn, x, y, eps=1.0, steps=3, random_start=False)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(got, ref)


def test_tensors_made_inside_inference_mode(cnn, images):
    # x and y created under inference_mode are inference tensors: autograd refused them
    x, y = images
    ref = pgd(cnn, x, y, eps=1.0, steps=3, random_start=False)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        assert xi.is_inference() and yi.is_inference()
        got = pgd(cnn, xi, yi, eps=1.0, steps=3, random_start=False)
    torch.testing.assert_close(got, ref)
    got = pgd(cnn, x, yi, eps=1.0, steps=3, random_start=False)  # labels alone
    torch.testing.assert_close(got, ref)


def test_empty_batch_returns_empty_without_calling_the_model():
    def boom(x):
        raise AssertionError("called")

    x = torch.rand(0, 3)
    assert pgd(boom, x, eps=1.0).shape == (0, 3)
    res = one_step(boom, x, eps=1.0, return_info=True)
    assert res.x_adv.shape == (0, 3) and res.objective.shape == (0,) and res.success is None


def test_return_info_reports_objective_and_success(cnn, images):
    x, y = images
    res = pgd(cnn, x, y, eps=3.0, steps=10, return_info=True)
    logits = cnn(res.x_adv)
    torch.testing.assert_close(
        res.objective, torch.nn.functional.cross_entropy(logits, y, reduction="none")
    )
    assert torch.equal(res.success, logits.argmax(-1) != y)


def test_plain_function_predictive(images):
    w = torch.randn(100, 10)
    x, y = images
    out = pgd(lambda t: t.flatten(1) @ w, x, y, eps=1.0, steps=2)
    assert out.shape == x.shape and w.grad is None


def test_a_subclass_only_implements_perturb(cnn, images, norm_of):
    class RandomInBall(Attack):
        specs = (ObjectiveSpec("nll"),)

        def _perturb(self, problem: AttackProblem, generator):
            return problem.start(True, generator)

    x, y = images
    out = RandomInBall(eps=0.5)(cnn, x, y, generator=torch.Generator().manual_seed(0))
    assert (norm_of(out - x) <= 0.5 + 1e-6).all() and not torch.equal(out, x)


def _x():
    return torch.rand(3, 1, 10, 10)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eps": -0.1}, ValueError, "eps must be finite and >= 0"),
        ({"eps": math.nan}, ValueError, "eps must be finite and >= 0"),
        ({"eps": "big"}, TypeError, "eps must be a float or a"),
        ({"eps": torch.ones(4)}, ValueError, r"eps must be a float or a tensor of shape \(3,\)"),
        ({"eps": torch.tensor([0.1, -1.0, 0.1])}, ValueError, "eps must be finite and >= 0"),
        ({"eps": 1.0, "steps": 0}, ValueError, "steps must be >= 1"),
        ({"eps": 1.0, "steps": 2.5}, TypeError, "steps must be an int"),
        ({"eps": 1.0, "steps": True}, TypeError, "steps must be an int"),
        ({"eps": 1.0, "step_size": -1.0}, ValueError, "step_size must be finite and >= 0"),
        ({"eps": 1.0, "norm": "l1"}, ValueError, "norm must be one of 'l2', 'linf'"),
        ({"eps": 1.0, "objective": "hinge"}, ValueError, "objective must be one of"),
        ({"eps": 1.0, "objective": "mse"}, ValueError, "objective='mse' needs a regression"),
        ({"eps": 1.0, "clamp": (1.0, 0.0)}, ValueError, "clamp must satisfy low < high"),
        ({"eps": 1.0, "clamp": "unit"}, TypeError, "clamp must be a"),
        ({"eps": 1.0, "kappa": -1.0}, ValueError, "kappa must be finite and >= 0"),
        ({"eps": 1.0, "entropy_sign": 0}, ValueError, "entropy_sign must be"),
        ({"eps": 1.0, "targeted": True, "objective": "entropy"}, ValueError, "targeted=True"),
    ],
)
def test_bad_options_raise(cnn, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pgd(cnn, _x(), torch.tensor([0, 1, 2]), **kwargs)


def test_bad_inputs_raise(cnn, make_cnn):
    y = torch.tensor([0, 1, 2])
    cases = [
        (lambda: pgd(cnn, _x().numpy(), y, eps=1.0), TypeError, "x must be a tensor"),
        (lambda: pgd(cnn, _x().long(), y, eps=1.0), TypeError, "x must be a floating-point"),
        (lambda: pgd(cnn, torch.tensor(0.5), eps=1.0), ValueError, "0-d"),
        (lambda: pgd(cnn, _x() * math.nan, y, eps=1.0), ValueError, "NaN"),
        (lambda: pgd(cnn, _x() + 1.5, y, eps=1.0), ValueError, r"outside clamp=\(0.0, 1.0\)"),
        (lambda: pgd(cnn, _x(), y[:2], eps=1.0), ValueError, r"y must hold one label per"),
        (lambda: pgd(cnn, _x(), y.float(), eps=1.0), TypeError, "integer class indices"),
        (lambda: pgd(cnn, _x(), y + 8, eps=1.0), ValueError, r"in \[0, 10\)"),
        (lambda: pgd(cnn, _x(), y - 1, eps=1.0), ValueError, r"in \[0, 10\)"),
        (lambda: pgd(cnn, _x(), y[:, None].repeat(1, 2), eps=1.0), ValueError, r"shape \(3,\)"),
        (lambda: pgd(cnn, _x(), y.to("meta"), eps=1.0), ValueError, "y is on meta"),
        (lambda: pgd("cnn", _x(), y, eps=1.0), TypeError, "predictive must be callable"),
        (
            lambda: pgd(make_cnn(dtype=torch.float64), _x(), y, eps=1.0),
            TypeError,
            "torch.float64 parameters",
        ),
        (lambda: pgd(cnn, _x(), eps=1.0, targeted=True), ValueError, "targeted attack needs"),
        (
            lambda: PGDPlus(eps=1.0, objective="entropy"),
            ValueError,
            "first phase needs a label objective",
        ),
        (lambda: pgd_plus(cnn, _x(), eps=1.0, nll_steps=0), ValueError, "nll_steps must be"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


def test_model_on_another_device_raises(make_cnn):
    model = make_cnn().to("meta")
    with pytest.raises(ValueError, match="predictive has tensors on meta but x is on cpu"):
        pgd(model, _x(), eps=1.0)


def test_non_differentiable_predictive_raises(cnn):
    with pytest.raises(ValueError, match="does not depend differentiably on x"):
        pgd(lambda t: cnn(t).detach(), _x(), eps=1.0)


def test_regression_specific_errors(regressor_cls):
    model = regressor_cls(4)
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="objective='cw' needs a classification"):
        pgd(model, x, eps=1.0, objective="cw", clamp=None)
    with pytest.raises(TypeError, match="real regression targets"):
        pgd(model, x, torch.tensor([0, 1, 2]), eps=1.0, clamp=None)
    with pytest.raises(ValueError, match="var must be finite and > 0"):
        pgd(lambda t: (t.sum(1), -t.sum(1).abs()), x, eps=1.0, clamp=None)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, None])
def test_chunked_passes_give_the_batch_result(cnn, images, chunk_size):
    x, y = images
    for fn in ATTACKS.values():
        ref = fn(cnn, x, y, generator=torch.Generator().manual_seed(0), chunk_size=6)
        got = fn(cnn, x, y, generator=torch.Generator().manual_seed(0), chunk_size=chunk_size)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # Missing labels are taken chunk by chunk from the first pass.
    res = one_step(cnn, x, eps=1.0, chunk_size=chunk_size, return_info=True)
    ref = one_step(cnn, x, cnn(x).argmax(-1), eps=1.0, chunk_size=6, return_info=True)
    torch.testing.assert_close(res.x_adv, ref.x_adv, atol=1e-5, rtol=1e-5)
    assert torch.equal(res.success, ref.success)


def test_cpu_chunks_are_cache_sized_and_cover_the_batch():
    from adv_attacks.base import _chunks

    big = _chunks(torch.zeros(256, 1, 28, 28), None)
    assert [c.stop - c.start for c in big] == [128, 128]
    # Large inputs: chunks of at most MIN_CHUNK = 32 examples, split evenly.
    assert [c.stop - c.start for c in _chunks(torch.zeros(100, 3, 64, 64), None)] == [25] * 4
    assert _chunks(torch.zeros(10, 5), None) == [slice(0, 10)]
    odd = _chunks(torch.zeros(10, 5), 3)
    sizes = [c.stop - c.start for c in odd]
    assert len(odd) == 4 and max(sizes) <= 3 and max(sizes) - min(sizes) <= 1
    assert odd[0].start == 0 and odd[-1].stop == 10
    assert all(a.stop == b.start for a, b in zip(odd, odd[1:], strict=False))


def test_cpu_chunks_shrink_with_the_predictives_forward_passes(cnn, images):
    from adv_attacks.base import _chunks

    x = torch.zeros(256, 1, 28, 28)
    # 2^17 / (784 · √10) = 52.9 examples: five chunks of 51-52.
    assert [c.stop - c.start for c in _chunks(x, None, 10)] == [51, 51, 52, 51, 51]
    assert [c.stop - c.start for c in _chunks(x, None, 5)] == [64] * 4
    assert [c.stop - c.start for c in _chunks(x, None, 1000)] == [32] * 8  # MIN_CHUNK
    assert [c.stop - c.start for c in _chunks(x, 100, 10)] == [85, 86, 85]  # given: kept

    class Passes(torch.nn.Module):
        def __init__(self, passes: object, net: nn.Module = cnn) -> None:
            super().__init__()
            self.net, self.forward_passes, self.sizes = net, passes, []

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            self.sizes.append(t.shape[0])
            return self.net(t)

    linear = Passes(10, nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    one_step(linear, torch.rand(256, 1, 28, 28), torch.zeros(256, dtype=torch.long), eps=1.0)
    assert linear.sizes == [51, 51, 52, 51, 51]  # the attack's passes follow the hint
    xs, ys = images
    ref = pgd(cnn, xs, ys, eps=1.0, steps=3, random_start=False)
    torch.testing.assert_close(pgd(Passes(10), xs, ys, eps=1.0, steps=3, random_start=False), ref)
    with pytest.raises(TypeError, match="forward_passes must be an int"):
        pgd(Passes(2.0), xs, ys, eps=1.0)
    with pytest.raises(ValueError, match="forward_passes must be >= 1"):
        pgd(Passes(0), xs, ys, eps=1.0)


@pytest.mark.parametrize(("value", "exc"), [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_chunk_size_raises(value, exc):
    with pytest.raises(exc, match="chunk_size must be"):
        pgd(torch.nn.Identity(), torch.rand(2, 3), eps=1.0, chunk_size=value)


class _BufferOnly(torch.nn.Module):
    """A parameter-free predictive: float32 data next to a bfloat16 cache (like a loaded
    reactive PPD with bfloat16 key offsets)."""

    def __init__(self, *dtypes: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("w", torch.randn(1 * 10 * 10, 10))
        for i, dtype in enumerate(dtypes):
            self.register_buffer(f"cache{i}", torch.zeros(2, dtype=dtype))

    def forward(self, x):
        return x.flatten(1) @ self.w.to(x.dtype)


def test_dtype_check_reads_parameters_and_accepts_any_buffer_dtype():
    x, y = _x(), torch.tensor([0, 1, 2])
    # the first buffer is float32 here, and a bfloat16 cache comes first below: both run
    for model in (_BufferOnly(torch.bfloat16), _BufferOnly()):
        assert pgd(model, x, y, eps=0.5, steps=2).shape == x.shape
    bf16_first = _BufferOnly(torch.bfloat16)
    bf16_first._buffers = dict(reversed(list(bf16_first._buffers.items())))
    assert pgd(bf16_first, x, y, eps=0.5, steps=2).shape == x.shape
    with pytest.raises(TypeError, match="torch.float32 tensors but x is torch.float64"):
        pgd(_BufferOnly(), x.double(), y, eps=0.5, steps=2)
