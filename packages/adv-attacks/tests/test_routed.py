"""RoutedOneStep: one pass, each example stepping on its own objective."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_attacks import ObjectiveSpec, RoutedObjective, RoutedOneStep, one_step


class CountingNet(nn.Module):
    """A small classifier that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 5))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


class GaussianRegressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(4, 1)
        self.log_var = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(x), self.log_var(x).exp()


SPECS = (ObjectiveSpec("nll"), ObjectiveSpec("cw", kappa=0.5), ObjectiveSpec("entropy"))


def _separately(model, x, y, specs, route, eps, norm, clamp):
    out = torch.empty_like(x)
    for k, spec in enumerate(specs):
        idx = (route == k).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = one_step(
                model,
                x[idx],
                None if y is None else y[idx],
                eps=eps,
                norm=norm,
                clamp=clamp,
                objective=spec.objective,
                kappa=spec.kappa,
                entropy_sign=spec.entropy_sign,
            )
    return out


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("labels", [True, False])
def test_equals_one_step_on_each_sub_batch(norm, chunk_size, labels) -> None:
    g = torch.Generator().manual_seed(1)
    model = CountingNet()
    x = torch.rand(11, 3, 2, 2, generator=g)
    y = torch.randint(0, 5, (11,), generator=g) if labels else None
    route = torch.randint(0, 3, (11,), generator=g)
    attack = RoutedOneStep(eps=0.4, specs=SPECS, route=route, norm=norm, chunk_size=chunk_size)
    got = attack(model, x, y)
    want = _separately(model, x, y, SPECS, route, 0.4, norm, (0.0, 1.0))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert not torch.equal(got, x)


def test_one_forward_pass_for_the_batch() -> None:
    model = CountingNet()
    x = torch.rand(9, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 5, (9,), generator=torch.Generator().manual_seed(3))
    route = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    RoutedOneStep(eps=0.3, specs=SPECS, route=route)(model, x, y)
    assert model.calls == 1


def test_regression_objectives_and_reported_values() -> None:
    torch.manual_seed(4)
    model = GaussianRegressor()
    x = torch.randn(8, 4)
    y = torch.randn(8)
    specs = (ObjectiveSpec("nll"), ObjectiveSpec("mse"), ObjectiveSpec("entropy"))
    route = torch.tensor([0, 1, 2, 2, 1, 0, 0, 1])
    attack = RoutedOneStep(eps=0.5, specs=specs, route=route, clamp=None)
    result = attack(model, x, y, return_info=True)
    want = _separately(model, x, y, specs, route, 0.5, "l2", None)
    torch.testing.assert_close(result.x_adv, want, atol=1e-6, rtol=0)
    mean, var = model(result.x_adv)
    mean, var = mean.squeeze(1).detach(), var.squeeze(1).detach()
    nll = 0.5 * (torch.log(2 * torch.pi * var) + (y - mean) ** 2 / var)
    expected = torch.stack([nll, (y - mean) ** 2, 0.5 * var.log()]).gather(0, route[None])[0]
    torch.testing.assert_close(result.objective, expected, atol=1e-5, rtol=1e-5)


def test_routed_objective_total_is_the_sum_of_each_objectives_total() -> None:
    from adv_attacks import ClassificationOutput

    log_probs = torch.randn(6, 4, generator=torch.Generator().manual_seed(5)).log_softmax(-1)
    out = ClassificationOutput(log_probs)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    route = torch.tensor([2, 0, 1, 0, 2, 1])
    routed = RoutedObjective(SPECS, route)
    by_hand = sum(
        spec.values(ClassificationOutput(log_probs[route == k]), y[route == k]).sum()
        for k, spec in enumerate(SPECS)
    )
    torch.testing.assert_close(routed.total(out, y), by_hand)
    assert routed.values(out, y).shape == (6,)
    assert routed.chunk(slice(2, 5)).route.tolist() == [1, 0, 2]


def test_errors() -> None:
    model = CountingNet()
    x = torch.rand(4, 3, 2, 2)
    with pytest.raises(TypeError, match="route"):
        RoutedObjective(SPECS, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="route"):
        RoutedObjective(SPECS, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="specs"):
        RoutedObjective((), torch.tensor([0]))
    with pytest.raises(ValueError, match="targeted"):
        RoutedObjective(
            (ObjectiveSpec("nll"), ObjectiveSpec("nll", targeted=True)),
            torch.zeros(1, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="route has 3 entries"):
        RoutedOneStep(eps=0.1, specs=SPECS, route=torch.tensor([0, 1, 2]))(model, x)
    with pytest.raises(ValueError, match="eps"):
        RoutedOneStep(eps=-1.0, specs=SPECS, route=torch.tensor([0, 1, 2, 0]))
