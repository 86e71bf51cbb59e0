import pytest
import torch
from torch import nn

from bnn_core import BayesConv2d


def test_means_are_initialised_like_torch_conv2d() -> None:
    torch.manual_seed(5)
    ref = nn.Conv2d(3, 4, 3, padding=1)
    torch.manual_seed(5)
    layer = BayesConv2d(3, 4, 3, padding=1)
    torch.testing.assert_close(layer.weight_mu.detach(), ref.weight.detach())
    torch.testing.assert_close(layer.bias_mu.detach(), ref.bias.detach())


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [0, 1, (2, 1), "same", "valid"])
def test_mean_mode_matches_nn_conv2d(padding, padding_mode: str) -> None:
    conv = nn.Conv2d(2, 3, (3, 5), padding=padding, padding_mode=padding_mode)
    layer = BayesConv2d(
        2, 3, (3, 5), padding=padding, padding_mode=padding_mode, sample_mode="mean"
    )
    with torch.no_grad():
        layer.weight_mu.copy_(conv.weight)
        layer.bias_mu.copy_(conv.bias)
    x = torch.randn(2, 2, 8, 9)
    torch.testing.assert_close(layer(x), conv(x))


def test_unbatched_input() -> None:
    layer = BayesConv2d(2, 3, 3, sample_mode="mean")
    x = torch.randn(2, 6, 6)
    torch.testing.assert_close(layer(x), layer(x.unsqueeze(0))[0])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (
            {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2},
            ValueError,
            "groups",
        ),
        ({"in_channels": 0, "out_channels": 4, "kernel_size": 3}, ValueError, "in_channels"),
        (
            {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding_mode": "wrap"},
            ValueError,
            "padding_mode",
        ),
        (
            {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": "full"},
            ValueError,
            "padding",
        ),
        (
            {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": "same", "stride": 2},
            ValueError,
            "strided",
        ),
    ],
)
def test_constructor_errors(kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        BayesConv2d(**kwargs)


def test_input_must_have_the_right_channels() -> None:
    layer = BayesConv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        layer(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="input must have shape"):
        layer(torch.randn(8, 8))


def test_repr_names_the_configuration() -> None:
    text = repr(BayesConv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False))
    assert "groups=2" in text and "bias=False" in text and "padding=(1, 1)" in text
