from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from adv_channels import ConvGenerator, DenseGenerator, LearnedChannel, squash_to_ball


def _conv_channel(eps=1.0, clamp=(0.0, 1.0), scale=1.0, seed=0):
    torch.manual_seed(seed)
    net = ConvGenerator(1, 10, num_classes=10)
    with torch.no_grad():
        net.mean_head.weight.mul_(scale)
        net.label_projection.weight.mul_(scale)
    return LearnedChannel(net, eps=eps, sigma_max=0.3, clamp=clamp)


@pytest.mark.parametrize("clamp", [None, (0.0, 1.0)], ids=["free", "clamped"])
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_mean_perturbation_respects_the_budget(images, norm_of, clamp, scale):
    x, y = images
    ch = _conv_channel(eps=0.5, clamp=clamp, scale=scale)
    for seed in range(3):
        xs = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
        mu = ch.mean(xs, y)
        assert (norm_of(mu - xs) <= 0.5 * (1 + 1e-6)).all()
        if clamp is not None:
            assert mu.min() >= 0 and mu.max() <= 1
    if scale > 1 and clamp is None:  # large raw outputs saturate at the boundary
        torch.testing.assert_close(norm_of(ch.mean(x, y) - x), torch.full((6,), 0.5))


def test_mean_scale_and_log_prob_follow_the_definition(images):
    x, y = images
    ch = _conv_channel(eps=0.7, clamp=None)
    m_raw, s = ch.network(x, y)
    mu_ref = x + squash_to_ball(m_raw, 0.7)
    scale_ref = 0.3 * torch.sigmoid(s)
    mu, scale = ch.loc_scale(x, y, None)
    torch.testing.assert_close(mu, mu_ref)
    torch.testing.assert_close(scale, scale_ref)
    assert (scale > 0).all() and (scale < 0.3).all()
    x_adv = ch.sample(x, y, generator=torch.Generator().manual_seed(0))
    ref = Normal(mu_ref, scale_ref).log_prob(x_adv).flatten(1).sum(1)
    torch.testing.assert_close(ch.log_prob(x_adv, x, y), ref)


def test_samples_have_the_generated_moments(moments):
    torch.manual_seed(0)
    ch = LearnedChannel(DenseGenerator(3).double(), eps=1.0, sigma_max=0.5)
    n = 20_000
    x = torch.tensor([[0.1, -0.3, 0.7]], dtype=torch.float64).expand(n, 3)
    y = torch.full((n,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        samples = ch.sample(x, y, generator=torch.Generator().manual_seed(1))
        mu, scale = ch.loc_scale(x[:1], y[:1], None)
    moments(samples, mu[0], scale[0])


def test_gradients_reach_the_generator_and_the_model(images, cnn):
    x, y = images
    ch = _conv_channel()
    x_adv = ch.sample(x, y, generator=torch.Generator().manual_seed(0))
    F.cross_entropy(cnn(x_adv), y).backward()
    for name, p in ch.network.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad.abs().sum() > 0 for p in cnn.parameters())


def test_missing_label_uses_the_target_prediction(images, cnn):
    x, _ = images
    ch = _conv_channel()
    a = ch.sample(x, None, cnn, generator=torch.Generator().manual_seed(0))
    b = ch.sample(x, cnn(x).argmax(1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def _expected_ce(ch, model, x, y, draws=8):
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        return (
            sum(F.cross_entropy(model(ch.sample(x, y, generator=g)), y) for _ in range(draws))
            / draws
        )


def test_adversary_step_raises_the_loss_and_leaves_the_target_untouched(linear_model):
    torch.manual_seed(0)
    ch = LearnedChannel(DenseGenerator(6, num_classes=4).double(), eps=1.0, sigma_max=0.1, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 6, dtype=torch.float64, generator=g)
    y = linear_model(x).argmax(1)
    linear_model.eval()
    linear_model.weight.grad = torch.full_like(linear_model.weight, 7.0)
    linear_model.bias.requires_grad_(False)
    params = [p.detach().clone() for p in linear_model.parameters()]
    before = _expected_ce(ch, linear_model, x, y)
    losses = [float(ch.adversary_step(linear_model, x, y, generator=g)) for _ in range(30)]
    after = _expected_ce(ch, linear_model, x, y)
    assert after > before + 0.5, (before, after)
    assert losses[-1] > losses[0]
    assert all(torch.equal(a, p) for a, p in zip(params, linear_model.parameters(), strict=True))
    assert torch.equal(linear_model.weight.grad, torch.full_like(linear_model.weight, 7.0))
    assert linear_model.bias.grad is None and not linear_model.bias.requires_grad
    assert linear_model.weight.requires_grad and not linear_model.training
    assert all(p.grad is None for p in ch.network.parameters())


def test_adversary_step_regression_raises_the_rmse(regressor_cls):
    torch.manual_seed(0)
    reg = regressor_cls(5)
    reg.train()
    ch = LearnedChannel(DenseGenerator(5).double(), eps=0.5, sigma_max=0.05, lr=1e-2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 5, dtype=torch.float64, generator=g)
    y = reg(x)[0].detach()

    def rmse():
        with torch.no_grad():
            gen = torch.Generator().manual_seed(9)
            return (reg(ch.sample(x, y, generator=gen))[0] - y).square().mean().sqrt()

    before = rmse()
    for _ in range(30):
        ch.adversary_step(reg, x, y, generator=g)
    assert rmse() > before + 0.1
    assert reg.training and all(p.grad is None for p in reg.parameters())


def test_state_dict_restores_the_optimiser(linear_model):
    def make():
        torch.manual_seed(0)
        return LearnedChannel(
            DenseGenerator(6, num_classes=4).double(), eps=1.0, sigma_max=0.1, lr=1e-2
        )

    x = torch.rand(16, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (16,))
    a = make()
    for s in range(3):
        a.adversary_step(linear_model, x, y, generator=torch.Generator().manual_seed(s))
    state = a.state_dict()
    assert any(k.endswith("_extra_state") for k in state)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    b = make()
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert int(b.optimizer.state_dict()["state"][0]["step"]) == 3
    c = make()  # the same weights without the optimiser state: Adam's moments start afresh
    c.network.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("network.")})
    for ch in (a, b, c):
        ch.adversary_step(linear_model, x, y, generator=torch.Generator().manual_seed(7))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_errors(images, cnn, regressor_cls):
    x, y = images
    ch = _conv_channel()
    with pytest.raises(ValueError, match="pass y, or target="):
        ch.sample(x)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 10, 10\)"):
        ch.sample(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="float32 parameters but x is torch.float64"):
        ch.sample(x.double(), y)
    with pytest.raises(ValueError, match="outside clamp"):
        ch.sample(x + 1.5, y)
    with pytest.raises(ValueError, match="expected class scores"):
        ch.sample(x, None, lambda t: (t.flatten(1).sum(1), torch.ones(len(t))))
    with pytest.raises(ValueError, match="pass target="):
        ch.adversary_step(None, x, y)
    with pytest.raises(TypeError, match="num_classes attribute"):
        LearnedChannel(nn.Linear(3, 3), eps=1.0, sigma_max=0.1)
    with pytest.raises(ValueError, match="sigma_max must be > 0"):
        LearnedChannel(DenseGenerator(3), eps=1.0, sigma_max=0.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        LearnedChannel(DenseGenerator(3), eps=-1.0, sigma_max=0.1)
    with pytest.raises(ValueError, match="y must hold one label per example"):
        ch.sample(x, y[:3])


def test_optimiser_state_follows_dtype_and_device_moves(linear_model):
    torch.manual_seed(0)
    ch = LearnedChannel(DenseGenerator(6, num_classes=4), eps=1.0, sigma_max=0.1)
    x, y = torch.rand(8, 6), torch.randint(0, 4, (8,))
    ch.adversary_step(linear_model.float(), x, y)
    ch.double()
    state = ch.optimizer.state_dict()["state"][0]
    assert state["exp_avg"].dtype == torch.float64
    ch.adversary_step(linear_model.double(), x.double(), y)
    assert int(ch.optimizer.state_dict()["state"][0]["step"]) == 2
