import pytest
import torch
from torch import nn

from bnn_core import (
    BayesConv2d,
    BayesLinear,
    GaussianPrior,
    SampleMode,
    get_sample_modes,
    sample_mode,
    to_bayesian,
)


def _cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, bias=False),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 5),
        nn.LayerNorm(5),
        nn.Dropout(0.5),
        nn.Linear(5, 2, bias=False),
    )


def test_preserves_the_function_in_mean_mode() -> None:
    net = _cnn()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    bnn = to_bayesian(net, init_sigma=0.5)
    x = torch.randn(4, 3, 10, 10)
    with sample_mode(bnn, "mean"):
        torch.testing.assert_close(bnn(x), net(x))
    assert not torch.allclose(bnn(x), net(x))  # sample mode: a draw from the posterior


def test_replaces_linear_and_conv_and_keeps_the_rest() -> None:
    net = _cnn()
    bnn = to_bayesian(net, prior=GaussianPrior(0.0, 0.3), sample_mode="local")
    kinds = [type(m) for m in bnn]
    assert kinds[0] is BayesConv2d and kinds[4] is BayesConv2d
    assert kinds[8] is BayesLinear and kinds[11] is BayesLinear
    assert kinds[1] is nn.BatchNorm2d and kinds[9] is nn.LayerNorm
    assert bnn[0].padding_mode == "reflect" and bnn[4].stride == (2, 2)
    assert bnn[4].bias_mu is None and bnn[11].bias_mu is None
    assert bnn[0].prior.scale == 0.3
    assert set(get_sample_modes(bnn).values()) == {SampleMode.LOCAL}
    assert type(net[0]) is nn.Conv2d  # the input is left untouched


def test_inplace_tied_layers_dtype_and_training_flag() -> None:
    shared = nn.Linear(3, 3, dtype=torch.float64)
    net = nn.Sequential(shared, nn.Tanh(), shared).eval()
    out = to_bayesian(net, inplace=True)
    assert out is net
    assert out[0] is out[2]  # one tied Bayesian layer, not two
    assert out[0].weight_mu.dtype == torch.float64 and not out[0].training


def test_bare_layer() -> None:
    linear = nn.Linear(3, 2)
    layer = to_bayesian(linear)
    assert isinstance(layer, BayesLinear)
    torch.testing.assert_close(layer.weight_mu.detach(), linear.weight.detach())


def test_strict_refuses_layers_it_cannot_convert() -> None:
    net = nn.Sequential(nn.Conv1d(2, 2, 3), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"0 \(Conv1d\)"):
        to_bayesian(net)
    lenient = to_bayesian(net, strict=False)
    assert type(lenient[0]) is nn.Conv1d and type(lenient[2]) is BayesLinear


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="module"):
        to_bayesian("net")
    with pytest.raises(ValueError, match="init_sigma"):
        to_bayesian(nn.Sequential(nn.ReLU()), init_sigma=0.0)
    with pytest.raises(ValueError, match="sample_mode"):
        to_bayesian(nn.Linear(2, 2), sample_mode="map")


def test_tied_weights_of_two_layers_are_refused() -> None:
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight  # weight tying: to_bayesian would untie it
    with pytest.raises(ValueError, match=r"'2.weight' is the same tensor as '0.weight'"):
        to_bayesian(nn.Sequential(a, nn.ReLU(), b))
    shared = nn.Linear(3, 3)  # one layer used twice stays fine
    bnn = to_bayesian(nn.Sequential(shared, nn.ReLU(), shared))
    assert bnn[0] is bnn[2]
