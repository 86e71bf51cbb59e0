import pytest
import torch
from torch import nn

from bnn_core import SampleMode, get_sample_modes, mnist_cnn, sample_mode, set_sample_mode


def test_set_sample_mode_sets_every_layer_and_accepts_enum_or_string() -> None:
    model = mnist_cnn()
    assert set_sample_mode(model, "local") is model
    assert set(get_sample_modes(model).values()) == {SampleMode.LOCAL}
    set_sample_mode(model, SampleMode.MEAN)
    assert set(get_sample_modes(model).values()) == {SampleMode.MEAN}
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(model(x), model(x))


def test_context_manager_restores_mixed_modes_even_on_error() -> None:
    model = mnist_cnn()
    model[3].sample_mode = "local"
    before = get_sample_modes(model)
    with sample_mode(model, "mean") as inner:
        assert inner is model
        assert set(get_sample_modes(model).values()) == {SampleMode.MEAN}
    assert get_sample_modes(model) == before
    with pytest.raises(RuntimeError, match="boom"), sample_mode(model, "mean"):
        raise RuntimeError("boom")
    assert get_sample_modes(model) == before


def test_model_without_bayesian_layers_is_left_alone() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    with sample_mode(model, "mean"):
        pass
    assert set_sample_mode(model, "sample") is model and get_sample_modes(model) == {}


def test_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of 'sample', 'local', 'mean'"):
        set_sample_mode(mnist_cnn(), "posterior")
    with pytest.raises(TypeError, match="model"):
        set_sample_mode("model", "mean")
    with pytest.raises(ValueError, match="mode"), sample_mode(mnist_cnn(), 3):
        pass
