"""The channel interface: a conditional distribution ``p(x' | x, β)`` over attacks.

The paper's Section 3.1 and SM-5. A channel is an ``nn.Module`` with a tiny surface:

* :meth:`Channel.sample` draws ``x'`` (same shape as ``x``), reparameterised where possible
  (``x' = μ + σ ξ``) so that gradients flow from ``x'`` to whatever ``μ`` and ``σ``
  depend on;
* :meth:`Channel.log_prob` and :meth:`Channel.mean` exist where the density is known
  (:attr:`Channel.has_density`); a simulator-only channel raises :class:`NoDensityError`;
* :meth:`Channel.adversary_step` updates a learned channel against a model (a no-op for
  the others; see :attr:`Channel.learnable`).

``target`` is a *predictive* (docs/architecture.md): ``(B, C)`` logits or log-probabilities,
or a Gaussian ``(mean, var)``. A robust-VI trainer passes the Bayesian model itself in
``"sample"`` mode (the attack is then computed at one posterior draw ``β``) or a posterior
predictive (at the PPD).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["Channel", "NoDensityError", "Predictive"]

Predictive = Callable[[Tensor], object]
"""Any callable ``predictive(x) -> (B, C) scores | (mean, var)`` (docs/architecture.md)."""


class NoDensityError(NotImplementedError):
    """Raised when the density of a channel known only as a simulator is asked for.

    A subclass of ``NotImplementedError``: PGD-based and point-mass channels can be sampled
    but have no density (paper, Section 3.2; docs/theory.md, 'Likelihood-free reactive defence');
    check :attr:`Channel.has_density` first.
    """


class Channel(nn.Module, ABC):
    """Base class of the adversarial channels ``p(x' | x, β)``.

    Subclasses implement :meth:`sample`; Gaussian families also :meth:`log_prob` and
    :meth:`mean`. Calling the module is :meth:`sample`. Channels take the device and dtype
    from the input and never modify it.

    Attributes:
        has_density: Whether :meth:`log_prob` is available (a Gaussian with ``σ > 0``, or a
            mixture of such). ``False`` for simulators (PGD) and point masses (``σ = 0``).
        needs_target: Whether :meth:`sample` reads ``target`` (attack-based channels).
        learnable: Whether :meth:`adversary_step` trains something (learned channels with
            the alternating update, and mixtures holding one).
        joint_parameters: The learned parameters trained from the training loss's own
            backward pass (:meth:`joint_adversary_step`) rather than by
            :meth:`adversary_step`; empty by default.
    """

    @property
    def has_density(self) -> bool:
        """Whether :meth:`log_prob` is available."""
        return False

    @property
    def needs_target(self) -> bool:
        """Whether sampling reads ``target`` (a predictive)."""
        return False

    @property
    def learnable(self) -> bool:
        """Whether :meth:`adversary_step` updates parameters of the channel."""
        return False

    @abstractmethod
    def sample(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw one ``x' ~ p(x' | x, β)`` per example.

        Args:
            x: Clean inputs ``(B, *)``; never modified.
            y: Labels ``(B,)`` (class indices or regression targets) or ``None`` (attack
                objectives then use the target's clean prediction).
            target: The predictive under attack; required by attack-based channels.
            generator: Random stream for the noise (and random starts, mixture draws).

        Returns:
            ``x'``, same shape, dtype and device as ``x``.
        """

    def forward(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Same as :meth:`sample`."""
        return self.sample(x, y, target, generator=generator)

    def log_prob(
        self,
        x_adv: Tensor,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """Log-density ``log p(x_adv | x, β)`` per example, shape ``(B,)``.

        Raises:
            NoDensityError: For channels without a density (:attr:`has_density` is False).
        """
        raise NoDensityError(
            f"{type(self).__name__} has no density (a simulator or a point mass): "
            "log_prob is not available; check channel.has_density"
        )

    def mean(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """Expected value ``E[x' | x, β]``, shape ``(B, *)``.

        Raises:
            NoDensityError: For simulator-only channels.
        """
        raise NoDensityError(
            f"{type(self).__name__} is known only as a simulator: mean is not available"
        )

    def adversary_step(
        self,
        target: Predictive,
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor | None:
        """One GAN-style update of the channel against ``target`` (paper, SM-5.4).

        A no-op returning ``None`` for channels with nothing to learn, so that a trainer
        can call it once per batch on any channel.
        """
        return None

    def joint_parameters(self) -> list[nn.Parameter]:
        """The parameters a trainer leaves in autograd while it evaluates its loss.

        Their ``.grad`` after the trainer's backward pass is the gradient of the training
        loss, which :meth:`joint_adversary_step` ascends (a learned channel built with
        ``update="joint"``). Empty for every other channel: the trainer's loss then treats
        the channel's parameters as constants.
        """
        return []

    def joint_adversary_step(self) -> None:
        """Ascend the training loss along the gradients its backward pass left behind.

        The gradients are those of :meth:`joint_parameters`, cleared after the step; a no-op
        for channels without any.
        """
        return None
