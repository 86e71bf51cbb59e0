from __future__ import annotations

import pytest
import torch
from torch import nn

from adv_channels import ConvGenerator, DenseGenerator, encode_labels


def test_conv_generator_is_the_paper_architecture():
    net = ConvGenerator(1, 28, num_classes=10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (3, 3), (1, 1)),
        (16, 16, (3, 3), (1, 1)),
        (16, 1, (3, 3), (1, 1)),
        (16, 1, (3, 3), (1, 1)),
    ]
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 2
    assert (net.label_projection.in_features, net.label_projection.out_features) == (10, 784)


def test_conv_heads_are_two_separate_convolutions_on_the_hidden_maps():
    net = ConvGenerator(2, 7, num_classes=3).double()
    x, y = torch.rand(4, 2, 7, 7, dtype=torch.float64), torch.tensor([0, 2, 1, 1])
    m, s = net(x, y)
    h = net.body(x)
    labels = net.label_projection(encode_labels(y, 3, torch.float64))
    torch.testing.assert_close(s, net.log_scale_head(h))
    torch.testing.assert_close(m, (net.mean_head(h).flatten(1) + labels).view_as(x))


def test_conv_label_enters_the_mean_only():
    net = ConvGenerator(3, (6, 5), num_classes=4)
    x = torch.rand(2, 3, 6, 5)
    m0, s0 = net(x, torch.tensor([0, 1]))
    m1, s1 = net(x, torch.tensor([2, 1]))
    assert m0.shape == s0.shape == x.shape
    assert torch.equal(s0, s1) and torch.equal(m0[1], m1[1]) and not torch.equal(m0[0], m1[0])
    w = net.label_projection.weight.detach()
    torch.testing.assert_close((m1 - m0)[0].flatten(), w[:, 2] - w[:, 0])


def test_dense_generator_is_the_paper_architecture():
    net = DenseGenerator(8)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in linears]
    assert shapes == [(1, 8), (16, 128), (128, 128), (128, 8), (128, 8)]
    m, s = net(torch.randn(3, 8), torch.randn(3, 1))
    assert m.shape == s.shape == (3, 8)
    m2, s2 = net(torch.randn(3, 8), torch.randn(3))
    assert m2.shape == (3, 8)


def test_encode_labels():
    torch.testing.assert_close(
        encode_labels(torch.tensor([1, 0]), 2, torch.float64),
        torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
    )
    torch.testing.assert_close(
        encode_labels(torch.tensor([0.5, 2.0]), None, torch.float32), torch.tensor([[0.5], [2.0]])
    )
    with pytest.raises(
        ValueError, match=r"class indices in \[0, 3\) \(the generator was built with num_classes=3"
    ):
        encode_labels(torch.tensor([3]), 3, torch.float32)
    with pytest.raises(TypeError, match="integer class indices"):
        encode_labels(torch.tensor([0.5]), 3, torch.float32)
    with pytest.raises(TypeError, match="real regression targets"):
        encode_labels(torch.tensor([1]), None, torch.float32)


def test_errors():
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 28, 28\)"):
        ConvGenerator(1, 28)(torch.rand(2, 1, 27, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        DenseGenerator(4)(torch.rand(2, 5), torch.rand(2))
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        ConvGenerator(0, 28)
    with pytest.raises(TypeError, match="image_size"):
        ConvGenerator(1, (28, 28, 1))
    with pytest.raises(TypeError, match="in_features must be an int"):
        DenseGenerator(4.0)
