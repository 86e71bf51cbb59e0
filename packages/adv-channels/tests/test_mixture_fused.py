"""One-step components that differ in their objective only sample in one attack pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_channels import GaussianChannel, IdentityChannel, MixtureChannel, OneStepChannel
from adv_channels.one_step import sample_one_steps


class Counting(nn.Module):
    """Wraps a classifier and counts the forward passes through it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def _mix(sigma: float, **kw) -> MixtureChannel:
    """The paper's MIX: 0.4 identity + 0.2 one-step nll / cw / entropy."""
    parts = [
        OneStepChannel(eps=1.0, sigma=sigma, objective=o, **kw) for o in ("nll", "cw", "entropy")
    ]
    return MixtureChannel([IdentityChannel(), *parts], [0.4, 0.2, 0.2, 0.2])


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, 1, 10, 10, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("stratified", [True, False])
def test_fused_points_equal_each_component_on_its_own_examples(cnn, stratified) -> None:
    x, y = _data(40)
    mix = _mix(0.0)
    mix.stratified = stratified
    x_adv, comp = mix.sample_with_components(x, y, cnn, generator=torch.Generator().manual_seed(1))
    assert set(comp.tolist()) == {0, 1, 2, 3}
    for k, channel in enumerate(mix.components):
        idx = (comp == k).nonzero().squeeze(1)
        want = channel.sample(x[idx], y[idx], cnn)
        torch.testing.assert_close(x_adv[idx], want, atol=1e-6, rtol=0)


def test_one_attack_pass_for_the_three_objectives(cnn) -> None:
    x, y = _data(20)
    target = Counting(cnn)
    _mix(0.1).sample(x, y, target, generator=torch.Generator().manual_seed(2))
    assert target.calls == 1  # three, one per component, before the fusion


def test_fused_noise_has_the_components_law(cnn) -> None:
    x, y = _data(300)
    sigma = 0.3
    noisy = _mix(sigma)
    x_adv, comp = noisy.sample_with_components(
        x, y, cnn, generator=torch.Generator().manual_seed(3)
    )
    points = torch.empty_like(x)
    for k, channel in enumerate(_mix(0.0).components):
        idx = (comp == k).nonzero().squeeze(1)
        points[idx] = channel.sample(x[idx], y[idx], cnn)
    attacked = comp > 0
    noise = (x_adv - points)[attacked]
    assert abs(float(noise.mean())) < 0.01
    assert abs(float(noise.std()) - sigma) < 0.01
    assert torch.equal(x_adv[~attacked], x[~attacked])


def test_fuses_with_only_differing_objectives() -> None:
    base = OneStepChannel(eps=1.0, sigma=0.1, objective="nll")
    assert base.fuses_with(OneStepChannel(eps=1.0, sigma=0.1, objective="cw"))
    for other in (
        OneStepChannel(eps=2.0, sigma=0.1, objective="cw"),
        OneStepChannel(eps=1.0, sigma=0.2, objective="cw"),
        OneStepChannel(eps=1.0, sigma=0.1, objective="cw", norm="linf"),
        OneStepChannel(eps=1.0, sigma=0.1, objective="cw", clamp=None),
        OneStepChannel(eps=1.0, sigma=0.1, objective="cw", eot=True),
        OneStepChannel(eps=1.0, sigma=0.1, objective="cw", differentiable=True),
        OneStepChannel(eps=1.0, sigma=0.1, objective="cw", chunk_size=4),
        GaussianChannel(0.1),
    ):
        assert not base.fuses_with(other), other

    class Custom(OneStepChannel):
        pass

    assert not base.fuses_with(Custom(eps=1.0, sigma=0.1, objective="cw"))


def test_unfusable_components_still_sample_one_by_one(cnn) -> None:
    x, y = _data(20)
    target = Counting(cnn)
    mix = MixtureChannel(
        [
            OneStepChannel(eps=1.0, sigma=0.0, objective="nll"),
            OneStepChannel(eps=2.0, sigma=0.0, objective="cw"),
        ],
        [0.5, 0.5],
    )
    x_adv, comp = mix.sample_with_components(
        x, y, target, generator=torch.Generator().manual_seed(4)
    )
    assert target.calls == 2
    for k, channel in enumerate(mix.components):
        idx = (comp == k).nonzero().squeeze(1)
        torch.testing.assert_close(x_adv[idx], channel.sample(x[idx], y[idx], cnn))


def test_sample_one_steps_refuses_channels_that_do_not_fuse(cnn) -> None:
    x, y = _data(4)
    channels = [OneStepChannel(eps=1.0, sigma=0.0), OneStepChannel(eps=2.0, sigma=0.0)]
    with pytest.raises(ValueError, match="objective only"):
        sample_one_steps(channels, torch.tensor([0, 1, 0, 1]), x, y, cnn)


def test_the_fused_sample_passes_input_gradients_through(cnn) -> None:
    x, y = _data(12)
    x = x.requires_grad_()
    x_adv = _mix(0.1).sample(x, y, cnn, generator=torch.Generator().manual_seed(5))
    x_adv.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))  # ∂x'/∂x is the identity
