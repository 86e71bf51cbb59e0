import pytest
import torch
from torch import nn

from bnn_core import BayesConv2d, BayesLinear, GaussianPrior, is_bayesian, mnist_cnn, sample_mode


def test_architecture_of_the_paper() -> None:
    model = mnist_cnn()
    assert [type(m) for m in model] == [
        BayesConv2d,
        nn.ReLU,
        nn.AvgPool2d,
        BayesConv2d,
        nn.ReLU,
        nn.AvgPool2d,
        nn.Flatten,
        BayesLinear,
    ]
    assert (model[0].in_channels, model[0].out_channels, model[0].kernel_size) == (1, 16, (3, 3))
    assert (model[3].in_channels, model[3].out_channels) == (16, 32)
    assert (model[7].in_features, model[7].out_features) == (800, 10)
    assert model[0].prior == GaussianPrior(0.0, 1.0)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_mean_mode_equals_the_deterministic_twin_with_those_weights() -> None:
    bnn = mnist_cnn(init_sigma=0.1)
    det = mnist_cnn(bayesian=False)
    assert not is_bayesian(det)
    with torch.no_grad():
        for i in (0, 3, 7):
            det[i].weight.copy_(bnn[i].weight_mu)
            det[i].bias.copy_(bnn[i].bias_mu)
    x = torch.rand(3, 1, 28, 28)
    with sample_mode(bnn, "mean"):
        torch.testing.assert_close(bnn(x), det(x))


def test_options_and_errors() -> None:
    model = mnist_cnn(5, in_channels=3, image_size=32, prior=GaussianPrior(scale=0.1))
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    assert model[0].prior.scale == 0.1
    with pytest.raises(ValueError, match="image_size"):
        mnist_cnn(image_size=8)
    with pytest.raises(ValueError, match="num_classes"):
        mnist_cnn(0)
    with pytest.raises(TypeError, match="bayesian"):
        mnist_cnn(bayesian="yes")
    with pytest.raises(ValueError, match="init_sigma"):
        mnist_cnn(init_sigma=-1.0)
