import pytest
import torch
from torch import nn

from bnn_core import (
    GaussianPrior,
    SampleMode,
    cifar_cnn,
    get_sample_modes,
    load_model,
    mnist_cnn,
    regression_mlp,
    resnet18,
    sample_mode,
    save_model,
    to_bayesian,
)

BUILDERS = [
    pytest.param(
        lambda: mnist_cnn(prior=GaussianPrior(0.1, 0.5), init_sigma=0.02),
        (2, 1, 28, 28),
        id="mnist_cnn",
    ),
    pytest.param(lambda: regression_mlp(5, hidden=8, init_noise=0.3), (3, 5), id="regression_mlp"),
    pytest.param(
        lambda: cifar_cnn(width=4, hidden=8, bayesian=False), (2, 3, 32, 32), id="cifar_cnn-det"
    ),
    pytest.param(lambda: resnet18(width=4), (2, 3, 16, 16), id="resnet18"),
]


def _perturb(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for b in model.buffers():
            if b.is_floating_point():
                b.add_(0.1)


@pytest.mark.parametrize("build, shape", BUILDERS)
def test_round_trip_from_the_file_alone(tmp_path, build, shape) -> None:
    model = build()
    _perturb(model)  # a "trained" posterior, not the initial one
    model.eval()
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    ref_state, new_state = model.state_dict(), loaded.state_dict()
    assert ref_state.keys() == new_state.keys()
    for key in ref_state:
        torch.testing.assert_close(new_state[key], ref_state[key], rtol=0, atol=0)
    assert get_sample_modes(loaded) == get_sample_modes(model)
    assert loaded.training is False
    x = torch.rand(*shape)
    with sample_mode(model, "mean"), sample_mode(loaded, "mean"):
        torch.testing.assert_close(loaded(x), model(x))


def test_priors_and_modes_changed_after_building_are_kept(tmp_path) -> None:
    model = mnist_cnn()
    model[3].prior = GaussianPrior(0.0, 0.25)
    model[7].sample_mode = "local"
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded[3].prior == GaussianPrior(0.0, 0.25) and loaded[0].prior == GaussianPrior()
    assert loaded[7].sample_mode is SampleMode.LOCAL and loaded.training


def test_dtype_and_per_module_flags_are_kept(tmp_path) -> None:
    model = resnet18(width=4).double()
    _perturb(model)
    model.train()
    model.stem[1].eval()  # e.g. a frozen batch norm inside a training model
    save_model(model, tmp_path / "d.pt")
    loaded = load_model(tmp_path / "d.pt")
    for key, value in model.state_dict().items():  # dtype included: no float32 round trip
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    flags = {n: m.training for n, m in model.named_modules()}
    assert {n: m.training for n, m in loaded.named_modules()} == flags
    assert loaded.training and not loaded.stem[1].training
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    with sample_mode(model, "mean"), sample_mode(loaded, "mean"):
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_custom_model_needs_a_template(tmp_path) -> None:
    def net() -> nn.Module:
        return to_bayesian(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))

    model = net()
    save_model(model, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="pass model="):
        load_model(tmp_path / "c.pt")
    loaded = load_model(tmp_path / "c.pt", model=net())
    torch.testing.assert_close(loaded[0].weight_rho, model[0].weight_rho)


def test_errors(tmp_path) -> None:
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a model saved by bnn_core"):
        load_model(tmp_path / "other.pt")
    save_model(mnist_cnn(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="does not fit model"):
        load_model(tmp_path / "m.pt", model=mnist_cnn(num_classes=3))
    with pytest.raises(TypeError, match="model"):
        save_model("model", tmp_path / "x.pt")
