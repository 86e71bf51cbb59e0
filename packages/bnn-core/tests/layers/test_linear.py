import pytest
import torch
from torch import nn

from bnn_core import BayesLinear


def test_means_are_initialised_like_torch_linear() -> None:
    torch.manual_seed(11)
    ref = nn.Linear(7, 5)
    torch.manual_seed(11)
    layer = BayesLinear(7, 5)
    torch.testing.assert_close(layer.weight_mu.detach(), ref.weight.detach())
    torch.testing.assert_close(layer.bias_mu.detach(), ref.bias.detach())


def test_parameters_shapes_and_names() -> None:
    layer = BayesLinear(3, 2, dtype=torch.float64)
    shapes = {name: tuple(p.shape) for name, p in layer.named_parameters()}
    assert shapes == {"weight_mu": (2, 3), "weight_rho": (2, 3), "bias_mu": (2,), "bias_rho": (2,)}
    assert layer.weight_mu.dtype == torch.float64
    assert BayesLinear(3, 2, bias=False).bias_mu is None


def test_accepts_extra_leading_dimensions() -> None:
    layer = BayesLinear(3, 2, sample_mode="mean")
    x = torch.randn(4, 5, 3)
    torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)


@pytest.mark.parametrize(
    "args, error, name",
    [
        ((0, 2), ValueError, "in_features"),
        ((3, -1), ValueError, "out_features"),
        ((3.0, 2), TypeError, "in_features"),
    ],
)
def test_constructor_errors(args: tuple, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        BayesLinear(*args)


def test_repr_names_the_configuration() -> None:
    text = repr(BayesLinear(3, 2, sample_mode="local"))
    assert "in_features=3" in text and "'local'" in text
