import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal
from torch.distributions import kl_divergence as torch_kl

from bnn_core import (
    BayesConv2d,
    BayesianModule,
    BayesLinear,
    GaussianPrior,
    forward_samples,
    kl_divergence,
)


def test_sums_every_layer_against_torch_distributions() -> None:
    model = nn.Sequential(
        BayesConv2d(1, 2, 3, prior=GaussianPrior(0.0, 0.5), init_sigma=0.1, dtype=torch.float64),
        nn.BatchNorm2d(2, dtype=torch.float64),  # deterministic: no KL
        nn.Flatten(),
        nn.Sequential(BayesLinear(8, 3, prior=GaussianPrior(0.2, 2.0), dtype=torch.float64)),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ref = torch.zeros((), dtype=torch.float64)
    for module in model.modules():
        if isinstance(module, BayesianModule):
            p = module.prior
            for _, mu, rho in module.variational_parameters():
                ref = ref + torch_kl(Normal(mu, F.softplus(rho)), Normal(p.loc, p.scale)).sum()
    torch.testing.assert_close(kl_divergence(model), ref)


def test_gradients_reach_mu_and_rho() -> None:
    model = nn.Sequential(BayesLinear(3, 2), nn.ReLU(), BayesLinear(2, 1))
    kl_divergence(model).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_model_has_zero_kl() -> None:
    kl = kl_divergence(nn.Linear(3, 2, dtype=torch.float64))
    assert kl.item() == 0.0 and kl.shape == ()


def test_a_reused_layer_counts_once_and_tied_parameters_are_refused() -> None:
    layer = BayesLinear(4, 4)
    reused = nn.Sequential(layer, nn.ReLU(), layer)  # one layer twice: one posterior
    torch.testing.assert_close(kl_divergence(reused), kl_divergence(layer))
    l1, l2 = BayesLinear(4, 4), BayesLinear(4, 4)
    l2.weight_mu, l2.weight_rho = l1.weight_mu, l1.weight_rho  # tied across two layers
    tied = nn.Sequential(l1, nn.ReLU(), l2)
    with pytest.raises(ValueError, match=r"'2.weight' shares a variational parameter with"):
        kl_divergence(tied)  # counted the tied weights twice
    with pytest.raises(ValueError, match="tied across two Bayesian layers"):
        forward_samples(tied, torch.randn(2, 4), 3, method="loop")  # drew them independently
