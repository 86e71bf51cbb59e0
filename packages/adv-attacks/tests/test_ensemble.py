"""robust_accuracy: the worst case, its bookkeeping, masking diagnostics, EOT, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_attacks import (
    DiagnosticCode,
    RobustAccuracy,
    pgd,
    robust_accuracy,
    robust_accuracy_curve,
)

_QUICK = dict(steps=10, n_targets=3, n_queries=100, progress=False)


def _acc(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


def _check_bookkeeping(res: RobustAccuracy, net, x, y, eps, norm):
    """Recompute the worst case from the returned points and masks, independently."""
    b = x.shape[0]
    with torch.no_grad():
        clean = net(x).argmax(1) == y
        at_adv = net(res.x_adv).argmax(1) == y
    assert torch.equal(res.clean_correct, clean)
    # every fooling point fools, lies in the ball and the range; robust examples were not fooled
    assert not bool(at_adv[res.success].any())
    d = (res.x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bool((dist <= eps + 1e-5).all())
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert torch.equal(res.robust, clean & ~res.success)
    assert res.accuracy == pytest.approx(float(res.robust.double().mean()))
    assert torch.equal(res.broken_by >= 0, res.success)
    # the worst case is never above any single attack's accuracy on the whole batch
    cumulative = [a.cumulative_accuracy for a in res.attacks]
    assert cumulative == sorted(cumulative, reverse=True)
    for a in res.attacks:
        alone = (int(clean.sum()) - a.fooled) / b  # it alone, on the examples it saw
        assert res.accuracy <= alone + 1e-12
        # it is credited with at most the examples it fooled (checks re-attack fooled ones)
        assert a.fooled >= int((res.broken_by == res.attacks.index(a)).sum())
    assert res.accuracy <= res.clean_accuracy


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.06), ("l2", 0.4)], ids=["linf", "l2"])
def test_standard_worst_case_and_bookkeeping(trained_cnn, norm, eps):
    net, x, y = trained_cnn
    gen = torch.Generator().manual_seed(0)
    res = robust_accuracy(net, x, y, eps, norm, generator=gen, **_QUICK)
    assert [a.name for a in res.attacks][:3] == ["apgd-ce", "apgd-t", "square"]
    _check_bookkeeping(res, net, x, y, eps, norm)
    assert 0 < res.accuracy < res.clean_accuracy
    assert not res.flagged  # a plain trained CNN: no masking
    assert "worst case" in res.summary()


class _Quantised(nn.Module):
    """Gradient masking by construction: inputs rounded to 5 levels (zero gradient)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)


def test_gradient_masking_is_flagged(trained_cnn):
    # PGD and APGD see a zero gradient: they report the model robust; Square (no
    # gradients) is not fooled by the rounding and breaks it; the diagnostic fires.
    net, x, y = trained_cnn
    masked = _Quantised(net)
    eps = 0.15
    assert _acc(masked, pgd(masked, x, y, eps=eps, norm="linf", steps=10), y) >= 0.9
    res = robust_accuracy(
        masked, x, y, eps, "linf", generator=torch.Generator().manual_seed(0), **_QUICK
    )
    acc = res.per_attack
    assert acc["apgd-ce"] >= 0.9 and acc["apgd-t"] >= 0.9
    assert acc["square"] <= 0.5
    codes = {d.code for d in res.flagged}
    assert DiagnosticCode.GRADIENT_FREE_BEATS_GRADIENT in codes
    flag = next(d for d in res.flagged if d.code is DiagnosticCode.GRADIENT_FREE_BEATS_GRADIENT)
    assert "Square" in flag.message and flag.value > flag.threshold
    _check_bookkeeping(res, masked, x, y, eps, "linf")


def test_accuracy_that_does_not_fall_with_eps_is_flagged(trained_cnn):
    net, x, y = trained_cnn
    kw = dict(attacks=["apgd-ce"], one_step_check=False, **_QUICK)
    masked = robust_accuracy_curve(_Quantised(net), x, y, [0.05, 0.1, 0.15], "linf", **kw)
    assert any(d.code is DiagnosticCode.ACCURACY_NOT_DECREASING for d in masked.flagged)
    plain = robust_accuracy_curve(net, x, y, [0.02, 0.06, 0.15], "linf", **kw)
    assert plain.accuracy[0] > plain.accuracy[-1]
    assert not plain.diagnostics[0].flagged


def test_eot_lowers_the_accuracy_fixed_draws_report(ensemble_cls):
    # A Bayesian linear classifier's PPD over M = 2 draws, judged at fresh draws (what the
    # rand version does). APGD-CE on the predictive's current draws overfits them, and how
    # well its points transfer to fresh draws depends on those draws (accuracy 0.11 to 1.0
    # over 6 seeds); averaging each gradient over 10 redraws fools fresh draws more often
    # on average (6 seeds: 0.55 fixed vs 0.28 EOT; the same for M = 1). Compared here over
    # 4 seeds of the draws.
    ppd = ensemble_cls(16, 4, m=2, sigma=1.0, dtype=torch.float32, seed=10)
    g = torch.Generator().manual_seed(100)
    x = torch.rand(120, 16, generator=g)
    y = (x @ ppd.weight_mu.T + ppd.bias_mu).argmax(1).detach()
    fixed, eot, flags = [], [], []
    for seed in range(4):
        res = robust_accuracy(
            ppd,
            x,
            y,
            0.1,
            "linf",
            version="rand",
            attacks=["apgd-ce"],
            eot=10,
            steps=10,
            one_step_check=False,
            progress=False,
            generator=torch.Generator().manual_seed(1000 + seed),
        )
        fixed.append(res.per_attack["apgd-ce fixed draws (check)"])
        eot.append(res.per_attack["apgd-ce"])
        flags.append(
            next(d for d in res.diagnostics if d.code is DiagnosticCode.EOT_CHANGES_RESULT)
        )
        assert res.settings["eot"] == 10
    assert sum(eot) / 4 < sum(fixed) / 4 - 0.1, (fixed, eot)
    assert all(f.flagged == (abs(a - b) > 0.01) for f, a, b in zip(flags, fixed, eot, strict=True))
    assert any("overstate" in f.message for f in flags)


def test_rand_version_runs_apgd_ce_and_dlr(ensemble_cls):
    ppd = ensemble_cls(16, 4, m=2, sigma=0.3, dtype=torch.float32, seed=3)
    x = torch.rand(20, 16, generator=torch.Generator().manual_seed(4))
    y = (x @ ppd.weight_mu.T + ppd.bias_mu).argmax(1).detach()
    calls = ppd.resample_calls
    res = robust_accuracy(ppd, x, y, 0.1, "linf", version="rand", eot=2, **_QUICK)
    assert [a.name for a in res.attacks][:2] == ["apgd-ce", "apgd-dlr"]
    assert ppd.resample_calls > calls  # EOT and fresh-draw verdicts redraw
    assert res.accuracy <= res.clean_accuracy


def test_one_step_check_runs_and_enters_the_worst_case(trained_cnn):
    net, x, y = trained_cnn
    res = robust_accuracy(
        net,
        x,
        y,
        0.06,
        "linf",
        attacks=["apgd-ce"],
        generator=torch.Generator().manual_seed(0),
        **_QUICK,
    )
    names = [a.name for a in res.attacks]
    assert names == ["apgd-ce", "one-step (check)"]
    one = next(d for d in res.diagnostics if d.code is DiagnosticCode.ONE_STEP_BEATS_ITERATIVE)
    assert one.value >= 0 and one.message
    _check_bookkeeping(res, net, x, y, 0.06, "linf")


def test_bad_arguments_are_refused(trained_cnn, linear_model, regressor_cls):
    net, x, y = trained_cnn
    kw = dict(progress=False, steps=2, n_queries=2, n_targets=2)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        robust_accuracy(net, x, y, -0.1, "linf", **kw)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        robust_accuracy(net, x, y, float("nan"), "linf", **kw)
    with pytest.raises(ValueError, match="norm must be one of 'l2', 'linf'"):
        robust_accuracy(net, x, y, 0.1, "l1", **kw)
    with pytest.raises(ValueError, match="version must be one of 'standard', 'rand'"):
        robust_accuracy(net, x, y, 0.1, "linf", version="plus", **kw)
    with pytest.raises(ValueError, match="attacks"):
        robust_accuracy(net, x, y, 0.1, "linf", attacks=["fab"], **kw)
    with pytest.raises(ValueError, match="repeat"):
        robust_accuracy(net, x, y, 0.1, "linf", attacks=["square", "square"], **kw)
    with pytest.raises(ValueError, match="class indices in"):
        robust_accuracy(net, x, torch.full_like(y, 10), 0.1, "linf", **kw)
    with pytest.raises(TypeError, match="integer class indices"):
        robust_accuracy(net, x, y.float(), 0.1, "linf", **kw)
    with pytest.raises(TypeError, match="y must be a tensor"):
        robust_accuracy(net, x, None, 0.1, "linf", **kw)
    with pytest.raises(ValueError, match="outside clamp"):
        robust_accuracy(net, x + 2, y, 0.1, "linf", **kw)
    with pytest.raises(ValueError, match="resample"):
        robust_accuracy(net, x, y, 0.1, "linf", version="rand", **kw)
    with pytest.raises(ValueError, match="classification"):
        reg = regressor_cls(6, dtype=torch.float32)
        robust_accuracy(reg, torch.rand(3, 6), torch.zeros(3, dtype=torch.long), 0.1, "l2", **kw)
    with pytest.raises(TypeError, match="predictive must be callable"):
        robust_accuracy("net", x, y, 0.1, "linf", **kw)
    with pytest.raises(ValueError, match="strictly increasing"):
        robust_accuracy_curve(net, x, y, [0.2, 0.1], "linf", **kw)
