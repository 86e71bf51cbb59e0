"""Square attack: the reference's schedule and pattern, improvements only, torchattacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_attacks import Square, square
from adv_attacks.square import _eta, margin_values, p_schedule


@pytest.mark.parametrize("n_queries", [100, 1000, 5000])
@pytest.mark.parametrize("p_init", [0.8, 0.05])
def test_p_schedule_matches_the_reference(n_queries, p_init):
    torchattacks = pytest.importorskip("torchattacks")
    ref = torchattacks.Square(nn.Linear(2, 2), n_queries=n_queries, p_init=p_init)
    for i in range(n_queries):
        assert p_schedule(i, n_queries, p_init) == ref.p_selection(i), i


@pytest.mark.parametrize("s", [2, 3, 4, 5, 7, 9, 10])
def test_l2_pattern_matches_the_reference(s):
    torchattacks = pytest.importorskip("torchattacks")
    ref = torchattacks.Square(nn.Linear(2, 2)).eta(s).double()  # randomly transposed
    ours = _eta(s)
    assert torch.allclose(ours, ref, atol=1e-6) or torch.allclose(ours.t(), ref, atol=1e-6)
    assert float(ours.norm()) == pytest.approx(1.0)
    assert float(ours[: s // 2].sum()) > 0 > float(ours[s // 2 :].sum())


def _acc(net, x, y):
    with torch.no_grad():
        return float((net(x).argmax(1) == y).double().mean())


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.06), ("l2", 0.4)], ids=["linf", "l2"])
def test_square_is_as_strong_as_torchattacks(trained_cnn, norm, eps):
    # Mean robust accuracy over two seeds each, 100 queries, AutoAttack's p_init = 0.8.
    # Not equal: random search with other random streams, and our windows (and L∞ signs)
    # drawn per example, at every position; the reference shares them across the batch and
    # never places a square on the last row or column (its random_int excludes h - s: on
    # these 10×10 images the first 9×9 squares sit in the corner). Measured over 4 seeds:
    # ours 0.75 vs 0.77 (L∞) and 0.81 vs 0.84 (L2) at 100 queries, 0.37 vs 0.51 and 0.73 vs
    # 0.79 at 300. The test asks ours to be no weaker than the reference's by more than 3 of
    # 48 examples.
    torchattacks = pytest.importorskip("torchattacks")
    net, x, y = trained_cnn
    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    ours, ref = [], []
    for seed in range(2):
        gen = torch.Generator().manual_seed(seed)
        ours.append(
            _acc(net, Square(eps=eps, norm=norm, n_queries=100)(net, x, y, generator=gen), y)
        )
        ta = torchattacks.Square(net, norm=ta_norm, eps=eps, n_queries=100, seed=seed)
        ref.append(_acc(net, ta(x, y), y))
    assert sum(ours) / 2 <= sum(ref) / 2 + 3 / 48 + 1e-9, (ours, ref)
    assert max(ours) < _acc(net, x, y)  # not vacuous


def test_only_improvements_are_kept(cnn, images):
    # L∞: the start is x ± ε in vertical stripes (the generator's first draw); the result's
    # margin is never above the start's, and fooled examples have margin <= 0.
    x, y = images
    eps = 0.05
    g = torch.Generator().manual_seed(3)
    u = torch.randint(0, 2, (6, 1, 1, 10), generator=torch.Generator().manual_seed(3))
    start = (x + eps * (2 * u - 1)).clamp(0, 1)
    res = Square(eps=eps, norm="linf", n_queries=60)(cnn, x, y, generator=g, return_info=True)
    with torch.no_grad():
        m_start = margin_values(cnn(start).log_softmax(1), y)
        m_end = margin_values(cnn(res.x_adv).log_softmax(1), y)
    assert bool((m_end <= m_start + 1e-6).all())
    assert bool((m_end[res.success] <= 0).all())
    assert bool((m_end[~res.success] > 0).all())


def test_seeded_and_zero_budget(cnn, images):
    x, y = images
    runs = [
        square(cnn, x, y, eps=0.5, n_queries=20, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    for norm in ("l2", "linf"):
        torch.testing.assert_close(square(cnn, x, y, eps=0.0, norm=norm, n_queries=5), x)


def test_bad_inputs_are_refused(cnn, images, linear_model):
    x, y = images
    with pytest.raises(ValueError, match=r"image batches \(B, C, H, W\)"):
        square(linear_model, torch.rand(2, 6, dtype=torch.float64), eps=0.1)
    with pytest.raises(ValueError, match="at least 3x3"):
        square(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.rand(2, 1, 2, 2), eps=0.1)
    with pytest.raises(ValueError, match="p_init"):
        Square(eps=0.1, p_init=0.0)
    with pytest.raises(ValueError, match="n_queries must be >= 1"):
        Square(eps=0.1, n_queries=0)
    with pytest.raises(ValueError, match="y must hold class indices"):
        square(cnn, x, torch.full((6,), 10), eps=0.1)
