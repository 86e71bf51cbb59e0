"""Properties every Bayesian layer must have, run over the ``layer_case`` fixture list."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence
from torch.func import functional_call

from bnn_core import GaussianPrior, SampleMode, forward_samples


def test_mean_mode_is_the_deterministic_layer(layer_case, twin) -> None:
    layer = layer_case.layer(sample_mode="mean", init_sigma=0.5)
    x = layer_case.input()
    torch.testing.assert_close(layer(x), twin(layer)(x))
    torch.testing.assert_close(layer(x), layer(x))  # and deterministic


def test_sample_mode_uses_mu_plus_sigma_eps(layer_case, twin) -> None:
    layer = layer_case.layer(init_sigma=0.5)
    x = layer_case.input()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)  # the layer draws the weight noise first, then the bias noise
    w = layer.weight_mu + F.softplus(layer.weight_rho) * torch.randn_like(layer.weight_mu)
    b = None
    if layer.bias_mu is not None:
        b = layer.bias_mu + F.softplus(layer.bias_rho) * torch.randn_like(layer.bias_mu)
    torch.testing.assert_close(out, twin(layer, w, b)(x))
    assert not torch.allclose(layer(x), out)  # fresh weights at every call


def test_kl_matches_torch_distributions(layer_case) -> None:
    layer = layer_case.layer(prior=GaussianPrior(0.1, 0.4), init_sigma=0.2)
    with torch.no_grad():
        layer.weight_rho.uniform_(-4.0, 1.0)
    ref = 0.0
    for _, mu, rho in layer.variational_parameters():
        ref = ref + kl_divergence(Normal(mu, F.softplus(rho)), Normal(0.1, 0.4)).sum()
    torch.testing.assert_close(layer.kl(), ref)


def test_local_and_weight_sampling_match_the_output_moments(layer_case, twin) -> None:
    """Local reparameterisation and weight sampling give the same output mean and variance.

    Both are compared with the closed form ``N(op(x, μ), op(x², σ²))`` by Monte Carlo
    (seeded; 4000 draws; tolerances are several standard errors).
    """
    layer = layer_case.layer(init_sigma=0.4)
    x = layer_case.input(batch=1)
    sigma_w, sigma_b = layer.weight_sigma, layer.bias_sigma
    mean_ref = twin(layer)(x)[0].detach()
    var_ref = twin(layer, sigma_w.square(), None if sigma_b is None else sigma_b.square())(
        x.square()
    )[0].detach()
    n = 4000
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight_draws = forward_samples(layer, x, n, generator=gen, method="vmap")[:, 0]
        layer.sample_mode = "local"
        local_draws = layer(x.expand(n, *x.shape[1:]))
    for draws in (weight_draws, local_draws):
        mean, var = draws.mean(0), draws.var(0)
        se_mean = (var_ref / n).sqrt()
        assert ((mean - mean_ref).abs() <= 5 * se_mean + 1e-12).all()
        torch.testing.assert_close(var, var_ref, rtol=0.12, atol=1e-12)


@pytest.mark.parametrize("mode", ["sample", "local"])
def test_gradients_reach_mu_and_rho(layer_case, mode: str) -> None:
    layer = layer_case.layer(sample_mode=mode, init_sigma=0.3)
    x = layer_case.input().requires_grad_()
    layer(x).square().sum().backward()
    for _, mu, rho in layer.variational_parameters():
        assert mu.grad is not None and mu.grad.abs().sum() > 0
        assert rho.grad is not None and rho.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mean_mode_has_no_gradient_to_rho(layer_case) -> None:
    layer = layer_case.layer(sample_mode="mean")
    layer(layer_case.input()).sum().backward()
    assert layer.weight_rho.grad is None and layer.weight_mu.grad is not None


@pytest.mark.parametrize("mode", ["sample", "local"])
def test_gradcheck_with_fixed_noise(layer_case, mode: str) -> None:
    layer = layer_case.layer(sample_mode=mode, init_sigma=0.3)
    x = layer_case.input(batch=1).requires_grad_()
    mu = layer.weight_mu.detach().clone().requires_grad_()
    rho = layer.weight_rho.detach().clone().requires_grad_()

    def f(x: torch.Tensor, mu: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng():
            torch.manual_seed(3)  # the same noise at every evaluation
            return functional_call(layer, {"weight_mu": mu, "weight_rho": rho}, (x,))

    assert torch.autograd.gradcheck(f, (x, mu, rho), fast_mode=True)


def test_kl_gradcheck(layer_case) -> None:
    layer = layer_case.layer()
    mu = layer.weight_mu.detach().clone().requires_grad_()
    rho = layer.weight_rho.detach().clone().requires_grad_()

    def kl(mu: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        return layer.prior.kl(mu, rho).sum()

    assert torch.autograd.gradcheck(kl, (mu, rho))


def test_initial_sigma_and_modes(layer_case) -> None:
    layer = layer_case.layer(init_sigma=0.02)
    for _, _, rho in layer.variational_parameters():
        torch.testing.assert_close(F.softplus(rho), torch.full_like(rho, 0.02))
    assert layer.sample_mode is SampleMode.SAMPLE
    layer.sample_mode = "local"
    assert layer.sample_mode is SampleMode.LOCAL
    with pytest.raises(ValueError, match="sample_mode"):
        layer.sample_mode = "posterior"


def test_sample_parameters_with_generator(layer_case) -> None:
    layer = layer_case.layer(init_sigma=0.1)
    a = layer.sample_parameters(torch.Generator().manual_seed(4))
    b = layer.sample_parameters(torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    with pytest.raises(TypeError, match="generator"):
        layer.sample_parameters(generator=4)


def test_input_errors(layer_case) -> None:
    layer = layer_case.layer()
    x = layer_case.input()
    with pytest.raises(TypeError, match="input"):
        layer(x.numpy())
    with pytest.raises(TypeError, match="dtype"):
        layer(x.float())
    with pytest.raises(ValueError, match="input must have shape"):
        layer(x[..., :-1] if x.dim() == 2 else x[:, :-1])
    with pytest.raises(ValueError, match="input is on"):
        layer(x.to("meta"))


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"init_sigma": 0.0}, ValueError, "init_sigma"),
        ({"init_sigma": -1e-3}, ValueError, "init_sigma"),
        ({"prior": (0.0, 1.0)}, TypeError, "prior"),
        ({"sample_mode": "posterior"}, ValueError, "sample_mode"),
    ],
)
def test_constructor_errors(layer_case, kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        layer_case.layer(**kwargs)
