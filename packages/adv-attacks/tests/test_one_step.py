from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adv_attacks import OneStep, one_step


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def test_moves_exactly_eps_along_the_analytic_nll_gradient(linear_model, norm_of):
    x = torch.rand(5, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    x_adv = one_step(linear_model, x, y, eps=0.7, clamp=None)
    w, b = linear_model.weight.detach(), linear_model.bias.detach()
    p = F.softmax(x @ w.T + b, dim=-1)
    g = (p - F.one_hot(y, 4).double()) @ w  # d(-log p_y)/dx for logits W x + b
    torch.testing.assert_close(norm_of(x_adv - x), torch.full((5,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(x_adv - x, 0.7 * _unit(g))


def test_cw_gradient_is_difference_of_weight_rows(linear_model):
    # log p_k - log p_y = z_k - z_y: the normaliser cancels, the gradient is W_k* - W_y
    # with k* the best other class (true class masked, not zeroed).
    x = torch.rand(5, 6, dtype=torch.float64)
    w, b = linear_model.weight.detach(), linear_model.bias.detach()
    z = x @ w.T + b
    y = z.argmax(-1)  # correctly classified: margin < 0 = kappa, gradient alive
    k = z.scatter(1, y[:, None], float("-inf")).argmax(-1)
    x_adv = one_step(linear_model, x, y, eps=0.3, objective="cw", clamp=None)
    torch.testing.assert_close(x_adv - x, 0.3 * _unit(w[k] - w[y]))


def test_cw_beyond_kappa_has_zero_gradient(linear_model):
    x = torch.rand(4, 6, dtype=torch.float64)
    z = linear_model(x)
    y = z.argmin(-1)  # margin > 0 = kappa: capped, nothing to gain, x unchanged
    x_adv = one_step(linear_model, x, y, eps=0.3, objective="cw", clamp=None)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("eps", [4.0, 10.0])
def test_zero_gradient_is_no_move_at_large_eps(linear_model, eps):
    # the step's scale eps / max(‖g‖, tiny) overflowed for eps >= 4: inf * 0 = NaN
    x = torch.rand(4, 6, dtype=torch.float64)
    y = linear_model(x).argmin(-1)  # cw margin capped at kappa = 0: g = 0 exactly
    x_adv = one_step(linear_model, x, y, eps=eps, objective="cw", clamp=None)
    assert torch.equal(x_adv, x)


def test_eps_zero_changes_nothing(cnn, images):
    x, y = images
    for objective in ("nll", "cw", "entropy"):
        for norm in ("l2", "linf"):
            assert torch.equal(one_step(cnn, x, y, eps=0.0, objective=objective, norm=norm), x)


def test_linf_is_fgsm(linear_model):
    x = torch.rand(5, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(linear_model(xr), y, reduction="sum"), xr)
    ref = (x + 0.05 * g.sign()).clamp(0, 1)
    torch.testing.assert_close(one_step(linear_model, x, y, eps=0.05, norm="linf"), ref)


def test_per_example_eps_equals_separate_runs(cnn, images):
    x, y = images
    eps = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    batch = one_step(cnn, x, y, eps=eps)
    for i in range(6):
        alone = one_step(cnn, x[i : i + 1], y[i : i + 1], eps=float(eps[i]))
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-6, rtol=1e-5)


def test_one_example_equals_its_slice_of_the_batch(cnn, images):
    x, _ = images
    batch = one_step(cnn, x, eps=1.0, objective="entropy")
    for i in range(x.shape[0]):
        alone = one_step(cnn, x[i : i + 1], eps=1.0, objective="entropy")
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-6, rtol=1e-5)


def test_without_labels_uses_the_clean_prediction(cnn, images):
    x, _ = images
    y_hat = cnn(x).argmax(-1)
    torch.testing.assert_close(one_step(cnn, x, eps=1.0), one_step(cnn, x, y_hat, eps=1.0))


@pytest.mark.parametrize("column", [False, True])
def test_regression_mse_step_is_analytic(regressor_cls, column):
    model = regressor_cls(5, column=column)
    x = torch.randn(4, 5, dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64) * 3
    mean, _ = model(x)
    resid = y - mean.reshape(-1).detach()
    # d(y - w.x - b)^2/dx = -2 (y - m) w
    direction = -resid.sign()[:, None] * _unit(model.w.detach())[None, :]
    x_adv = one_step(model, x, y, eps=0.4, objective="mse", clamp=None)
    torch.testing.assert_close(x_adv - x, 0.4 * direction)
    # Without labels the target is the clean mean: zero residual, zero gradient, no move.
    assert torch.equal(one_step(model, x, eps=0.4, objective="mse", clamp=None), x)


def test_regression_entropy_raises_log_std(regressor_cls):
    model = regressor_cls(5)
    x = torch.randn(4, 5, dtype=torch.float64)
    res = one_step(model, x, eps=0.3, objective="entropy", clamp=None, return_info=True)
    assert res.success is None
    clean = 0.5 * model(x)[1].log()
    assert (res.objective > clean).all()
    torch.testing.assert_close(res.objective, 0.5 * model(res.x_adv)[1].log())


def test_ppd_gradient_is_that_of_the_mean_probabilities(ensemble_cls):
    """The objective is -log of the mean probabilities (SPEC §2), checked against the
    hand-derived gradient; averaged logits and averaged per-draw losses give other steps."""
    model = ensemble_cls(d=6, c=4, m=5, sigma=0.8)
    x = torch.rand(5, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    w, b = (t.detach() for t in model.weights())  # (M, C, D), (M, C)
    p = F.softmax(torch.einsum("mcd,bd->mbc", w, x) + b[:, None], dim=-1)  # (M, B, C)
    p_y = p[:, torch.arange(5), y]  # (M, B)
    w_y = w[:, y, :]  # (M, B, D)
    dlogp = w_y - torch.einsum("mbc,mcd->mbd", p, w)  # d log p_m,y / dx
    g_ppd = -(p_y[..., None] * dlogp).sum(0) / p_y.sum(0)[:, None]
    x_adv = one_step(model, x, y, eps=0.5, clamp=None)
    torch.testing.assert_close(x_adv - x, 0.5 * _unit(g_ppd))

    w_bar, b_bar = w.mean(0), b.mean(0)
    p_bar = F.softmax(x @ w_bar.T + b_bar, dim=-1)
    g_mean_logits = (p_bar - F.one_hot(y, 4).double()) @ w_bar
    g_mean_losses = -dlogp.mean(0)
    for other in (g_mean_logits, g_mean_losses):
        assert not torch.allclose(x_adv - x, 0.5 * _unit(other), atol=1e-4)


def test_bnn_with_vanishing_sigma_equals_deterministic(ensemble_cls):
    x = torch.rand(5, 6, dtype=torch.float64)
    det = nn.Linear(6, 4).double()
    for sigma, close in ((1e-9, True), (0.5, False)):
        bnn = ensemble_cls(d=6, c=4, m=3, sigma=sigma)
        with torch.no_grad():
            det.weight.copy_(bnn.weight_mu)
            det.bias.copy_(bnn.bias_mu)
        for objective in ("nll", "cw", "entropy"):
            a = one_step(bnn, x, eps=0.5, objective=objective)
            d = one_step(det, x, eps=0.5, objective=objective)
            assert torch.allclose(a, d, atol=1e-6) is close


def test_eot_resamples_once_and_is_seeded(ensemble_cls):
    model = ensemble_cls(d=6, c=4, m=3, sigma=1.0)
    x = torch.rand(3, 6, dtype=torch.float64)
    one_step(model, x, eps=0.5)
    assert model.resample_calls == 0
    a = one_step(model, x, eps=0.5, eot=True, generator=torch.Generator().manual_seed(1))
    b = one_step(model, x, eps=0.5, eot=True, generator=torch.Generator().manual_seed(1))
    assert model.resample_calls == 2
    assert torch.equal(a, b)


def test_targeted_moves_towards_the_target(linear_model):
    x = torch.rand(5, 6, dtype=torch.float64)
    t = linear_model(x).argmin(-1)
    res = one_step(linear_model, x, t, eps=0.1, targeted=True, clamp=None, return_info=True)
    clean = F.log_softmax(linear_model(x), -1)[torch.arange(5), t]
    assert (res.objective > clean).all()  # the objective is log p_t, ascended


def test_class_api_matches_function(cnn, images):
    x, y = images
    attack = OneStep(eps=1.0, objective="cw", kappa=0.1)
    assert torch.equal(attack(cnn, x, y), one_step(cnn, x, y, eps=1.0, objective="cw", kappa=0.1))


def test_matches_torchattacks_pgdl2_one_step_and_fgsm(make_cnn):
    """torchattacks' PGDL2 with steps=1, alpha=eps, random_start=False is the one-step attack.

    Conventions that differ and why the results still agree: torchattacks averages the loss
    over the batch (a positive factor, removed by the per-example normalisation), divides
    by ``‖g‖ + 1e-10`` instead of ``max(‖g‖, tiny)`` (with the batch mean, ``‖g‖ ~ 1e-3``
    per example here, so the step differs by ~1e-7 of its length: hence ``atol=1e-7``),
    projects after the step (a no-op: the step has norm ε) and switches the model to
    eval() (the model has no dropout or batch norm). FGSM is the L∞ one-step attack.
    float64 keeps rounding out of the comparison.
    """
    torchattacks = pytest.importorskip("torchattacks")
    model = make_cnn(seed=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(8, 1, 10, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=g)
    ta = torchattacks.PGDL2(model, eps=1.5, alpha=1.5, steps=1, random_start=False)
    torch.testing.assert_close(one_step(model, x, y, eps=1.5), ta(x, y), atol=1e-7, rtol=0)
    fgsm = torchattacks.FGSM(model, eps=0.1)
    torch.testing.assert_close(
        one_step(model, x, y, eps=0.1, norm="linf"), fgsm(x, y), atol=1e-12, rtol=0
    )
