import torch
from torch import nn

from bnn_core import (
    BayesConv2d,
    BayesLinear,
    forward_samples,
    is_bayesian,
    resnet18,
    sample_weights,
)


def test_layers_and_shapes() -> None:
    model = resnet18(width=4)
    convs = [m for m in model.modules() if isinstance(m, BayesConv2d)]
    assert len(convs) == 1 + 16 + 3  # stem, 8 blocks × 2, 3 projection shortcuts
    assert isinstance(model.fc, BayesLinear) and model.fc.in_features == 32
    assert all(not isinstance(m, nn.Conv2d) for m in model.modules())
    assert len([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]) == 20
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert not is_bayesian(resnet18(width=4, bayesian=False))


def test_standard_width_has_resnet18_parameter_count() -> None:
    det = resnet18(bayesian=False)
    n = sum(p.numel() for p in det.parameters())
    assert 11_100_000 < n < 11_200_000  # the CIFAR ResNet-18: 11.17 M parameters


def test_eval_mode_draws_in_vmap_and_loop() -> None:
    model = resnet18(width=4, init_sigma=0.05).eval()
    x = torch.rand(2, 3, 16, 16)
    w = sample_weights(model, 2)
    torch.testing.assert_close(
        forward_samples(model, x, weights=w, method="vmap"),
        forward_samples(model, x, weights=w, method="loop"),
        rtol=1e-4,
        atol=1e-5,
    )
