import math

import pytest
import torch
from torch import nn

from bnn_core import (
    GaussianLikelihood,
    PosteriorPredictive,
    SampleMode,
    forward_samples,
    get_sample_modes,
    mnist_cnn,
    nll,
    ppd_log_probs,
    regression_mlp,
    regression_ppd,
    set_sample_mode,
)
from bnn_core.sampling import draw_noise, weights_from_noise


def test_ppd_log_probs_hand_computed_case() -> None:
    # Draw 1 predicts (0.9, 0.1), draw 2 predicts (0.5, 0.5): the PPD is (0.7, 0.3).
    logits = torch.tensor([[[math.log(0.9), math.log(0.1)]], [[0.0, 0.0]]], dtype=torch.float64)
    log_probs = ppd_log_probs(logits)
    torch.testing.assert_close(log_probs.exp(), torch.tensor([[0.7, 0.3]], dtype=torch.float64))
    # NLL of the PPD: −log 0.7 for label 0, −log 0.3 for label 1.
    assert nll(log_probs, torch.tensor([0])).item() == pytest.approx(-math.log(0.7), rel=1e-12)
    assert nll(log_probs, torch.tensor([1])).item() == pytest.approx(-math.log(0.3), rel=1e-12)


def test_ppd_averages_probabilities_not_logits() -> None:
    logits = torch.tensor([[[0.0, 8.0]], [[8.0, 0.0]], [[8.0, 0.0]]], dtype=torch.float64)
    ppd = ppd_log_probs(logits).exp()
    mean_of_softmax = logits.softmax(-1).mean(0)
    torch.testing.assert_close(ppd, mean_of_softmax)
    assert not torch.allclose(ppd, logits.mean(0).softmax(-1), atol=1e-3)


def test_ppd_log_probs_gradcheck_and_shift_invariance() -> None:
    logits = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ppd_log_probs, (logits,))
    torch.testing.assert_close(ppd_log_probs(logits + 100.0), ppd_log_probs(logits))


def test_classification_equals_ppd_of_the_stored_draws(make_mlp) -> None:
    model = make_mlp()
    ppd = PosteriorPredictive(model, 6, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 4, dtype=torch.float64)
    noise = draw_noise(model, 6, torch.Generator().manual_seed(0), all_layers=True)
    expected = ppd_log_probs(forward_samples(model, x, weights=weights_from_noise(model, noise)))
    torch.testing.assert_close(ppd(x), expected)
    assert ppd.draws(x).shape == (6, 5, 3)


def test_draws_are_fixed_until_resample(make_mlp) -> None:
    model = make_mlp()
    ppd = PosteriorPredictive(model, 3)
    x = torch.randn(5, 4, dtype=torch.float64)
    first = ppd(x)
    torch.testing.assert_close(ppd(x), first)
    ppd.resample()
    assert not torch.allclose(ppd(x), first)
    ppd.resample(torch.Generator().manual_seed(9))
    a = ppd(x)
    ppd.resample(torch.Generator().manual_seed(9))
    torch.testing.assert_close(ppd(x), a)


def test_forward_passes_is_the_number_of_draws(make_mlp) -> None:
    """The predictive protocol's chunking hint: one network pass per posterior draw."""
    assert PosteriorPredictive(make_mlp(), 7).forward_passes == 7
    assert PosteriorPredictive(make_mlp(), 1).forward_passes == 1


def test_constructor_generator_is_the_default_stream(make_mlp) -> None:
    model = make_mlp()
    x = torch.randn(2, 4, dtype=torch.float64)
    a = PosteriorPredictive(model, 2, generator=torch.Generator().manual_seed(1))
    b = PosteriorPredictive(model, 2, generator=torch.Generator().manual_seed(1))
    a.resample()
    b.resample()
    torch.testing.assert_close(a(x), b(x))


def test_training_flag_and_modes_are_left_alone(make_mlp) -> None:
    model = make_mlp()
    model[2].sample_mode = "local"
    before = get_sample_modes(model)
    for training in (True, False):
        model.train(training)
        PosteriorPredictive(model, 2)(torch.randn(2, 4, dtype=torch.float64))
        assert model.training is training
        assert get_sample_modes(model) == before


def test_differentiable_in_input_and_parameters(make_mlp) -> None:
    model = make_mlp()
    ppd = PosteriorPredictive(model, 3)
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ppd, (x,))
    nll(ppd(x), torch.tensor([0, 2])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the stored draws can be differentiated through again (no graph is reused)
    model.zero_grad()
    nll(ppd(x), torch.tensor([0, 2])).backward()


def test_follows_the_model_to_another_dtype(make_mlp) -> None:
    model = make_mlp(dtype=torch.float32)
    ppd = PosteriorPredictive(model, 3)
    x = torch.randn(2, 4)
    out32 = ppd(x)
    ppd.double()
    out64 = ppd(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)


def test_mean_mode_gives_the_point_estimate(make_mlp) -> None:
    model = make_mlp()
    ppd = PosteriorPredictive(model, 4)
    x = torch.randn(3, 4, dtype=torch.float64)
    set_sample_mode(model, SampleMode.MEAN)
    torch.testing.assert_close(ppd(x), model(x).log_softmax(-1))
    set_sample_mode(model, SampleMode.SAMPLE)
    assert not torch.allclose(ppd(x), model[2](model[1](model[0](x))).log_softmax(-1))


def test_deterministic_model_gives_its_softmax() -> None:
    net = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(2, 4)
    torch.testing.assert_close(PosteriorPredictive(net, 5)(x), net(x).log_softmax(-1))


def test_mnist_cnn_ppd_is_a_distribution() -> None:
    ppd = PosteriorPredictive(mnist_cnn(init_sigma=0.05), 3)
    out = ppd(torch.rand(4, 1, 28, 28))
    assert out.shape == (4, 10)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4))


def test_regression_moments_against_the_mixture() -> None:
    model = regression_mlp(3, init_sigma=0.2, init_noise=0.3)
    model.double()
    ppd = PosteriorPredictive(model, 5, task="regression")
    x = torch.randn(4, 3, dtype=torch.float64)
    mean, var = ppd(x)
    f = ppd.draws(x)  # (M, B, 1)
    assert mean.shape == var.shape == (4, 1)
    s2 = model.likelihood.variance
    # moments of the mixture (1/M) Σ N(f_m, s²): E[y²] − E[y]² with E[y²] = mean(f² + s²)
    torch.testing.assert_close(mean, f.mean(0))
    torch.testing.assert_close(var, (f.square() + s2).mean(0) - f.mean(0).square())
    (mean.sum() + var.sum()).backward()  # differentiable, also in the noise scale
    assert model.likelihood.noise_rho.grad is not None


def test_regression_ppd_function() -> None:
    means = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    mean, var = regression_ppd(means, 0.5)
    torch.testing.assert_close(mean, torch.tensor([2.0], dtype=torch.float64))
    torch.testing.assert_close(var, torch.tensor([1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="noise_var"):
        regression_ppd(means, -1.0)


def test_regression_ppd_noise_var_shapes() -> None:
    means = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=torch.float64)  # (M, B)
    per_example = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    _, var = regression_ppd(means, per_example)
    torch.testing.assert_close(var, torch.tensor([1.1, 0.2, 1.3], dtype=torch.float64))
    _, var = regression_ppd(means, torch.tensor(0.5, dtype=torch.float64))
    assert var.shape == (3,)
    for bad in (per_example[:, None], torch.ones(2, dtype=torch.float64)):  # (B, 1): (B, B)
        with pytest.raises(ValueError, match="noise_var of shape"):
            regression_ppd(means, bad)


def test_regression_with_an_explicit_likelihood(make_mlp) -> None:
    lik = GaussianLikelihood(0.5, dtype=torch.float64)
    ppd = PosteriorPredictive(make_mlp(), 2, task="regression", likelihood=lik)
    mean, var = ppd(torch.randn(3, 4, dtype=torch.float64))
    assert mean.shape == (3, 3) and (var >= 0.25).all()


def test_errors(make_mlp) -> None:
    model = make_mlp()
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        PosteriorPredictive(model, 0)
    with pytest.raises(ValueError, match="task must be one of"):
        PosteriorPredictive(model, 2, task="ranking")
    with pytest.raises(ValueError, match="needs a GaussianLikelihood"):
        PosteriorPredictive(model, 2, task="regression")
    with pytest.raises(TypeError, match="likelihood must be a GaussianLikelihood"):
        PosteriorPredictive(model, 2, task="regression", likelihood=nn.Linear(1, 1))
    with pytest.raises(ValueError, match="likelihood is only used"):
        PosteriorPredictive(model, 2, likelihood=GaussianLikelihood())
    with pytest.raises(ValueError, match="method must be one of"):
        PosteriorPredictive(model, 2, method="fast")
    with pytest.raises(ValueError, match="x contains NaN"):
        PosteriorPredictive(model, 2)(torch.full((1, 4), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"needs model\(x\) of shape \(B, C\)"):
        PosteriorPredictive(model, 2)(torch.randn(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="generator"):
        PosteriorPredictive(model, 2, generator="seed")
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        ppd_log_probs([[0.0]])
    with pytest.raises(ValueError, match="logits must have at least 2 dimensions"):
        ppd_log_probs(torch.zeros(3))
