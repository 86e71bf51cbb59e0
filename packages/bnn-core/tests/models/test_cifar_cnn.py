import torch

from bnn_core import BayesConv2d, BayesLinear, cifar_cnn, is_bayesian


def test_every_layer_is_bayesian_and_shapes() -> None:
    model = cifar_cnn(width=8, hidden=16)
    layers = [m for m in model if isinstance(m, BayesConv2d | BayesLinear)]
    assert len(layers) == 6
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert not is_bayesian(cifar_cnn(width=8, hidden=16, bayesian=False))
