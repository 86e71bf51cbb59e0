"""The shared objective machinery: clear errors, restored state, pathwise draws."""

from __future__ import annotations

import pytest
import torch

from adv_channels import (
    Channel,
    IdentityChannel,
    OneStepChannel,
    amo_channel,
    at_channel,
    nn_channel,
)
from bnn_core import regression_mlp, to_bayesian
from robust_vi import (
    AdversarialTraining,
    IWAEBound,
    ObjectiveResult,
    RatioOfMeans,
    SurrogateELBO,
    repeat_batch,
    surrogate_elbo,
)


class Exploding(Channel):
    def sample(self, x, y=None, target=None, *, generator=None):
        raise RuntimeError("boom")


@pytest.mark.parametrize("cls", [SurrogateELBO, IWAEBound, RatioOfMeans])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_channel_samples": 0}, ValueError, "num_channel_samples"),
        ({"num_channel_samples": 1.5}, TypeError, "num_channel_samples"),
        ({"num_posterior_samples": 0}, ValueError, "num_posterior_samples"),
        ({"task": "ranking"}, ValueError, "task"),
        ({"likelihood": "gaussian"}, TypeError, "likelihood"),
    ],
)
def test_constructor_errors(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls(**kwargs)


def test_point_estimates_have_one_posterior_sample():
    from robust_vi import GeneralisedELBO, TradesPenalty

    with pytest.raises(ValueError, match="num_posterior_samples"):
        GeneralisedELBO(
            TradesPenalty(eps=1.0), weight=1.0, num_posterior_samples=2, point_estimate=True
        )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda m, x, y: surrogate_elbo(m, IdentityChannel(), x, y, dataset_size=10),
            ValueError,
            "dataset_size",
        ),
        (
            lambda m, x, y: surrogate_elbo(m, IdentityChannel(), x, None, dataset_size=100),
            ValueError,
            "labels",
        ),
        (
            lambda m, x, y: surrogate_elbo(m, IdentityChannel(), x, y.float(), dataset_size=100),
            TypeError,
            "class indices",
        ),
        (
            lambda m, x, y: surrogate_elbo(m, IdentityChannel(), x, y[:3], dataset_size=100),
            ValueError,
            "shape",
        ),
        (
            lambda m, x, y: surrogate_elbo(m, IdentityChannel(), x.long(), y, dataset_size=100),
            TypeError,
            "floating",
        ),
        (
            lambda m, x, y: surrogate_elbo(
                m, IdentityChannel(), x * float("nan"), y, dataset_size=100
            ),
            ValueError,
            "NaN",
        ),
        (
            lambda m, x, y: surrogate_elbo(m, "identity", x, y, dataset_size=100),
            TypeError,
            "Channel",
        ),
        (
            lambda m, x, y: surrogate_elbo("model", IdentityChannel(), x, y, dataset_size=100),
            TypeError,
            "Module",
        ),
        (
            lambda m, x, y: surrogate_elbo(
                m, IdentityChannel(), x, y, dataset_size=100, generator=0
            ),
            TypeError,
            "generator",
        ),
        (
            lambda m, x, y: surrogate_elbo(
                m, IdentityChannel(), x, y, dataset_size=100, kl_weight=-1.0
            ),
            ValueError,
            "kl_weight",
        ),
        (
            lambda m, x, y: surrogate_elbo(
                m, IdentityChannel(), x, y, dataset_size=100, task="regression"
            ),
            TypeError,
            "real targets",
        ),
        (
            lambda m, x, y: surrogate_elbo(
                m, OneStepChannel(eps=1.0, sigma=0.1), x, y, dataset_size=100, num_channel_samples=0
            ),
            ValueError,
            "num_channel_samples",
        ),
    ],
)
def test_call_errors(images, small_cnn, call, error, match):
    x, y = images
    with pytest.raises(error, match=match):
        call(small_cnn(), x, y)


def test_a_posterior_needs_bayesian_layers(images, small_cnn):
    x, y = images
    with pytest.raises(ValueError, match="no Bayesian layers"):
        surrogate_elbo(small_cnn(bayesian=False), IdentityChannel(), x, y, dataset_size=100)
    # ... but a point estimate does not.
    AdversarialTraining()(small_cnn(bayesian=False), at_channel(eps=0.5), x, y, dataset_size=100)


def test_regression_needs_a_likelihood():
    model = regression_mlp(3)
    body = model.body  # a network without .likelihood
    x, y = torch.randn(4, 3), torch.randn(4)
    with pytest.raises(ValueError, match="GaussianLikelihood"):
        surrogate_elbo(body, IdentityChannel(), x, y, dataset_size=10, task="regression")
    loss = surrogate_elbo(
        body,
        IdentityChannel(),
        x,
        y,
        dataset_size=10,
        task="regression",
        likelihood=model.likelihood,
    )
    assert loss.ndim == 0
    with pytest.raises(ValueError, match="only used with task='regression'"):
        surrogate_elbo(
            model, IdentityChannel(), x, y.long(), dataset_size=10, likelihood=model.likelihood
        )


def test_state_is_restored_when_the_channel_raises(images, small_cnn):
    model = small_cnn()
    x, y = images
    channel = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        AdversarialTraining()(model, channel, x, y, dataset_size=100)
    assert all(layer.sample_mode.value == "sample" for layer in (model[0], model[3], model[7]))
    assert all(p.requires_grad for p in model.parameters())


def test_a_learned_channel_is_not_updated_by_the_models_loss(images, small_cnn):
    model = small_cnn()
    x, y = images
    channel = nn_channel((1, 12, 12), eps=1.0, sigma_max=0.2, num_classes=3)
    loss = surrogate_elbo(model, channel, x, y, dataset_size=100)
    loss.backward()
    assert all(p.grad is None and p.requires_grad for p in channel.parameters())
    assert model[0].weight_mu.grad is not None


def test_a_differentiable_channel_carries_the_pathwise_gradient_through_x_adv(images, small_cnn):
    """x' = h(x, β, ξ): with a differentiable attack direction the gradient also flows
    through x' into the weights (SPEC §4), so it differs from the Danskin one."""
    model = small_cnn(init_sigma=0.05)
    x, y = images
    grads = []
    for differentiable in (False, True):
        ch = OneStepChannel(eps=1.0, sigma=0.0, clamp=None, differentiable=differentiable)
        loss = surrogate_elbo(
            model, ch, x, y, dataset_size=100, generator=torch.Generator().manual_seed(0)
        )
        grads.append(torch.autograd.grad(loss, [model[0].weight_mu])[0])
        del loss
    assert not torch.allclose(grads[0], grads[1])


def test_result_fields(images, small_cnn):
    model = small_cnn()
    x, y = images
    result = SurrogateELBO(num_channel_samples=3).evaluate(
        model, IdentityChannel(), x, y, dataset_size=100
    )
    assert isinstance(result, ObjectiveResult)
    assert result.outputs.shape == (72, 3) and not result.outputs.requires_grad
    assert torch.equal(result.targets, torch.cat([y] * 3))
    assert result.penalty is None
    assert result.loss.requires_grad and not result.data_term.requires_grad


def test_repeat_batch_groups_copies_per_example():
    t = torch.arange(6).view(3, 2)
    out = repeat_batch(t, 2)
    assert torch.equal(out.view(2, 3, 2)[1], t)
    assert repeat_batch(t, 1) is t


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_joint_channel_parameters_get_the_gradient_of_the_loss(update):
    """A channel with ``update="joint"`` stays in autograd: its ``.grad`` after the loss's
    backward pass is ``∂loss/∂φ`` (checked on the generator's gain against a central finite
    difference in float64, with the same posterior and channel draws); otherwise the
    channel's parameters are constants of the loss."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model = to_bayesian(net).double()
    ch = amo_channel((6,), eps=0.5, sigma_max=0.1, num_classes=3, update=update).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    objective = SurrogateELBO(num_channel_samples=2)

    def loss() -> torch.Tensor:
        draws = torch.Generator().manual_seed(3)
        return objective.evaluate(model, ch, x, y, dataset_size=50, generator=draws).loss

    loss().backward()
    gain = ch.network.gain
    if update == "alternating":
        assert all(p.grad is None for p in ch.parameters())
        return
    assert all(p.grad is not None for p in ch.parameters())
    h = 1e-6
    with torch.no_grad():
        gain += h
        up = loss()
        gain -= 2 * h
        down = loss()
        gain += h
    finite_difference = (up - down) / (2 * h)
    assert abs(float(gain.grad)) > 1e-4
    torch.testing.assert_close(gain.grad, finite_difference, rtol=1e-5, atol=1e-9)
