"""The paper's CNNs built channels-last compute so in every sampling path, unchanged."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from bnn_core import (
    PosteriorPredictive,
    cifar_cnn,
    forward_samples,
    load_model,
    mnist_cnn,
    resnet18,
    sample_mode,
    sample_weights,
    save_model,
    to_bayesian,
)
from bnn_core.layers.conv import is_channels_last

CASES: list[tuple[str, Callable[..., nn.Module], tuple[int, ...]]] = [
    ("mnist_cnn", mnist_cnn, (4, 1, 28, 28)),
    ("cifar_cnn", lambda **kw: cifar_cnn(width=4, hidden=8, **kw), (4, 3, 32, 32)),
    ("resnet18", lambda **kw: resnet18(width=4, **kw).eval(), (4, 3, 32, 32)),
]


def _twins(build: Callable[..., nn.Module]) -> tuple[nn.Module, nn.Module]:
    """The same posterior laid out channels-last and contiguous."""
    torch.manual_seed(0)
    last = build(init_sigma=0.05, memory_format="channels_last")
    flat = build(init_sigma=0.05, memory_format="contiguous")
    flat.load_state_dict(last.state_dict())
    return last, flat


def _first_activation_strides(model: nn.Module, run: Callable[[], object]) -> list[bool]:
    """Whether each output of the model's first convolution was channels-last."""
    conv = next(m for m in model.modules() if hasattr(m, "weight_mu") and m.weight_mu.dim() == 4)
    seen: list[bool] = []
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(is_channels_last(out)))
    try:
        run()
    finally:
        handle.remove()
    return seen


def test_is_channels_last_tells_the_layouts_apart_even_for_one_channel() -> None:
    for shape in [(16, 1, 3, 3), (32, 16, 3, 3), (8, 4, 1, 1), (2, 3, 5, 7)]:
        t = torch.randn(shape)
        assert not is_channels_last(t), shape
        assert is_channels_last(t.to(memory_format=torch.channels_last)), shape
    assert not is_channels_last(torch.randn(3, 4))
    # torch's own test is ambiguous for one channel: the reason for the helper
    assert torch.randn(16, 1, 3, 3).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("name", "build", "shape"), CASES, ids=[c[0] for c in CASES])
def test_channels_last_layout_holds_in_every_path(name, build, shape) -> None:
    last, flat = _twins(build)
    x = torch.rand(shape)
    assert all(is_channels_last(p) for n, p in last.named_parameters() if p.dim() == 4), (
        "every kernel channels-last"
    )
    assert not any(is_channels_last(p) for p in flat.parameters())
    assert last.bnn_core_config["kwargs"]["memory_format"] == "channels_last"
    assert flat.bnn_core_config["kwargs"]["memory_format"] == "contiguous"
    for mode in ("sample", "local", "mean"):
        with sample_mode(last, mode):
            assert _first_activation_strides(last, lambda: last(x)) == [True], mode
        with sample_mode(flat, mode):
            assert _first_activation_strides(flat, lambda: flat(x)) == [False], mode
    assert (
        _first_activation_strides(last, lambda: forward_samples(last, x, 3, method="loop"))
        == [True] * 3
    )


@pytest.mark.parametrize(("name", "build", "shape"), CASES, ids=[c[0] for c in CASES])
def test_layouts_compute_the_same_function_and_gradients(name, build, shape) -> None:
    last, flat = _twins(build)
    x = torch.rand(shape)
    for mode in ("sample", "local", "mean"):
        with sample_mode(last, mode), sample_mode(flat, mode):
            torch.manual_seed(1)
            a = last(x)
            torch.manual_seed(1)
            b = flat(x)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for method in ("loop", "vmap"):
        last.zero_grad(set_to_none=True)
        flat.zero_grad(set_to_none=True)
        xa = x.clone().requires_grad_()
        xb = x.clone().requires_grad_()
        wa = sample_weights(last, 3, torch.Generator().manual_seed(2))
        wb = sample_weights(flat, 3, torch.Generator().manual_seed(2))
        a = forward_samples(last, xa, weights=wa, method=method)
        b = forward_samples(flat, xb, weights=wb, method=method)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        a.square().sum().backward()
        b.square().sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
        grads_flat = dict(flat.named_parameters())
        for key, p in last.named_parameters():
            assert p.grad is not None, key
            torch.testing.assert_close(p.grad, grads_flat[key].grad, atol=1e-5, rtol=1e-4)


def test_layout_survives_save_and_load(tmp_path) -> None:
    for fmt, expected in (("channels_last", True), (torch.contiguous_format, False)):
        model = mnist_cnn(memory_format=fmt)
        save_model(model, tmp_path / "m.pt")
        loaded = load_model(tmp_path / "m.pt")
        assert is_channels_last(loaded[3].weight_mu) is expected
        x = torch.rand(2, 1, 28, 28)
        ppd_a = PosteriorPredictive(model, 2, generator=torch.Generator().manual_seed(0))
        ppd_b = PosteriorPredictive(loaded, 2, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(ppd_a(x), ppd_b(x))


def test_to_bayesian_keeps_a_channels_last_network_channels_last() -> None:
    det = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    bnn = to_bayesian(det.to(memory_format=torch.channels_last))
    assert is_channels_last(bnn[0].weight_mu) and is_channels_last(bnn[2].weight_mu)
    torch.testing.assert_close(bnn[2].weight_mu, det[2].weight)
    plain = to_bayesian(nn.Conv2d(4, 4, 3))
    assert not is_channels_last(plain.weight_mu)


def test_bad_memory_format_is_named() -> None:
    with pytest.raises(ValueError, match="memory_format"):
        mnist_cnn(memory_format="nhwc")
    with pytest.raises(ValueError, match="memory_format"):
        resnet18(width=4, memory_format=torch.preserve_format)


# -- memory_format="auto": the faster layout of the device, recorded ---------------------


def test_auto_resolves_per_device_type() -> None:
    from bnn_core.models import FASTEST_MEMORY_FORMAT, fastest_memory_format

    assert fastest_memory_format("cpu") == FASTEST_MEMORY_FORMAT["cpu"] == "channels_last"
    assert fastest_memory_format("cuda:1") == FASTEST_MEMORY_FORMAT["cuda"]
    assert fastest_memory_format("meta") == "contiguous"  # unmeasured devices: PyTorch's


@pytest.mark.parametrize(("name", "build", "shape"), CASES)
def test_auto_is_the_default_recorded_and_survives_save_load(name, build, shape, tmp_path):
    from bnn_core.models import fastest_memory_format

    torch.manual_seed(0)
    model = build(init_sigma=0.05)  # the default is "auto"
    want = fastest_memory_format()
    assert model.bnn_core_config["kwargs"]["memory_format"] == want  # resolved, not "auto"
    conv = next(m for m in model.modules() if getattr(m, "weight_mu", None) is not None)
    assert is_channels_last(conv.weight_mu) == (want == "channels_last")
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    conv2 = next(m for m in loaded.modules() if getattr(m, "weight_mu", None) is not None)
    assert is_channels_last(conv2.weight_mu) == is_channels_last(conv.weight_mu)
    x = torch.rand(shape)
    with sample_mode(model, "mean"), sample_mode(loaded, "mean"):
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_auto_follows_the_table(monkeypatch) -> None:
    from bnn_core.models import _config

    monkeypatch.setitem(_config.FASTEST_MEMORY_FORMAT, "cpu", "contiguous")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = mnist_cnn()
    assert model.bnn_core_config["kwargs"]["memory_format"] == "contiguous"
    assert not is_channels_last(model[0].weight_mu)
