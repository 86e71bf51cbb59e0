from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_attacks import frozen_parameters


def test_freezes_and_restores_flags():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    net[1].bias.requires_grad_(False)
    with frozen_parameters(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, True, True, False]


def test_restores_on_error():
    net = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match="boom"), frozen_parameters(net):
        raise RuntimeError("boom")
    assert all(p.requires_grad for p in net.parameters())


def test_plain_function_is_left_alone():
    w = torch.randn(3, requires_grad=True)
    with frozen_parameters(lambda x: x @ w):
        assert w.requires_grad
