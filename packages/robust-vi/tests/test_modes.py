"""Train/eval switching that restores every submodule's own flag."""

from __future__ import annotations

import pytest
from torch import nn

from robust_vi import training_mode


def test_restores_mixed_flags_even_on_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2)))
    net.train()
    net[1].eval()  # a submodule deliberately in another mode
    flags = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError), training_mode(net, False):
        assert not any(m.training for m in net.modules())
        raise RuntimeError
    assert [m.training for m in net.modules()] == flags
    with training_mode(net, True):
        assert all(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == flags
