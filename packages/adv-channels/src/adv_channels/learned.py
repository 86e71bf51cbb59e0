"""Learned channels: a network that outputs a label-conditioned Gaussian perturbation.

Paper SM-5.4 (docs/theory.md): ``x' = x + m(x, y) + exp(ℓ(x, y)) ⊙ ξ``, trained GAN-style: for each
batch one optimiser step of the network to *maximise* the model's loss (cross-entropy; RMSE
for regression), then one step of the model on samples from it. Here:

* ``m = ε tanh(‖m̃‖₂/ε) m̃/‖m̃‖₂`` (:func:`~adv_channels.squash_to_ball`), so ``‖m‖₂ < ε``:
  learned and attack-based channels share a budget (the library's choice, docs/theory.md);
* ``σ = exp ℓ = σ_max · sigmoid(s)``, i.e. ``ℓ = log σ_max + log sigmoid(s)`` (our choice: the
  noise is not part of the budget, so without a bound the adversary would win by drowning
  the input in noise);
* the mean point ``clip(x + m)`` is clamped to the valid range (which only shortens ``m``);
  the noise is not, so the density ``N(x'; clip(x + m), diag σ²)`` is exact.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adv_attacks import ClassificationOutput, frozen_parameters, read_output
from adv_channels._checks import (
    check_clamp,
    check_in_range,
    check_module_device,
    check_scalar,
    check_x,
    check_y,
    require_target,
)
from adv_channels.base import Predictive
from adv_channels.budget import squash_to_ball
from adv_channels.gaussian import GaussianFamilyChannel

__all__ = ["UPDATES", "LearnedChannel"]

UPDATES = ("alternating", "joint")
"""How a learned channel's network is trained (:class:`LearnedChannel`, ``update=``)."""


class LearnedChannel(GaussianFamilyChannel):
    """A label-conditioned Gaussian perturbation generator with its own Adam optimiser.

    ``x' = clip(x + m) + σ ⊙ ξ`` with ``(m̃, s) = network(x, y)``, ``m`` = ``m̃`` squashed into
    the ``ε``-ball and ``σ = σ_max sigmoid(s)`` (see the module docstring). Sampling is
    reparameterised: gradients reach both the model (through the forward pass run on ``x'``)
    and the network's parameters.

    The channel is conditioned on the label: pass ``y``, or a ``target`` whose clean
    prediction (class, or predictive mean) stands in for it. Its optimiser state is part of
    :meth:`state_dict` (as the module's extra state), so saving and loading the channel
    restores training exactly.

    Args:
        network: ``network(x, y) -> (m̃, s)``, both of ``x``'s shape, with an attribute
            ``num_classes`` (``None`` for real-valued labels): a
            :class:`~adv_channels.ConvGenerator` or :class:`~adv_channels.DenseGenerator`.
        eps: Budget ``ε >= 0`` of the mean perturbation, ``‖m‖₂ < ε`` (input units).
        sigma_max: Upper bound ``σ_max > 0`` of the per-element noise scale.
        clamp: Valid input range of the mean point, e.g. ``(0.0, 1.0)`` for images; default
            ``None`` (unbounded).
        lr: Adam learning rate of :meth:`adversary_step`; default ``1e-3``.
        update: ``"alternating"`` (default, the paper's): for each batch the trainer calls
            :meth:`adversary_step` (its own forward and backward pass through the model),
            then trains the model on samples from the updated network. ``"joint"``: the
            network's parameters stay in autograd while the trainer evaluates its loss on
            samples from the channel (:meth:`joint_parameters`), and
            :meth:`joint_adversary_step` ascends the gradient that the trainer's own
            backward pass left in them: simultaneous gradient descent--ascent on the
            training loss, with no extra pass through the model (docs/theory.md).
            :meth:`adversary_step` is then a no-op.

    Shape:
        - x: ``(B, *)`` (the network's input shape); y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> from adv_channels import DenseGenerator
        >>> ch = LearnedChannel(DenseGenerator(4), eps=0.5, sigma_max=0.1)
        >>> x, y = torch.randn(8, 4), torch.randn(8)
        >>> x_adv = ch.sample(x, y, generator=torch.Generator().manual_seed(0))
        >>> bool(((ch.mean(x, y) - x).norm(dim=1) < 0.5).all())
        True
        >>> model = torch.nn.Linear(4, 1)
        >>> regressor = lambda t: (model(t), torch.ones(len(t)))  # Gaussian (mean, var)
        >>> loss = ch.adversary_step(regressor, x, y)  # one ascent step on the RMSE
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        eps: float,
        sigma_max: float,
        clamp: tuple[float, float] | None = None,
        lr: float = 1e-3,
        update: Literal["alternating", "joint"] = "alternating",
    ) -> None:
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}; got {update!r}")
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        if not hasattr(network, "num_classes"):
            raise TypeError(
                "network must have a num_classes attribute (an int, or None for real-valued "
                "labels), like ConvGenerator and DenseGenerator"
            )
        self.network = network
        self.eps = check_scalar(eps, "eps")
        self.sigma_max = check_scalar(sigma_max, "sigma_max", positive=True)
        self.clamp = check_clamp(clamp)
        self.lr = check_scalar(lr, "lr", positive=True)
        self.update = update
        params = [p for p in network.parameters() if p.requires_grad]
        if not params:
            raise ValueError("network has no trainable parameters")
        self.optimizer = torch.optim.Adam(params, lr=self.lr, maximize=True)

    @property
    def num_classes(self) -> int | None:
        """Classes of the label (``None``: a real-valued regression label)."""
        return self.network.num_classes  # type: ignore[return-value]

    @property
    def has_density(self) -> bool:
        """Always: ``N(x'; clip(x + m), diag σ²)`` with ``σ > 0``."""
        return True

    @property
    def learnable(self) -> bool:
        """Whether :meth:`adversary_step` trains the network (``update="alternating"``).

        With ``"joint"`` the trainer's backward pass and :meth:`joint_adversary_step` do.
        """
        return self.update == "alternating"

    def _labels(self, x: Tensor, y: Tensor | None, target: Predictive | None) -> Tensor:
        """``y``, or the target's clean prediction when ``y`` is ``None``."""
        if y is not None:
            return y
        if target is None:
            raise ValueError(
                "LearnedChannel is conditioned on the label: pass y, or target= (a predictive) "
                "whose clean prediction stands in for it"
            )
        require_target(target, type(self).__name__)
        with torch.no_grad():
            out = read_output(target(x), x.shape[0])
        self._check_task(out)
        return out.prediction()

    def _check_task(self, out: object) -> None:
        classification = isinstance(out, ClassificationOutput)
        if classification != (self.num_classes is not None):
            want = "class scores (B, C)" if self.num_classes is not None else "(mean, var)"
            raise ValueError(
                f"target's output does not match the channel's network: expected {want} "
                f"(network num_classes={self.num_classes})"
            )

    def loc_scale(
        self,
        x: Tensor,
        y: Tensor | None,
        target: Predictive | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``μ = clip(x + squash(m̃))`` and ``σ = σ_max sigmoid(s)``, both ``(B, *)``."""
        check_module_device(self.network, x, "the channel's network")
        check_in_range(x, self.clamp)
        labels = self._labels(x, y, target)
        m_raw, s = self.network(x, labels)
        loc = x + squash_to_ball(m_raw, self.eps)
        if self.clamp is not None:
            loc = loc.clamp(*self.clamp)
        log_scale = math.log(self.sigma_max) + F.logsigmoid(s)
        return loc, log_scale.exp()

    def adversary_step(
        self,
        target: Predictive,
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One Adam step of the network that *increases* the target's loss on ``x'``.

        The loss is the mean cross-entropy of the target's predictive at one draw
        ``x' ~ p(x' | x)`` per example (classification), or the RMSE of its predictive mean
        (regression). The target's parameters, their ``requires_grad`` flags and ``.grad``,
        and its ``training`` flag are left unchanged (its parameters are out of autograd for
        the step); the network's ``.grad`` are overwritten for the step and cleared after.

        Args:
            target: The model (e.g. the Bayesian model in ``"sample"`` mode) or its
                predictive.
            x: Clean inputs ``(B, *)``.
            y: Labels ``(B,)``, or ``None`` for the target's clean prediction.
            generator: Random stream for the noise ``ξ``.

        Returns:
            The loss before the step (a detached 0-d tensor), or ``None`` (nothing done)
            with ``update="joint"``.
        """
        if self.update == "joint":
            return None
        x = check_x(x).detach()
        y = check_y(y, x)
        require_target(target, type(self).__name__)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        with torch.inference_mode(False), torch.enable_grad(), frozen_parameters(target):
            labels = self._labels(x, y, target)
            x_adv = self.sample(x, labels, target, generator=generator)
            out = read_output(target(x_adv), x.shape[0])
            self._check_task(out)
            loss = self._loss(out, labels)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.zeros_like(p) if g is None else g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def joint_parameters(self) -> list[nn.Parameter]:
        """The network's trainable parameters with ``update="joint"``, else none."""
        if self.update != "joint":
            return []
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def joint_adversary_step(self) -> None:
        """With ``update="joint"``: one Adam step up the loss that filled the ``.grad``.

        The step *raises* the loss whose backward pass filled the network's ``.grad``
        (parameters it did not reach count as zero), then clears the ``.grad``. A no-op with
        ``update="alternating"``.
        """
        params = self.joint_parameters()
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @staticmethod
    def _loss(out: Any, labels: Tensor) -> Tensor:
        if isinstance(out, ClassificationOutput):
            return F.nll_loss(out.log_probs, labels.long())
        err = out.mean - labels.reshape(out.mean.shape).to(out.mean.dtype)
        return err.square().mean().clamp_min(torch.finfo(err.dtype).tiny).sqrt()

    def _apply(self, fn: Any, recurse: bool = True) -> LearnedChannel:
        """Move/cast the parameters (``.to``, ``.double``, ...) and the optimiser's state."""
        out = super()._apply(fn, recurse)
        if self.optimizer.state:  # Adam's moments follow their parameters' device and dtype
            self.optimizer.load_state_dict(self.optimizer.state_dict())
        return out

    def get_extra_state(self) -> dict[str, Any]:
        """The optimiser's state, saved with :meth:`state_dict`."""
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the optimiser's state from :meth:`load_state_dict`."""
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ValueError("LearnedChannel extra state must be a dict with key 'optimizer'")
        self.optimizer.load_state_dict(state["optimizer"])

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return (
            f"eps={self.eps}, sigma_max={self.sigma_max}, clamp={self.clamp}, lr={self.lr}, "
            f"update={self.update!r}"
        )
