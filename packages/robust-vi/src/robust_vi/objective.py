"""The shared machinery of the robust-VI objectives (paper, Section 3.3): posterior, channel draws.

Every objective is a loss to *minimise*, normalised per data point. For a minibatch of
``B`` points out of ``N``, ``S`` posterior draws ``β_s = μ + σ ⊙ ε_s`` and ``K`` channel
draws ``x'_{sbk} ~ p(x' | x_b, β_s)`` per point,

``loss = −[(N/B) Σ_b T_b − λ (N/B) Σ_b R_b − w KL(q ‖ p)] / N
       = −mean_b T_b + λ mean_b R_b + w KL(q ‖ p) / N``,

where ``T_b = (1/S) Σ_s bound_k(log p(y_b | x'_{sbk}, β_s))`` is the objective's per-point
term (the reduction over ``k`` is what distinguishes the surrogate, IWAE and ratio-of-means
objectives), ``R_b`` an optional smoothness penalty (generalised posteriors) and ``w`` the
KL weight (annealing). Dividing by ``N`` makes the learning rate independent of the
dataset size.

Draws are pathwise (paper, Section 3.3): each ``β_s`` is a :class:`~robust_vi.PosteriorDraw` (one
stored draw ``ε_s``), which rebuilds ``w = μ + σ ε_s`` differentiably at each call. The *same*
``β_s`` is the channel's ``target`` (so one-step directions are evaluated at ``β_s``, paper
SM-5.2) and scores the ``K`` channel draws, which are concatenated into one batch of ``K·B``
inputs so that a single forward pass serves them all. The channel's own parameters (a
learned generator) are left out of autograd while the model's loss is computed, except its
:meth:`~adv_channels.Channel.joint_parameters` (a learned channel with ``update="joint"``),
which the loss's backward pass then trains too (:class:`~robust_vi.Trainer`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from adv_attacks import frozen_parameters
from adv_channels import Channel
from bnn_core import GaussianLikelihood, Task, is_bayesian, kl_divergence, sample_mode
from robust_vi._checks import (
    as_enum,
    check_batch,
    check_channel,
    check_dataset_size,
    check_float,
    check_generator,
    check_module,
    check_positive_int,
    model_device,
    resolve_likelihood,
)
from robust_vi.likelihood import log_likelihood
from robust_vi.posterior_draw import PosteriorDraw

__all__ = ["Objective", "ObjectiveResult", "repeat_batch"]


@dataclass(frozen=True)
class ObjectiveResult:
    """One evaluation of an objective on a minibatch.

    Attributes:
        loss: The scalar to minimise (with its autograd graph), per data point.
        data_term: ``mean_b T_b``, the batch mean of the per-point bound term (detached).
        kl: ``KL(q ‖ p)`` in nats (detached; ``0`` for point estimates).
        penalty: ``mean_b R_b`` (detached), or ``None`` without a penalty.
        outputs: The model's outputs at the ``K·B`` channel draws of the first posterior
            draw (detached): logits ``(K·B, C)`` or means ``(K·B, D)``.
        targets: The labels of those draws, ``y`` repeated ``K`` times, ``(K·B,)``.
    """

    loss: Tensor
    data_term: Tensor
    kl: Tensor
    penalty: Tensor | None
    outputs: Tensor
    targets: Tensor


def repeat_batch(t: Tensor, times: int) -> Tensor:
    """``t`` stacked ``times`` times along the batch dimension: ``(times·B, *)``.

    Row ``k·B + b`` is ``t[b]``, so ``values.view(times, B)`` groups the copies per example.
    """
    if times == 1:
        return t
    return t.repeat(times, *([1] * (t.ndim - 1)))


class Objective(ABC):
    """Base class of the robust-VI objectives: draws, likelihoods, KL and normalisation.

    Subclasses implement :meth:`bound` (the per-point reduction over the ``K`` channel
    draws) and may add a penalty through :meth:`extra_inputs` and :meth:`penalty`.

    Args:
        num_channel_samples: ``K >= 1`` channel draws per point and posterior draw.
        num_posterior_samples: ``S >= 1`` posterior draws per minibatch.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression only: the :class:`bnn_core.GaussianLikelihood` with the
            learned noise ``s``; default ``model.likelihood``.
        point_estimate: Evaluate the model at its posterior mean (layers in ``"mean"``
            mode, or a deterministic network) with a flat prior: no KL term, ``S = 1``
            (the MAP limit, paper Prop. 3.4).
    """

    penalty_weight: float = 0.0
    """``λ``, the weight of the penalty (``0`` for objectives without one)."""

    def __init__(
        self,
        *,
        num_channel_samples: int = 1,
        num_posterior_samples: int = 1,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
        point_estimate: bool = False,
    ) -> None:
        self.num_channel_samples = check_positive_int(num_channel_samples, "num_channel_samples")
        self.num_posterior_samples = check_positive_int(
            num_posterior_samples, "num_posterior_samples"
        )
        self.task = as_enum(Task, task, "task")
        if likelihood is not None and not isinstance(likelihood, GaussianLikelihood):
            raise TypeError(
                f"likelihood must be a bnn_core.GaussianLikelihood or None; got "
                f"{type(likelihood).__name__}"
            )
        self.likelihood = likelihood
        self.point_estimate = bool(point_estimate)
        if self.point_estimate and self.num_posterior_samples != 1:
            raise ValueError(
                "a point estimate has a single parameter value: num_posterior_samples must be 1"
            )

    # -- the override surface -------------------------------------------------------------

    @abstractmethod
    def bound(self, log_lik: Tensor) -> Tensor:
        """The per-point term of one posterior draw from its ``K`` log-likelihoods.

        Args:
            log_lik: ``(K, B)`` values ``log p(y_b | x'_{bk}, β)``.

        Returns:
            ``(B,)``.
        """

    def check_channel(self, channel: Channel) -> None:
        """Raise if the objective cannot use ``channel`` (default: any channel)."""
        check_channel(channel)

    def extra_inputs(
        self,
        predictive: PosteriorDraw,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None,
    ) -> list[Tensor]:
        """More ``(B, *)`` inputs to evaluate under the same draw (for a penalty)."""
        return []

    def penalty(
        self, outputs: list[Tensor], likelihood: GaussianLikelihood | None
    ) -> Tensor | None:
        """Per-point penalty ``R_b`` ``(B,)`` from the outputs at :meth:`extra_inputs`."""
        return None

    # -- evaluation ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The objective's class name."""
        return type(self).__name__

    def evaluate(
        self,
        model: nn.Module,
        channel: Channel,
        x: Tensor,
        y: Tensor,
        *,
        dataset_size: int,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> ObjectiveResult:
        """Evaluate the objective on a minibatch (see the module docstring).

        Args:
            model: The network; it must hold Bayesian layers unless :attr:`point_estimate`.
            channel: The adversarial channel ``p(x' | x, β)``.
            x: Clean inputs ``(B, *)`` on the model's device.
            y: Labels ``(B,)`` (class indices) or regression targets ``(B,)``/``(B, 1)``.
            dataset_size: ``N >= B``, the number of training points.
            kl_weight: Weight ``w >= 0`` of the KL term (``1`` is the ELBO; less while
                annealing).
            generator: Random stream for the posterior and channel draws (on the model's
                device); ``None`` uses the global one.

        Returns:
            An :class:`ObjectiveResult`; its ``loss`` carries the pathwise gradient.
        """
        model = check_module(model)
        channel = check_channel(channel)
        x, y = check_batch(model, x, y, self.task)
        n = check_dataset_size(dataset_size, x.shape[0])
        kl_weight = check_float(kl_weight, "kl_weight")
        check_generator(generator, model_device(model))
        self.check_channel(channel)
        if not self.point_estimate and not is_bayesian(model):
            raise ValueError(
                f"{self.name} needs a posterior q(β), but the model has no Bayesian layers: "
                "build it with bnn_core (mnist_cnn(), to_bayesian(net)) or use a "
                "point-estimate objective (adversarial_training)"
            )
        likelihood = resolve_likelihood(model, self.likelihood, self.task)
        terms: list[Tensor] = []
        penalties: list[Tensor] = []
        outputs = targets = None
        with ExitStack() as stack:
            if self.point_estimate:
                stack.enter_context(sample_mode(model, "mean"))
            joint = channel.joint_parameters()  # trained by the backward pass of the loss
            stack.enter_context(frozen_parameters(channel))
            for p in joint:
                p.requires_grad_(True)
            for _ in range(self.num_posterior_samples):
                term, pen, out, tgt = self._one_draw(model, channel, x, y, likelihood, generator)
                terms.append(term)
                if pen is not None:
                    penalties.append(pen)
                if outputs is None:
                    outputs, targets = out, tgt
        assert outputs is not None and targets is not None
        data_term = terms[0] if len(terms) == 1 else torch.stack(terms).mean(dim=0)
        loss = -data_term.mean()
        penalty = None
        if penalties:
            pen_mean = penalties[0] if len(penalties) == 1 else torch.stack(penalties).mean(dim=0)
            penalty = pen_mean.mean()
            loss = loss + self.penalty_weight * penalty
        if self.point_estimate:
            kl = loss.new_zeros(())
        else:
            kl = kl_divergence(model)
            if kl_weight > 0:
                loss = loss + (kl_weight / n) * kl
        return ObjectiveResult(
            loss=loss,
            data_term=data_term.detach().mean(),
            kl=kl.detach(),
            penalty=None if penalty is None else penalty.detach(),
            outputs=outputs,
            targets=targets,
        )

    def __call__(
        self,
        model: nn.Module,
        channel: Channel,
        x: Tensor,
        y: Tensor,
        *,
        dataset_size: int,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The scalar loss of :meth:`evaluate`."""
        return self.evaluate(
            model,
            channel,
            x,
            y,
            dataset_size=dataset_size,
            kl_weight=kl_weight,
            generator=generator,
        ).loss

    def _one_draw(
        self,
        model: nn.Module,
        channel: Channel,
        x: Tensor,
        y: Tensor,
        likelihood: GaussianLikelihood | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """One posterior draw: per-point term, penalty, and outputs/targets at the draws."""
        predictive = PosteriorDraw(
            model, task=self.task, likelihood=likelihood, generator=generator
        )
        k, b = self.num_channel_samples, x.shape[0]
        x_rep, y_rep = repeat_batch(x, k), repeat_batch(y, k)
        x_adv = channel.sample(x_rep, y_rep, predictive, generator=generator)
        extra = self.extra_inputs(predictive, x, y, generator)
        inputs = torch.cat([x_adv, *extra]) if extra else x_adv
        out = predictive.outputs(inputs)
        out_adv = out[: k * b] if extra else out
        log_lik = log_likelihood(out_adv, y_rep, self.task, likelihood).view(k, b)
        term = self.bound(log_lik)
        pen = None
        if extra:
            pieces = list(out[k * b :].split(b))
            pen = self.penalty(pieces, likelihood)
        return term, pen, out_adv.detach(), y_rep

    def extra_repr(self) -> str:
        """The configuration, for ``repr``."""
        return (
            f"num_channel_samples={self.num_channel_samples}, "
            f"num_posterior_samples={self.num_posterior_samples}, task={self.task.value!r}, "
            f"point_estimate={self.point_estimate}"
        )

    def __repr__(self) -> str:
        return f"{self.name}({self.extra_repr()})"
