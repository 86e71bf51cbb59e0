from __future__ import annotations

import pytest
import torch

from adv_channels import squash_to_ball


def test_norm_is_eps_tanh_of_the_raw_norm_and_direction_is_kept(norm_of):
    g = torch.Generator().manual_seed(0)
    m = (
        torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
        * torch.logspace(-3, 3, 6).view(6, 1, 1).double()
    )
    out = squash_to_ball(m, 1.5)
    r = norm_of(m)
    torch.testing.assert_close(norm_of(out), 1.5 * torch.tanh(r / 1.5))
    torch.testing.assert_close(out / norm_of(out).view(6, 1, 1), m / r.view(6, 1, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_never_leaves_the_ball(dtype, norm_of):
    m = torch.randn(50, 784, dtype=dtype) * torch.logspace(-8, 8, 50, dtype=dtype).unsqueeze(1)
    out = squash_to_ball(m, 2.0)
    assert (norm_of(out) <= 2.0 * (1 + 4 * torch.finfo(dtype).eps)).all()
    assert torch.isfinite(out).all()


def test_identity_near_zero_and_at_zero():
    m = torch.full((2, 5), 1e-6, dtype=torch.float64)
    torch.testing.assert_close(squash_to_ball(m, 1.0), m, rtol=1e-10, atol=0)
    z = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    out = squash_to_ball(z, 1.0)
    assert torch.equal(out, torch.zeros(2, 5, dtype=torch.float64))
    (out * torch.arange(10.0, dtype=torch.float64).view(2, 5)).sum().backward()
    torch.testing.assert_close(z.grad, torch.arange(10.0, dtype=torch.float64).view(2, 5))


def test_gradcheck():
    m = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: squash_to_ball(t, 0.7), (m,))
    assert torch.autograd.gradcheck(lambda t: squash_to_ball(t * 1e-3, 0.7), (m,))


def test_zero_budget_and_errors():
    m = torch.randn(3, 4)
    assert torch.equal(squash_to_ball(m, 0.0), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        squash_to_ball(m, -1.0)
