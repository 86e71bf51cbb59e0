"""APGD / APGD-T: the paper's schedule, the DLR losses, the ball, EOT, and torchattacks."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from adv_attacks import (
    APGD,
    APGDT,
    Square,
    TargetedDLR,
    apgd,
    apgd_checkpoints,
    dlr_values,
    read_output,
    targeted_dlr_values,
)
from adv_attacks.base import AttackProblem

_SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# -- the checkpoints ---------------------------------------------------------------------


def _checkpoints_exact(n: int) -> list[int]:
    """``⌈p_j N⌉`` with the p_j of Croce & Hein (2020) in exact rational arithmetic."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    out: list[int] = []
    for q in p[1:]:
        w = math.ceil(q * n)
        if 1 <= w <= n and (not out or w > out[-1]):
            out.append(w)
    return out


def test_checkpoints_match_the_paper_exactly():
    # The reference implementation's 100-step schedule (steps 22, 19, 16, 13, 10, 7, 6, 6).
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    for n in range(1, 400):
        assert apgd_checkpoints(n) == _checkpoints_exact(n), n


# -- the DLR losses ------------------------------------------------------------------------


def _dlr_brute(z, y, target=None):
    out = []
    for b in range(z.shape[0]):
        row = [float(v) for v in z[b]]
        srt = sorted(row, reverse=True)
        zy = row[int(y[b])]
        if target is None:
            other = max(v for k, v in enumerate(row) if k != int(y[b]))
            out.append(-(zy - other) / (srt[0] - srt[2] + 1e-12))
        else:
            zt = row[int(target[b])]
            out.append(-(zy - zt) / (srt[0] - 0.5 * (srt[2] + srt[3]) + 1e-12))
    return torch.tensor(out, dtype=torch.float64)


def test_dlr_matches_brute_force_and_is_shift_invariant():
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (12,), generator=g)
    t = (y + 1 + torch.randint(0, 5, (12,), generator=g)) % 6
    torch.testing.assert_close(dlr_values(z, y), _dlr_brute(z, y))
    torch.testing.assert_close(targeted_dlr_values(z, y, t), _dlr_brute(z, y, t))
    # On log_softmax(z) (what the package reads) the same numbers: the ratio is shift-invariant,
    # so our DLR on log-probabilities equals the reference's DLR on logits.
    lp = read_output(z, 12).log_probs
    torch.testing.assert_close(dlr_values(lp, y), _dlr_brute(z, y))
    torch.testing.assert_close(TargetedDLR(t).values(read_output(z, 12), y), _dlr_brute(z, y, t))


def test_dlr_needs_enough_classes():
    net = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGDT(eps=0.1, steps=2)(net, torch.rand(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGD(eps=0.1, steps=2, loss="dlr")(nn.Linear(4, 2), torch.rand(2, 4), torch.tensor([0, 1]))


# -- the step-size schedule ----------------------------------------------------------------


class _Scripted(nn.Module):
    """A predictive whose loss follows a script over its calls, whatever the input.

    Logits ``s(t)·d + 0·Wx``, ``d`` = -1 on the label 0 and +1 elsewhere, ``t`` the call
    number: the cross-entropy of label 0 rises exactly when ``s`` rises, and the gradient is
    zero (the iterate never moves), so the objective APGD sees is known in advance.
    """

    def __init__(self, script):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.script = script
        self.calls = 0

    def forward(self, x):
        s = float(self.script(self.calls))
        self.calls += 1
        d = torch.tensor([-1.0, 1.0, 1.0])
        return 0.0 * self.lin(x) + s * d


def _recorded_steps(monkeypatch, script, steps):
    seen = []
    orig = AttackProblem.step

    def step(self, x_adv, g, step_size):
        seen.append(float(step_size[0]))
        return orig(self, x_adv, g, step_size)

    monkeypatch.setattr(AttackProblem, "step", step)
    APGD(eps=1.0, steps=steps, clamp=None)(_Scripted(script), torch.zeros(1, 4), torch.tensor([0]))
    return seen


def _expected_steps(script, steps: int) -> list[float]:
    """The paper's rule written out on scalars (η₀ = 2ε = 2); CE is increasing in s."""
    eta, out, w_prev, reduced_last, count = 2.0, [], 0, False, 0
    prev = best = best_last = script(0)
    checkpoints = _checkpoints_exact(steps)
    for i in range(steps):
        out.append(eta)
        f = script(i + 1)
        count += f > prev
        prev, best = f, max(best, f)
        if i + 1 in checkpoints:
            cond1 = count < 0.75 * (i + 1 - w_prev)
            cond2 = not reduced_last and best <= best_last
            if cond1 or cond2:
                eta, prev = eta / 2, best  # restart from the best point
            reduced_last, best_last, count, w_prev = cond1 or cond2, best, 0, i + 1
    return out


def test_step_is_kept_while_the_loss_keeps_rising(monkeypatch):
    seen = _recorded_steps(monkeypatch, lambda t: t, 30)
    assert seen == _expected_steps(lambda t: t, 30) == [2.0] * 30


def test_step_is_halved_at_every_checkpoint_of_a_flat_loss(monkeypatch):
    seen = _recorded_steps(monkeypatch, lambda t: 0, 30)
    assert seen == _expected_steps(lambda t: 0, 30)
    # checkpoints 7, 13, 18, 21, 24, 27, 28 (and 30, after the last step): 7 halvings
    assert seen[-1] == 2.0 / 2**7


def test_step_is_halved_when_too_few_steps_increase(monkeypatch):
    # The loss rises on every other step (1/2 < ρ = 3/4): condition 1 fires at every
    # checkpoint although the best loss keeps rising.
    script = lambda t: (t + 1) // 2  # noqa: E731
    seen = _recorded_steps(monkeypatch, script, 30)
    assert seen == _expected_steps(script, 30)
    assert seen[-1] < 2.0


def test_step_is_halved_when_the_best_loss_stalls(monkeypatch):
    # Up to 5, then 1, 2, 3, 4, 1, 2, ...: three increases in four steps (not < ρ), so
    # only condition 2 (no new best since the last checkpoint) can halve the step.
    script = lambda t: t if t <= 5 else (t - 6) % 4 + 1  # noqa: E731
    seen = _recorded_steps(monkeypatch, script, 40)
    assert seen == _expected_steps(script, 40)
    assert seen[-1] < 2.0


# -- ascent on a linear model with a closed-form optimum -----------------------------------


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_apgd_reaches_the_closed_form_maximum_of_a_linear_model(norm):
    # Two classes, logits Wx + b: CE of label y is increasing in the margin (w_o - w_y)·x,
    # so its maximum over the ball is at x + ε u, u = sign(w_o - w_y) (L∞) or the unit
    # vector (L2). ε is small enough that no example is fooled: APGD returns its best point.
    g = torch.Generator().manual_seed(0)
    net = nn.Linear(8, 2).double()
    with torch.no_grad():
        net.weight.copy_(torch.randn(2, 8, generator=g, dtype=torch.float64))
        net.bias.zero_()
    x = torch.randn(6, 8, generator=g, dtype=torch.float64)
    y = net(x).argmax(1)
    w = net.weight.detach()
    d = w[1 - y] - w[y]
    margin = (d * x).sum(1).abs()
    eps = float(0.3 * margin.min() / d.norm(dim=1).max())
    u = d.sign() if norm == "linf" else d / d.norm(dim=1, keepdim=True)
    best = F.cross_entropy(net(x + eps * u), y, reduction="none")
    res = apgd(net, x, y, eps=eps, norm=norm, clamp=None, steps=50, return_info=True)
    assert not bool(res.success.any())
    torch.testing.assert_close(res.objective, best, rtol=1e-4, atol=1e-6)


# -- every iterate in its ball and range ---------------------------------------------------


class _Recorder(nn.Module):
    """Wraps a network and keeps every input it is queried with."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


@st.composite
def _ball_problems(draw):
    b = draw(st.integers(1, 4))
    norm = draw(st.sampled_from(["l2", "linf"]))
    top = 0.5 if norm == "l2" else 0.2
    eps = draw(st.lists(st.floats(0.0, top), min_size=b, max_size=b))
    return {
        "b": b,
        "norm": norm,
        "eps": torch.tensor(eps) if draw(st.booleans()) else eps[0],
        "clamp": draw(st.sampled_from([(0.0, 1.0), None])),
        "attack": draw(st.sampled_from(["apgd-ce", "apgd-dlr", "apgd-t", "square"])),
        "eot": draw(st.sampled_from([0, 2])),
        "seed": draw(st.integers(0, 2**16)),
    }


@_SETTINGS
@given(_ball_problems())
def test_every_iterate_stays_in_its_ball_and_range(make_cnn, norm_of, p):
    # Every point any attack queries (random start, each step, each restart and target, each
    # Square proposal) lies in some example's ball and in the range. The images are far
    # apart compared with ε, so "some example's ball" is the example's own.
    g = torch.Generator().manual_seed(p["seed"])
    x = torch.rand(p["b"], 1, 10, 10, generator=g)
    net = _Recorder(make_cnn(seed=p["seed"] % 7))
    y = torch.randint(0, 10, (p["b"],), generator=g)
    kw = dict(eps=p["eps"], norm=p["norm"], clamp=p["clamp"])
    if p["attack"] == "square":
        attack = Square(n_queries=15, **kw)
    elif p["attack"] == "apgd-t":
        attack = APGDT(steps=6, n_targets=2, **kw)
    else:
        attack = APGD(steps=6, loss=p["attack"][5:], **kw)
    attack(net, x, y, generator=g)
    eps = p["eps"] if isinstance(p["eps"], torch.Tensor) else torch.full((p["b"],), p["eps"])
    for q in net.seen:
        dist = torch.stack([norm_of(q - x[b : b + 1], p["norm"]) for b in range(p["b"])], 1)
        assert bool(((dist - eps).min(dim=1).values <= 1e-5).all())
        if p["clamp"] is not None:
            assert float(q.min()) >= 0.0 and float(q.max()) <= 1.0


def test_zero_budget_leaves_the_input_and_per_example_budgets_are_respected(cnn, images, norm_of):
    x, y = images
    eps = torch.tensor([0.0, 0.3, 0.0, 0.1, 0.2, 0.0])
    for attack in (APGD(eps=eps, steps=5), APGDT(eps=eps, steps=3, n_targets=2)):
        x_adv = attack(cnn, x, y)
        assert bool((norm_of(x_adv - x) <= eps + 1e-6).all())
        torch.testing.assert_close(x_adv[eps == 0], x[eps == 0])


# -- EOT -----------------------------------------------------------------------------------


def test_eot_n_resamples_n_times_per_gradient(ensemble_cls):
    ppd = ensemble_cls(6, 4, m=2, sigma=1.0)
    x = torch.rand(3, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    APGD(eps=0.2, steps=4, eot=3)(ppd, x, y, generator=torch.Generator().manual_seed(0))
    assert ppd.resample_calls == 3 * (4 + 1)  # n per gradient, the start's included
    calls = ppd.resample_calls
    APGD(eps=0.2, steps=4)(ppd, x, y)  # eot off: the draws stay fixed
    assert ppd.resample_calls == calls


def test_eot_options_are_checked(linear_model):
    x = torch.rand(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="resample"):
        APGD(eps=0.1, eot=2)(linear_model, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="eot must be >= 0"):
        APGD(eps=0.1, eot=-1)
    with pytest.raises(TypeError, match="eot must be a bool or an int"):
        APGD(eps=0.1, eot=1.5)
    with pytest.raises(ValueError, match="loss must be one of 'ce', 'dlr'"):
        APGD(eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        APGD(eps=-0.1)
    with pytest.raises(ValueError, match="rho"):
        APGD(eps=0.1, rho=1.5)


def test_seeded_runs_repeat(cnn, images):
    x, y = images
    runs = [
        APGD(eps=0.3, steps=5)(cnn, x, y, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


# -- against torchattacks --------------------------------------------------------------------

# Robust accuracy on 48 held-out images of a small CNN trained on template images, ours and
# torchattacks' at the same norm, ε, steps, loss and number of targets. Not bitwise equal:
# different random starts (our stream vs torch's global RNG; L∞ starts drawn the same way),
# condition 1 counted from the start's loss (the reference compares the first step with 0),
# condition 2 applied at the first checkpoint (the paper; the reference skips it), and
# float reductions in another order. Tolerance: 3 of 48 examples (0.0625).
TOL = 3 / 48


def _acc(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.06), ("l2", 0.4)], ids=["linf", "l2"])
def test_apgd_matches_torchattacks(trained_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    net, x, y = trained_cnn
    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    gen = torch.Generator().manual_seed(0)
    for loss in ("ce", "dlr"):
        ours = _acc(net, APGD(eps=eps, norm=norm, loss=loss, steps=10)(net, x, y, generator=gen), y)
        ref_attack = torchattacks.APGD(net, norm=ta_norm, eps=eps, steps=10, loss=loss, seed=0)
        ref = _acc(net, ref_attack(x, y), y)
        assert abs(ours - ref) <= TOL + 1e-9, (loss, ours, ref)
        assert ours < _acc(net, x, y)  # the comparison is not vacuous


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.06), ("l2", 0.4)], ids=["linf", "l2"])
def test_apgdt_matches_torchattacks(trained_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    net, x, y = trained_cnn
    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    gen = torch.Generator().manual_seed(0)
    ours = _acc(net, APGDT(eps=eps, norm=norm, steps=10, n_targets=3)(net, x, y, generator=gen), y)
    # torchattacks' n_classes=4 means n_classes - 1 = 3 targets, the top-3 wrong classes
    ref_attack = torchattacks.APGDT(net, norm=ta_norm, eps=eps, steps=10, n_classes=4, seed=0)
    ref = _acc(net, ref_attack(x, y), y)
    assert abs(ours - ref) <= TOL + 1e-9, (ours, ref)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_standard_settings_match_torchattacks(trained_cnn, norm):
    # AutoAttack's standard budgets: 100 steps, 9 targets.
    torchattacks = pytest.importorskip("torchattacks")
    net, x, y = trained_cnn
    eps = {"linf": 0.06, "l2": 0.4}[norm]
    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    gen = torch.Generator().manual_seed(0)
    ours_ce = _acc(net, APGD(eps=eps, norm=norm)(net, x, y, generator=gen), y)
    ours_t = _acc(net, APGDT(eps=eps, norm=norm)(net, x, y, generator=gen), y)
    ref_ce = _acc(net, torchattacks.APGD(net, norm=ta_norm, eps=eps, steps=100)(x, y), y)
    ref_t = _acc(net, torchattacks.APGDT(net, norm=ta_norm, eps=eps, steps=100)(x, y), y)
    assert abs(ours_ce - ref_ce) <= TOL + 1e-9
    assert abs(ours_t - ref_t) <= TOL + 1e-9
