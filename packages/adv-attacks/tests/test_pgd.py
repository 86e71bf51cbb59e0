from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from adv_attacks import PGD, objective_values, pgd, read_output

_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class _TanhNet(nn.Module):
    """A small nonlinear classifier on any input shape (for the property tests)."""

    def __init__(self, d: int, c: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Linear(d, 8)
        self.b = nn.Linear(8, c)

    def forward(self, x):
        return self.b(torch.tanh(3 * self.a(x.flatten(1))))


@st.composite
def _problems(draw):
    b = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    per_example = draw(st.booleans())
    eps_vals = draw(st.lists(st.floats(0.0, 2.0), min_size=b, max_size=b))
    return {
        "b": b,
        "shape": shape,
        "eps": torch.tensor(eps_vals) if per_example else eps_vals[0],
        "norm": draw(st.sampled_from(["l2", "linf"])),
        "clamp": draw(st.sampled_from([(0.0, 1.0), None])),
        "objective": draw(st.sampled_from(["nll", "cw", "entropy"])),
        "steps": draw(st.integers(1, 4)),
        "step_factor": draw(st.sampled_from([0.3, 1.0, 3.0])),
        "random_start": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@_SETTINGS
@given(_problems())
def test_every_iterate_stays_in_its_ball_and_range(norm_of, p):
    g = torch.Generator().manual_seed(p["seed"])
    x = torch.rand((p["b"], *p["shape"]), generator=g)
    net = _TanhNet(x[0].numel(), seed=p["seed"])
    eps = p["eps"]
    eps_t = eps if isinstance(eps, torch.Tensor) else torch.full((p["b"],), eps)
    kw = dict(
        eps=eps,
        norm=p["norm"],
        clamp=p["clamp"],
        objective=p["objective"],
        step_size=eps_t * p["step_factor"],  # large steps: projection does the work
        random_start=p["random_start"],
    )
    # With a fixed step size, the run of k steps is the k-th iterate of the longer runs.
    for k in range(1, p["steps"] + 1):
        x_adv = pgd(net, x, generator=torch.Generator().manual_seed(p["seed"]), steps=k, **kw)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert (norm_of(x_adv - x, p["norm"]) <= eps_t * (1 + 1e-5) + 1e-6).all()
        if p["clamp"] is not None:
            assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize(("norm", "clamp"), [("l2", None), ("linf", (0.0, 1.0))])
def test_objective_rises_monotonically_on_a_convex_problem(linear_model, norm, clamp):
    # -log softmax(Wx + b)_y is convex in x; a normalised ascent step followed by a
    # projection onto a convex set containing the iterate never lowers a convex function.
    x = torch.rand(6, 6, dtype=torch.float64)
    y = linear_model(x).argmax(-1)
    values = []
    for k in range(1, 9):
        x_k = pgd(
            linear_model,
            x,
            y,
            eps=0.5,
            norm=norm,
            clamp=clamp,
            steps=k,
            step_size=0.1,
            random_start=False,
        )
        values.append(objective_values(read_output(linear_model(x_k), 6), y, "nll"))
    values = torch.stack(values)
    assert (values.diff(dim=0) >= -1e-12).all()
    assert (values[-1] > values[0]).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_matches_torchattacks_without_random_start(make_cnn, norm):
    """Same iterates as torchattacks' PGDL2 / PGD (random start off, 10 steps).

    Conventions: torchattacks' ``alpha`` is our absolute ``step_size`` (our default is
    ``2.5 ε / T``); it averages the loss over the batch (a positive factor, removed by the
    normalisation / sign), adds 1e-10 to the gradient norm (hence ``atol=1e-7``; see
    test_one_step), always clamps to [0, 1] (our default ``clamp``) and switches the model
    to eval() (ours leaves the mode alone; this model has no dropout or batch norm). Its
    L2 random start draws the radius uniformly in [0, ε], not uniformly in the ball.
    """
    torchattacks = pytest.importorskip("torchattacks")
    model = make_cnn(seed=5, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(8, 1, 10, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=g)
    if norm == "l2":
        eps, alpha = 1.0, 0.25
        ta = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=10, random_start=False)
    else:
        eps, alpha = 0.1, 0.02
        ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=10, random_start=False)
    ours = pgd(model, x, y, eps=eps, norm=norm, steps=10, step_size=alpha, random_start=False)
    torch.testing.assert_close(ours, ta(x, y), atol=1e-7, rtol=0)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_eps_zero_changes_nothing(cnn, images, norm):
    x, y = images
    for objective in ("nll", "cw", "entropy"):
        out = pgd(cnn, x, y, eps=0.0, norm=norm, objective=objective, steps=3)
        assert torch.equal(out, x)


def test_one_example_equals_its_slice_of_the_batch(cnn, images):
    x, y = images
    kw = dict(eps=1.0, steps=5, random_start=False, objective="cw")
    batch = pgd(cnn, x, y, **kw)
    for i in range(x.shape[0]):
        alone = pgd(cnn, x[i : i + 1], y[i : i + 1], **kw)
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=1e-5)


def test_bnn_with_vanishing_sigma_equals_deterministic(ensemble_cls):
    x = torch.rand(5, 6, dtype=torch.float64)
    det = nn.Linear(6, 4).double()
    for sigma, close in ((1e-9, True), (0.5, False)):
        bnn = ensemble_cls(d=6, c=4, m=3, sigma=sigma)
        with torch.no_grad():
            det.weight.copy_(bnn.weight_mu)
            det.bias.copy_(bnn.bias_mu)
        kw = dict(eps=0.5, steps=10, generator=torch.Generator().manual_seed(0))
        a = pgd(bnn, x, **kw)
        kw["generator"] = torch.Generator().manual_seed(0)
        d = pgd(det, x, **kw)
        assert torch.allclose(a, d, atol=1e-6) is close


def test_default_step_size_is_2_5_eps_over_steps(cnn, images):
    x, y = images
    kw = dict(eps=1.0, steps=8, random_start=False)
    default = pgd(cnn, x, y, **kw)
    assert torch.equal(default, pgd(cnn, x, y, step_size=2.5 * 1.0 / 8, **kw))
    assert not torch.equal(default, pgd(cnn, x, y, step_size=0.1, **kw))


def test_seeded_random_start_is_deterministic(cnn, images, norm_of):
    x, y = images
    runs = [
        pgd(cnn, x, y, eps=1.0, steps=2, generator=torch.Generator().manual_seed(s))
        for s in (7, 7, 8)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_eot_resamples_before_every_step(ensemble_cls):
    model = ensemble_cls(d=6, c=4, m=3, sigma=1.0)
    x = torch.rand(3, 6, dtype=torch.float64)
    fixed = pgd(model, x, eps=0.5, steps=4, random_start=False)
    assert model.resample_calls == 0
    runs = [
        pgd(model, x, eps=0.5, steps=4, eot=True, generator=torch.Generator().manual_seed(2))
        for _ in range(2)
    ]
    assert model.resample_calls == 8
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], fixed)


def test_eot_needs_resample(linear_model):
    with pytest.raises(ValueError, match="eot=True needs a predictive with a resample"):
        pgd(linear_model, torch.rand(2, 6, dtype=torch.float64), eps=0.1, eot=True)


class _Counting(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_early_stop_freezes_successful_examples(linear_model):
    x = torch.rand(6, 6, dtype=torch.float64)
    y = linear_model(x).argmax(-1)
    counting = _Counting(linear_model)
    kw = dict(eps=5.0, steps=50, step_size=0.05, random_start=False, clamp=None)
    res = pgd(counting, x, y, early_stop=True, return_info=True, **kw)
    assert res.success.all()
    assert counting.calls < 50  # stopped once every example was misclassified
    # Each example stopped at the first iterate that is misclassified: one step earlier
    # it was still correct.
    full = pgd(linear_model, x, y, **kw)
    assert (res.x_adv - x).norm(dim=1).lt((full - x).norm(dim=1)).all()
    for i in range(6):
        k = round(float((res.x_adv[i] - x[i]).norm() / 0.05))
        before = x[i : i + 1]
        if k > 1:
            before = pgd(linear_model, before, y[i : i + 1], **{**kw, "steps": k - 1})
        assert linear_model(before).argmax(-1) == y[i]


def test_early_stop_needs_classification(regressor_cls):
    with pytest.raises(ValueError, match="early_stop needs a classification"):
        pgd(regressor_cls(3), torch.rand(2, 3, dtype=torch.float64), eps=0.1, early_stop=True)


def test_targeted_reaches_the_targets(linear_model):
    x = torch.rand(6, 6, dtype=torch.float64)
    t = linear_model(x).argmin(-1)
    for objective in ("nll", "cw"):
        res = pgd(
            linear_model,
            x,
            t,
            eps=10.0,
            steps=40,
            targeted=True,
            objective=objective,
            clamp=None,
            return_info=True,
        )
        assert res.success.all()
        assert (linear_model(res.x_adv).argmax(-1) == t).all()


def test_untargeted_nll_fools_a_linear_model(linear_model):
    x = torch.rand(6, 6, dtype=torch.float64)
    y = linear_model(x).argmax(-1)
    res = pgd(linear_model, x, y, eps=10.0, steps=30, clamp=None, return_info=True)
    assert res.success.all()
    ref = F.cross_entropy(linear_model(res.x_adv), y, reduction="none")
    torch.testing.assert_close(res.objective, ref)


def test_class_api_matches_function(cnn, images):
    x, y = images
    attack = PGD(eps=0.1, norm="linf", steps=3, random_start=False)
    ref = pgd(cnn, x, y, eps=0.1, norm="linf", steps=3, random_start=False)
    assert torch.equal(attack(cnn, x, y), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_cuda_matches_cpu(make_cnn, norm):
    model = make_cnn(seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 10, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    kw = dict(eps=1.0 if norm == "l2" else 0.1, norm=norm, steps=5)
    cpu = pgd(model, x, y, generator=torch.Generator().manual_seed(3), **kw)
    model_cuda = model.cuda()
    xc, yc = x.cuda(), y.cuda()
    gpu = pgd(model_cuda, xc, yc, generator=torch.Generator().manual_seed(3), **kw)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    cuda_gen = torch.Generator(device="cuda").manual_seed(3)
    res = pgd(model_cuda, xc, yc, generator=cuda_gen, return_info=True, **kw)
    assert res.x_adv.device.type == "cuda" and res.success.device.type == "cuda"
