import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bnn_core import (
    BayesLinear,
    SampleMode,
    SamplingMethod,
    forward_samples,
    get_sample_modes,
    mnist_cnn,
    resnet18,
    resolve_method,
    sample_weights,
    set_sample_mode,
)
from bnn_core.sampling import draw_noise, weights_from_noise


def test_sample_weights_keys_shapes_and_reproducibility(mlp) -> None:
    w = sample_weights(mlp, 5, generator=torch.Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in w.items()} == {
        "0.weight": (5, 6, 4),
        "0.bias": (5, 6),
        "2.weight": (5, 3, 6),
        "2.bias": (5, 3),
    }
    again = sample_weights(mlp, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w, again)
    other = sample_weights(mlp, 5, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(w["0.weight"], other["0.weight"])
    assert sample_weights(BayesLinear(2, 2), 1).keys() == {"weight", "bias"}


def test_sample_weights_moments(mlp) -> None:
    w = sample_weights(mlp, 20_000, generator=torch.Generator().manual_seed(0))
    layer = mlp[0]
    sigma = F.softplus(layer.weight_rho).detach()
    draws = w["0.weight"].detach()
    assert ((draws.mean(0) - layer.weight_mu).abs() <= 5 * sigma / 20_000**0.5).all()
    torch.testing.assert_close(draws.std(0), sigma, rtol=0.03, atol=0.0)


def test_layers_in_mean_mode_are_not_sampled(mlp) -> None:
    mlp[2].sample_mode = "mean"
    assert set(sample_weights(mlp, 2)) == {"0.weight", "0.bias"}
    assert set(draw_noise(mlp, 2, all_layers=True)) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_loop_matches_a_hand_written_forward(mlp) -> None:
    """The loop path against an independent reference: each draw written out with F.linear."""
    x = torch.randn(7, 4, dtype=torch.float64)
    w = sample_weights(mlp, 3)
    out = forward_samples(mlp, x, weights=w, method="loop")
    for m in range(3):
        h = torch.tanh(F.linear(x, w["0.weight"][m], w["0.bias"][m]))
        torch.testing.assert_close(out[m], F.linear(h, w["2.weight"][m], w["2.bias"][m]))


@pytest.mark.parametrize(
    "build, shape",
    [
        pytest.param(lambda: mnist_cnn(init_sigma=0.05), (5, 1, 28, 28), id="mnist_cnn"),
        pytest.param(lambda: _mlp_with_dropout(), (6, 4), id="mlp-dropout-eval"),
    ],
)
def test_vmap_equals_loop_for_the_same_draws(build, shape) -> None:
    model = build()
    x = torch.rand(*shape, requires_grad=True)
    w = sample_weights(model, 4, generator=torch.Generator().manual_seed(2))
    grads = []
    outs = []
    for method in ("vmap", "loop"):
        model.zero_grad()
        x.grad = None
        out = forward_samples(model, x, weights=w, method=method)
        out.square().sum().backward(retain_graph=True)
        outs.append(out.detach())
        grads.append(
            [x.grad.clone(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)]
        )
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    assert len(grads[0]) == len(grads[1]) > 1
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    assert not torch.allclose(outs[0][0], outs[0][1])  # the draws differ


def _mlp_with_dropout() -> nn.Module:
    return nn.Sequential(
        BayesLinear(4, 8, init_sigma=0.1), nn.Dropout(0.3), nn.ReLU(), BayesLinear(8, 2)
    ).eval()


def test_gradients_reach_mu_rho_and_input(mlp) -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    forward_samples(mlp, x, 4).sum().backward()
    for name, p in mlp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_gradcheck_through_fixed_noise(mlp) -> None:
    """float64 gradcheck of the whole pipeline ε ↦ w = μ + softplus(ρ) ε ↦ outputs."""
    noise = draw_noise(mlp, 3, generator=torch.Generator().manual_seed(0))

    class Draws(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weights = weights_from_noise(self.net, noise)
            return forward_samples(self.net, x, weights=weights, method="loop")

    wrapper = Draws()

    def f(x: torch.Tensor, mu: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapper, {"net.0.weight_mu": mu, "net.2.bias_rho": rho}, (x,))

    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    mu = mlp[0].weight_mu.detach().clone().requires_grad_()
    rho = mlp[2].bias_rho.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, mu, rho))


def test_mean_mode_and_deterministic_models_repeat_one_output(mlp) -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    set_sample_mode(mlp, "mean")
    out = forward_samples(mlp, x, 4)
    assert out.shape == (4, 3, 3)
    torch.testing.assert_close(out, mlp(x).expand(4, 3, 3))
    det = nn.Linear(4, 2, dtype=torch.float64)
    torch.testing.assert_close(forward_samples(det, x, 2), det(x).expand(2, 3, 2))


def test_sampling_modes_are_restored_even_on_error(mlp) -> None:
    mlp[0].sample_mode = "local"
    before = get_sample_modes(mlp)

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = nn.Sequential(mlp, Boom())
    for method in ("loop", "vmap"):
        with pytest.raises(RuntimeError, match="boom"):
            forward_samples(model, torch.randn(2, 4, dtype=torch.float64), 2, method=method)
    assert get_sample_modes(mlp) == before
    assert mlp.training


def test_loop_clears_the_drawn_weights_even_on_error(mlp) -> None:
    """The loop hands each draw's weights to the layers; none may stay after the call."""

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="boom"):
        forward_samples(nn.Sequential(mlp, Boom()), x, 2, method="loop")
    assert all(layer._drawn is None for layer in (mlp[0], mlp[2]))
    assert not torch.equal(mlp(x), mlp(x))  # "sample" mode draws afresh again
    set_sample_mode(mlp, "mean")
    h = torch.tanh(F.linear(x, mlp[0].weight_mu, mlp[0].bias_mu))
    torch.testing.assert_close(mlp(x), F.linear(h, mlp[2].weight_mu, mlp[2].bias_mu))


def test_loop_with_some_parameters_drawn_matches_functional_call(mlp) -> None:
    """Entries left out of ``weights`` use ``μ``, as ``functional_call`` would substitute."""
    x = torch.randn(5, 4, dtype=torch.float64)
    w = sample_weights(mlp, 3, generator=torch.Generator().manual_seed(4))
    partial = {"0.weight": w["0.weight"], "2.bias": w["2.bias"]}
    out = forward_samples(mlp, x, weights=partial, method="loop")
    set_sample_mode(mlp, "mean")
    for m in range(3):
        ref = functional_call(mlp, {f"{k}_mu": v[m] for k, v in partial.items()}, (x,))
        torch.testing.assert_close(out[m], ref)


def test_loop_on_a_model_that_reuses_a_layer() -> None:
    """A layer applied twice sees the same draw both times (one weight per module)."""
    torch.manual_seed(0)
    layer = BayesLinear(3, 3, init_sigma=0.3, dtype=torch.float64)
    model = nn.Sequential(layer, nn.Tanh(), layer)
    x = torch.randn(4, 3, dtype=torch.float64)
    w = sample_weights(model, 2, generator=torch.Generator().manual_seed(1))
    assert set(w) == {"0.weight", "0.bias"}
    out = forward_samples(model, x, weights=w, method="loop")
    for m in range(2):
        h = torch.tanh(F.linear(x, w["0.weight"][m], w["0.bias"][m]))
        torch.testing.assert_close(out[m], F.linear(h, w["0.weight"][m], w["0.bias"][m]))
    torch.testing.assert_close(out, forward_samples(model, x, weights=w, method="vmap"))


def test_loop_on_a_layer_with_its_own_forward_uses_the_draws() -> None:
    """A subclass whose ``forward`` reads ``weight_mu`` itself still sees each draw."""

    class Scaled(BayesLinear):
        def forward(self, input: torch.Tensor) -> torch.Tensor:
            return 2.0 * F.linear(input, self.weight_mu, self.bias_mu)

    torch.manual_seed(0)
    model = nn.Sequential(Scaled(3, 2, init_sigma=0.3, dtype=torch.float64))
    x = torch.randn(4, 3, dtype=torch.float64)
    w = sample_weights(model, 3, generator=torch.Generator().manual_seed(2))
    out = forward_samples(model, x, weights=w, method="loop")
    for m in range(3):
        torch.testing.assert_close(out[m], 2.0 * F.linear(x, w["0.weight"][m], w["0.bias"][m]))


def test_auto_picks_loop_on_cpu_and_avoids_vmap_with_training_batchnorm() -> None:
    model = resnet18(width=4)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_method("auto", model, cpu) is SamplingMethod.LOOP
    assert resolve_method("auto", model, cuda) is SamplingMethod.LOOP  # training batch-norm
    assert resolve_method("auto", model.eval(), cuda) is SamplingMethod.VMAP
    with pytest.raises(ValueError, match="batch-norm"):
        resolve_method("vmap", model.train(), cpu)


def test_training_batchnorm_runs_in_the_loop() -> None:
    model = resnet18(width=4)
    out = forward_samples(model, torch.rand(3, 3, 8, 8), 2)
    assert out.shape == (2, 3, 10)
    assert model.training
    with pytest.raises(ValueError, match="batch-norm"):
        forward_samples(model, torch.rand(3, 3, 8, 8), 2, method="vmap")


def test_argument_errors(mlp) -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    w = sample_weights(mlp, 2)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        forward_samples(mlp, x, 0)
    with pytest.raises(TypeError, match="num_samples"):
        forward_samples(mlp, x, 2.0)
    with pytest.raises(TypeError, match="num_samples"):
        sample_weights(mlp, True)
    with pytest.raises(ValueError, match="pass num_samples"):
        forward_samples(mlp, x)
    with pytest.raises(ValueError, match="x contains NaN"):
        forward_samples(mlp, torch.full_like(x, float("nan")), 2)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        forward_samples(mlp, x.long(), 2)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        forward_samples(mlp, x.tolist(), 2)
    with pytest.raises(ValueError, match="x is on meta"):
        forward_samples(mlp, x.to("meta"), 2)
    with pytest.raises(ValueError, match="method must be one of"):
        forward_samples(mlp, x, 2, method="batched")
    with pytest.raises(ValueError, match="no Bayesian parameter"):
        forward_samples(mlp, x, weights={"1.weight": w["0.weight"]})
    with pytest.raises(ValueError, match=r"weights\['0.bias'\] must have shape \(M, 6\)"):
        forward_samples(mlp, x, weights={"0.bias": w["0.weight"]})
    with pytest.raises(ValueError, match="same number of draws"):
        forward_samples(mlp, x, weights={"0.weight": w["0.weight"], "0.bias": w["0.bias"][:1]})
    with pytest.raises(ValueError, match="num_samples=3 but weights hold 2"):
        forward_samples(mlp, x, 3, weights=w)
    with pytest.raises(ValueError, match="generator is unused"):
        forward_samples(mlp, x, weights=w, generator=torch.Generator())
    with pytest.raises(ValueError, match="weights is empty"):
        forward_samples(mlp, x, weights={})
    with pytest.raises(ValueError, match="float32 on cpu but the parameter is"):
        forward_samples(mlp, x, weights={"0.bias": w["0.bias"].float()})
    with pytest.raises(TypeError, match="weights must be a dict"):
        forward_samples(mlp, x, weights=[w["0.bias"]])
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample_weights(mlp, 2, generator=0)
    with pytest.raises(TypeError, match="model"):
        forward_samples(lambda x: x, x, 2)
    with pytest.raises(TypeError, match="model\\(x\\) must return a tensor"):
        forward_samples(nn.Sequential(mlp, _TupleOut()), x, 2)


class _TupleOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


@pytest.mark.gpu
def test_cuda_paths_agree_and_generator_device_is_checked() -> None:
    model = mnist_cnn(init_sigma=0.05).cuda().eval()
    x = torch.rand(8, 1, 28, 28, device="cuda")
    w = sample_weights(model, 5, generator=torch.Generator(device="cuda").manual_seed(0))
    a = forward_samples(model, x, weights=w, method="vmap")
    b = forward_samples(model, x, weights=w, method="loop")
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    assert resolve_method("auto", model, x.device) is SamplingMethod.VMAP
    with pytest.raises(ValueError, match="generator is on cpu"):
        sample_weights(model, 2, generator=torch.Generator())


def test_enum_and_string_are_interchangeable(mlp) -> None:
    x = torch.randn(2, 4, dtype=torch.float64)
    w = sample_weights(mlp, 2)
    torch.testing.assert_close(
        forward_samples(mlp, x, weights=w, method=SamplingMethod.LOOP),
        forward_samples(mlp, x, weights=w, method="loop"),
    )
    assert SampleMode("mean") is SampleMode.MEAN
