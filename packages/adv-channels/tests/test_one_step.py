from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from adv_attacks import one_step
from adv_channels import NoDensityError, OneStepChannel


def _closed_form_point(w, b, x, y, eps):
    """``x + ε g/‖g‖`` for ``-log softmax(W x + b)_y``: ``g = (p - onehot(y)) W``."""
    p = F.softmax(x @ w.T + b, dim=-1)
    g = (p - F.one_hot(y, w.shape[0]).to(x.dtype)) @ w
    return x + eps * g / g.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("objective", ["nll", "cw", "entropy"])
def test_samples_sit_at_distance_eps_before_noise(cnn, images, norm_of, objective):
    x, _ = images
    y = cnn(x).argmax(1)  # correctly classified: the CW margin is below κ = 0, g ≠ 0
    ch = OneStepChannel(eps=0.8, sigma=0.0, objective=objective, clamp=None)
    x_adv = ch.sample(x, y, cnn)
    torch.testing.assert_close(norm_of(x_adv - x), torch.full((6,), 0.8))
    torch.testing.assert_close(x_adv, one_step(cnn, x, y, eps=0.8, objective=objective, clamp=None))


def test_clamped_attack_point_is_within_eps_and_range(cnn, images, norm_of):
    x, y = images
    ch = OneStepChannel(eps=3.0, sigma=0.0)
    point = ch.mean(x, y, cnn)
    assert (norm_of(point - x) <= 3.0 + 1e-5).all()
    assert point.min() >= 0 and point.max() <= 1
    assert (norm_of(point - x) < 3.0 - 1e-3).any()  # the clamp did shorten some steps


def test_mean_is_the_closed_form_step(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.7, sigma=0.2, clamp=None)
    ref = _closed_form_point(linear_model.weight.detach(), linear_model.bias.detach(), x, y, 0.7)
    torch.testing.assert_close(ch.mean(x, y, linear_model), ref)


def test_log_prob_is_gaussian_around_the_attack_point(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.7, sigma=0.2, clamp=None)
    x_adv = ch.sample(x, y, linear_model, generator=torch.Generator().manual_seed(0))
    ref_mu = _closed_form_point(linear_model.weight.detach(), linear_model.bias.detach(), x, y, 0.7)
    ref = Normal(ref_mu, 0.2).log_prob(x_adv).sum(1)
    torch.testing.assert_close(ch.log_prob(x_adv, x, y, linear_model), ref)


def test_noise_moments_around_the_attack_point(linear_model, moments):
    n = 20_000
    x = torch.full((n, 6), 0.5, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.long)
    ch = OneStepChannel(eps=0.5, sigma=0.3, clamp=None)
    samples = ch.sample(x, y, linear_model, generator=torch.Generator().manual_seed(1))
    mu = ch.mean(x[:1], y[:1], linear_model)[0]
    moments(samples, mu, 0.3)


def test_noise_is_added_after_the_clamp(cnn, images):
    x, y = images
    x_adv = OneStepChannel(eps=3.0, sigma=0.5).sample(x, y, cnn)
    assert x_adv.min() < 0 and x_adv.max() > 1  # the density stays exactly Gaussian


def test_missing_label_uses_the_clean_prediction(linear_model, tabular):
    x, _ = tabular
    pred = linear_model(x).argmax(1)
    ch = OneStepChannel(eps=0.4, sigma=0.0, clamp=None)
    torch.testing.assert_close(ch.sample(x, None, linear_model), ch.sample(x, pred, linear_model))


def test_regression_mse_step(regressor_cls, norm_of):
    reg = regressor_cls(5)
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    ch = OneStepChannel(eps=0.3, sigma=0.0, objective="mse", clamp=None)
    # d(y - w·x - b)² / dx = -2 (y - m) w: the step is ±w/‖w‖ times ε.
    sign = -torch.sign(y - reg(x)[0]).unsqueeze(1)
    w = reg.w.detach()
    torch.testing.assert_close(ch.mean(x, y, reg), x + 0.3 * sign * w / w.norm())


def test_gradients_flow_to_the_model_through_the_forward_on_samples(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.5, sigma=0.1, clamp=None)
    x_adv = ch.sample(x, y, linear_model)
    assert x_adv.grad_fn is None  # Danskin: the attack direction is a constant
    F.cross_entropy(linear_model(x_adv), y).backward()
    assert linear_model.weight.grad is not None and linear_model.weight.grad.abs().sum() > 0


def test_differentiable_step_matches_the_closed_form_jacobian(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.7, sigma=0.0, clamp=None, differentiable=True)
    v = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    point = ch.sample(x, y, linear_model)
    (dw,) = torch.autograd.grad((point * v).sum(), linear_model.weight)
    w = linear_model.weight.detach().clone().requires_grad_(True)
    ref = _closed_form_point(w, linear_model.bias.detach(), x, y, 0.7)
    (dw_ref,) = torch.autograd.grad((ref * v).sum(), w)
    torch.testing.assert_close(point, ref.detach())
    torch.testing.assert_close(dw, dw_ref)
    assert dw.abs().sum() > 0


def test_differentiable_gradcheck_in_the_weights(tabular):
    x, y = tabular
    bias = torch.randn(4, dtype=torch.float64)
    ch = OneStepChannel(eps=0.5, sigma=0.0, clamp=None, differentiable=True)

    def f(w):
        return ch.mean(x, y, lambda t: t @ w.T + bias)

    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (w,))


def test_differentiable_and_default_agree_in_value(cnn, images):
    x, y = images
    a = OneStepChannel(eps=1.0, sigma=0.0, differentiable=True).sample(x, y, cnn)
    b = OneStepChannel(eps=1.0, sigma=0.0).sample(x, y, cnn)
    torch.testing.assert_close(a, b)
    assert a.requires_grad and not b.requires_grad


@pytest.mark.parametrize("training", [True, False])
def test_target_is_left_untouched(cnn, images, training):
    x, y = images
    before = [p.detach().clone() for p in cnn.parameters()]
    cnn.train(training)
    OneStepChannel(eps=1.0, sigma=0.1).sample(x, y, cnn)
    assert all(m.training is training for m in cnn.modules())
    assert all(p.requires_grad and p.grad is None for p in cnn.parameters())
    assert all(torch.equal(a, p) for a, p in zip(before, cnn.parameters(), strict=True))


def test_input_gradient_is_the_identity(linear_model, tabular):
    x, y = tabular
    xr = x.clone().requires_grad_(True)
    OneStepChannel(eps=0.5, sigma=0.1, clamp=None).sample(xr, y, linear_model).sum().backward()
    torch.testing.assert_close(xr.grad, torch.ones_like(x))


def test_point_mass_has_no_density(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.5, sigma=0.0, clamp=None)
    assert not ch.has_density and ch.needs_target
    with pytest.raises(NoDensityError, match="point mass"):
        ch.log_prob(x, x, y, linear_model)


def test_errors(linear_model, tabular):
    x, y = tabular
    ch = OneStepChannel(eps=0.5, sigma=0.1, clamp=None)
    with pytest.raises(ValueError, match="pass target="):
        ch.sample(x, y)
    with pytest.raises(TypeError, match="target must be callable"):
        ch.sample(x, y, target=3)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        OneStepChannel(eps=-1.0, sigma=0.1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        OneStepChannel(eps=1.0, sigma=-0.1)
    with pytest.raises(ValueError, match="norm='l2'"):
        OneStepChannel(eps=1.0, sigma=0.1, norm="linf", differentiable=True)
    with pytest.raises(ValueError, match="objective must be one of"):
        OneStepChannel(eps=1.0, sigma=0.1, objective="bogus")
    with pytest.raises(ValueError, match="y must hold one label per example"):
        ch.sample(x, y[:3], linear_model)
    with pytest.raises(ValueError, match="outside clamp"):
        OneStepChannel(eps=1.0, sigma=0.1).sample(x + 2, y, linear_model)
    with pytest.raises(ValueError, match="x_adv must have the shape of x"):
        ch.log_prob(x[:, :3], x, y, linear_model)
