"""The amortised adversary: budget, gradient input, GAN-style training, strength."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adv_channels import (
    AmortisedChannel,
    ConvAmortisedGenerator,
    DenseAmortisedGenerator,
    amo50_channel,
    amo_channel,
    input_gradient,
)


def _boost(net: nn.Module, factor: float) -> None:
    """Make the raw outputs large (the squashing must still keep them in the budget)."""
    with torch.no_grad():
        net.gain.fill_(factor)
        for p in net.refine_head.parameters():
            p.normal_(0.0, factor)


@pytest.mark.parametrize("clamp", [None, (0.0, 1.0)], ids=["free", "clamped"])
@pytest.mark.parametrize("factor", [1.0, 1e3])
def test_mean_perturbation_respects_the_budget(cnn, images, norm_of, clamp, factor):
    x, y = images
    torch.manual_seed(0)
    ch = AmortisedChannel(
        ConvAmortisedGenerator(1, 10, num_classes=10), eps=0.5, sigma_max=0.3, clamp=clamp
    )
    _boost(ch.network, factor)
    for seed in range(3):
        xs = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
        mu = ch.mean(xs, y, cnn)
        assert (norm_of(mu - xs) <= 0.5 * (1 + 1e-6)).all()
        if clamp is not None:
            assert mu.min() >= 0 and mu.max() <= 1
    if factor > 1 and clamp is None:  # saturated at the sphere
        torch.testing.assert_close(norm_of(ch.mean(x, y, cnn) - x), torch.full((6,), 0.5))


def test_untrained_channel_is_the_scaled_gradient_step(linear_model, tabular):
    """Refinement zero at init: ``m = ε tanh(2) g/‖g‖``, ``g`` the CE gradient by hand."""
    x, y = tabular
    w, b = linear_model.weight.detach(), linear_model.bias.detach()
    p = F.softmax(x @ w.T + b, dim=-1)
    g = (p - F.one_hot(y, 4).to(x.dtype)) @ w
    torch.testing.assert_close(input_gradient(linear_model, x, y), g)
    ch = AmortisedChannel(
        DenseAmortisedGenerator(6, num_classes=4).double(), eps=0.7, sigma_max=0.1
    )
    ref = x + 0.7 * torch.tanh(torch.tensor(2.0, dtype=x.dtype)) * g / g.norm(dim=1, keepdim=True)
    torch.testing.assert_close(ch.mean(x, y, linear_model), ref)
    assert all(p.grad is None for p in linear_model.parameters())


def test_adversary_step_gives_the_generator_gradients(cnn, images):
    x, y = images
    ch = amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10)
    seen = {}
    step = ch.optimizer.step

    def spy(*args, **kwargs):
        for name, p in ch.network.named_parameters():
            seen[name] = None if p.grad is None else float(p.grad.abs().sum())
        return step(*args, **kwargs)

    ch.optimizer.step = spy
    ch.adversary_step(cnn, x, y, generator=torch.Generator().manual_seed(0))
    # every part of the generator is reached by the model's loss (the zero-initialised
    # refinement head through its weights: the hidden maps are non-zero)
    assert seen and all(v is not None and v > 0 for v in seen.values()), seen
    assert all(p.grad is None for p in cnn.parameters())


def _bands(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``c`` lights up row band ``c`` of a 10×10 image (a learnable toy problem)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, 10, 10, generator=g)
    for c in range(5):
        x[y == c, :, 2 * c : 2 * c + 2, :] += 0.7
    return x, y


def test_beats_random_perturbations_of_the_same_norm_on_a_trained_model(cnn, norm_of):
    x, y = _bands(128, 0)
    opt = torch.optim.Adam(cnn.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(cnn(x), y).backward()
        opt.step()
    assert (cnn(x).argmax(1) == y).float().mean() > 0.95
    ch = amo_channel((1, 10, 10), eps=1.0, sigma_max=1e-3, num_classes=10, clamp=None, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        ch.adversary_step(cnn, x, y, generator=g)
    with torch.no_grad():
        m = ch.mean(x, y, cnn) - x
        learned = F.cross_entropy(cnn(x + m), y)
        radius = norm_of(m).view(-1, 1, 1, 1)
        random_losses = []
        for seed in range(20):
            d = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + seed))
            d = d / norm_of(d).view(-1, 1, 1, 1) * radius
            random_losses.append(float(F.cross_entropy(cnn(x + d), y)))
    assert float(learned) > 3 * max(random_losses), (float(learned), max(random_losses))


def test_regression_and_mixture():
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()

    def regressor(t):
        return model(t).squeeze(1), torch.ones(len(t), dtype=t.dtype)

    x = torch.randn(32, 5, dtype=torch.float64)
    y = model(x).squeeze(1).detach()
    ch = amo_channel((5,), eps=0.5, sigma_max=0.05, num_classes=None).double()
    assert ch.clamp is None
    before = float(ch.adversary_step(regressor, x, y, generator=torch.Generator().manual_seed(0)))
    assert before > 0
    assert ((ch.mean(x, y, regressor) - x).norm(dim=1) < 0.5).all()
    mix = amo50_channel((5,), eps=0.5, sigma_max=0.05, num_classes=None).double()
    out = mix.sample(x, y, regressor, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and mix.learnable and mix.needs_target


def test_errors(cnn, images):
    x, y = images
    ch = amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10)
    with pytest.raises(ValueError, match="target"):
        ch.sample(x, y)
    with pytest.raises(ValueError, match="input_shape"):
        amo_channel((10, 10), eps=1.0, sigma_max=0.2, num_classes=10)
    with pytest.raises(ValueError, match="shape"):
        ch.network(x, y, torch.zeros(6, 1, 9, 9))


def test_adversary_fraction_trains_on_the_first_share_of_the_batch(cnn, images):
    x, y = images
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn

        def forward(self, t):
            seen.append(t.shape[0])
            return self.net(t)

    torch.manual_seed(0)
    a = amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10, adversary_fraction=0.5)
    torch.manual_seed(0)
    b = amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10)
    a.adversary_step(Spy(), x, y, generator=torch.Generator().manual_seed(0))
    assert seen and all(n == 3 for n in seen)  # ⌈0.5 · 6⌉
    b.adversary_step(cnn, x[:3], y[:3], generator=torch.Generator().manual_seed(0))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
    assert amo50_channel((5,), eps=0.5, sigma_max=0.1, num_classes=None).components[
        1
    ].adversary_fraction == pytest.approx(0.5)
    with pytest.raises(ValueError, match="adversary_fraction"):
        amo_channel((5,), eps=0.5, sigma_max=0.1, num_classes=None, adversary_fraction=1.5)


# -- the lower-resolution generators --------------------------------------------------------


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("shape", [(1, 10, 10), (3, 7, 9), (2, 4, 5)])
def test_lower_resolution_generator_shapes_and_initial_direction(shape, stride):
    """``stride=2``/``4`` map back to any ``H×W`` (sides that are not multiples of the stride
    too) and start at ``a ĝ`` exactly."""
    c, h, w = shape
    torch.manual_seed(0)
    net = ConvAmortisedGenerator(c, (h, w), num_classes=4, stride=stride)
    x = torch.rand(5, *shape)
    g = torch.randn(5, *shape)
    g_unit = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    d, s = net(x, torch.tensor([0, 1, 2, 3, 0]), g_unit)
    assert d.shape == s.shape == x.shape
    torch.testing.assert_close(d, 2.0 * g_unit)  # the r half of the head is zero at init
    assert s.abs().sum() > 0  # the log-scale half is not
    # after one ascent step the refinement is no longer zero: it is trainable
    ch = AmortisedChannel(net, eps=1.0, sigma_max=0.2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 4))
    ch.adversary_step(model, x, torch.tensor([0, 1, 2, 3, 0]))
    d2, _ = net(x, torch.tensor([0, 1, 2, 3, 0]), g_unit)
    assert not torch.allclose(d2, net.gain.detach() * g_unit)


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("factor", [1.0, 1e3])
def test_lower_resolution_mean_perturbation_respects_the_budget(
    cnn, images, norm_of, factor, stride
):
    x, y = images
    torch.manual_seed(0)
    ch = amo_channel((1, 10, 10), eps=0.5, sigma_max=0.3, num_classes=10, stride=stride)
    _boost(ch.network, factor)
    mu = ch.mean(x, y, cnn)
    assert (norm_of(mu - x) <= 0.5 * (1 + 1e-6)).all()
    assert mu.min() >= 0 and mu.max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 3}, "stride"),
        ({"stride": True}, "stride"),
        ({"image_size": 3, "stride": 2}, "4×4"),
        ({"image_size": 3, "stride": 4}, "4×4"),
    ],
)
def test_lower_resolution_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvAmortisedGenerator(1, **({"image_size": 10} | kwargs), num_classes=10)


# -- the joint update ----------------------------------------------------------------------


def test_joint_update_ascends_the_loss_its_backward_pass_left(cnn, images):
    """``update="joint"``: no own step; the generator keeps its gradient in autograd and
    ``joint_adversary_step`` raises the loss of the backward pass that filled it."""
    x, y = images
    torch.manual_seed(0)
    ch = amo_channel(
        (1, 10, 10), eps=1.0, sigma_max=1e-3, num_classes=10, clamp=None, update="joint", lr=1e-3
    )
    before = [p.detach().clone() for p in ch.network.parameters()]
    assert ch.adversary_step(cnn, x, y) is None  # a no-op: the trainer's pass trains it
    assert all(torch.equal(a, p) for a, p in zip(before, ch.network.parameters(), strict=True))
    assert ch.joint_parameters() == list(ch.network.parameters())

    def loss() -> torch.Tensor:
        x_adv = ch.sample(x, y, cnn, generator=torch.Generator().manual_seed(5))
        return F.cross_entropy(cnn(x_adv), y)

    start = loss()
    start.backward()
    assert all(p.grad is not None for p in ch.network.parameters())
    cnn.zero_grad(set_to_none=True)
    ch.joint_adversary_step()
    assert all(p.grad is None for p in ch.network.parameters())  # cleared after the step
    assert any(not torch.equal(a, p) for a, p in zip(before, ch.network.parameters(), strict=True))
    with torch.no_grad():
        assert float(loss()) > float(start)  # ascent (same noise draw)


def test_alternating_update_has_no_joint_parameters_and_mixtures_forward_them(images):
    alternating = amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10)
    assert alternating.update == "alternating" and alternating.joint_parameters() == []
    before = [p.detach().clone() for p in alternating.network.parameters()]
    alternating.joint_adversary_step()  # a no-op
    assert all(
        torch.equal(a, p) for a, p in zip(before, alternating.network.parameters(), strict=True)
    )
    mix = amo50_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10, update="joint")
    learned = mix.components[1]
    assert learned.update == "joint" and mix.joint_parameters() == learned.joint_parameters()
    assert alternating.learnable and not learned.learnable and not mix.learnable
    assert mix.adversary_step(lambda t: t.flatten(1)[:, :10], *images) is None
    with pytest.raises(ValueError, match="update"):
        amo_channel((1, 10, 10), eps=1.0, sigma_max=0.2, num_classes=10, update="sometimes")
    assert "update='joint'" in repr(learned)
