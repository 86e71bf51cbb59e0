from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from adv_channels import diag_normal_log_prob, standard_normal


@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 4, 4), (4, 1)], ids=str)
def test_log_prob_matches_torch_normal_scalar_and_tensor_scale(shape):
    g = torch.Generator().manual_seed(0)
    v, loc = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g)
    loc = loc.double()
    scale = torch.rand(shape, generator=g, dtype=torch.float64) + 0.1
    ref = Normal(loc, scale).log_prob(v).flatten(1).sum(1)
    torch.testing.assert_close(diag_normal_log_prob(v, loc, scale), ref)
    ref = Normal(loc, 0.3).log_prob(v).flatten(1).sum(1)
    torch.testing.assert_close(diag_normal_log_prob(v, loc, 0.3), ref)


def test_log_prob_broadcasts_a_per_feature_scale():
    v, loc = torch.randn(4, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    ref = Normal(loc, scale.expand(4, 3)).log_prob(v).sum(1)
    torch.testing.assert_close(diag_normal_log_prob(v, loc, scale), ref)


def test_standard_normal_follows_the_generator():
    x = torch.zeros(3, 4, dtype=torch.float64)
    a = standard_normal(x, torch.Generator().manual_seed(5))
    b = standard_normal(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.float64 and a.shape == x.shape
    assert not torch.equal(a, standard_normal(x, torch.Generator().manual_seed(6)))
