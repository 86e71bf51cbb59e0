from __future__ import annotations

import pytest
import torch
from scipy import stats

from adv_attacks import Norm, per_example_norm, random_in_ball
from adv_attacks.norms import ascend, project


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_per_example_norm(norm, norm_of):
    t = torch.randn(4, 2, 3, 5)
    torch.testing.assert_close(per_example_norm(t, norm), norm_of(t, norm))


def test_norm_enum():
    assert Norm("linf") is Norm.LINF
    with pytest.raises(ValueError):
        Norm("l1")


def test_ascend_takes_normalised_steps_and_ignores_zero_gradients(norm_of):
    g = torch.randn(3, 7)
    g[1] = 0.0
    eta = torch.tensor([0.5, 2.0, 1.0])
    x = ascend(torch.zeros(3, 7), g, eta, Norm.L2)
    torch.testing.assert_close(norm_of(x), torch.tensor([0.5, 0.0, 1.0]))
    torch.testing.assert_close(x[0], 0.5 * g[0] / g[0].norm())
    x = ascend(torch.zeros(3, 7), g, eta, Norm.LINF)
    torch.testing.assert_close(x, eta[:, None] * g.sign())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eta", [4.0, 5.0, 1e6])
def test_ascend_zero_gradient_is_no_move_for_large_steps(dtype, eta, norm_of):
    # η / max(‖g‖, tiny) overflowed to inf for η >= 4 and inf * 0 gave NaN
    g = torch.randn(3, 7, dtype=dtype)
    g[1] = 0.0
    g[2] = torch.finfo(dtype).tiny / 8  # subnormal: η / ‖g‖ overflows, counts as zero
    x = ascend(torch.zeros(3, 7, dtype=dtype), g, torch.full((3,), eta, dtype=dtype), Norm.L2)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x[1:], torch.zeros(2, 7, dtype=dtype))
    torch.testing.assert_close(norm_of(x[:1]), torch.tensor([eta], dtype=dtype))


def test_project_l2_scales_only_outside_points():
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [1.0, 0.0]])
    eps = torch.tensor([1.0, 1.0, 0.0, 0.0])
    out = project(delta.clone(), eps, Norm.L2)
    ref = torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(out, ref)


def test_project_linf_clamps_elementwise():
    delta = torch.tensor([[3.0, -0.2], [-2.0, 0.5]])
    out = project(delta.clone(), torch.tensor([0.5, 1.0]), Norm.LINF)
    torch.testing.assert_close(out, torch.tensor([[0.5, -0.2], [-1.0, 0.5]]))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_in_ball_stays_inside_and_is_seeded(norm, norm_of):
    x = torch.zeros(50, 3, 4)
    eps = torch.linspace(0.0, 2.0, 50)
    d1 = random_in_ball(x, eps, norm, generator=torch.Generator().manual_seed(3))
    d2 = random_in_ball(x, eps, norm, generator=torch.Generator().manual_seed(3))
    assert torch.equal(d1, d2)
    assert (norm_of(d1, norm) <= eps * (1 + 1e-6)).all()
    assert torch.equal(d1[0], torch.zeros(3, 4))


def test_random_in_ball_l2_is_uniform_in_the_ball(norm_of):
    # Uniform in a d-ball: (r / eps)^d ~ U(0, 1), and the direction is isotropic.
    d = 3
    delta = random_in_ball(
        torch.zeros(4000, d, dtype=torch.float64), torch.full((4000,), 2.0, dtype=torch.float64)
    )
    r = norm_of(delta) / 2.0
    assert stats.kstest((r**d).numpy(), "uniform").pvalue > 1e-3
    first = (delta[:, 0] / norm_of(delta)).numpy()  # uniform on [-1, 1] for d = 3
    assert stats.kstest(first, stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_random_in_ball_linf_is_uniform_in_the_box():
    delta = random_in_ball(torch.zeros(2000, 2), torch.full((2000,), 0.5), "linf")
    assert stats.kstest(delta.flatten().numpy(), stats.uniform(-0.5, 1.0).cdf).pvalue > 1e-3
