"""The PGD channel: projected gradient ascent from a random start, then Gaussian noise.

Paper, SM-5.2: ``x_T = PGD(x)`` (:class:`adv_attacks.PGD`: ``T`` projected steps in
the ``ε``-ball, clamped to the valid range), then ``x' ~ N(x_T, σ² I)``. The law of ``x_T``
is known only through the simulator (random start, iterated projections), so the channel has
no density (paper, Section 3.2): :meth:`~adv_channels.Channel.log_prob` and
:meth:`~adv_channels.Channel.mean` raise :class:`~adv_channels.NoDensityError`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adv_attacks import PGD, Norm, Objective
from adv_channels._checks import (
    check_scalar,
    check_x,
    check_y,
    keep_input_grad,
    require_target,
)
from adv_channels.base import Channel, Predictive
from adv_channels.gaussian import standard_normal

__all__ = ["PGDChannel"]


class PGDChannel(Channel):
    """PGD from a random start (on by default), then Gaussian noise ``σ``: a simulator.

    ``x' = PGD_T(x) + σ ξ``, the attack point clamped to the valid range, the noise not.
    ``σ = 0`` is the deterministic multi-step channel of PGD adversarial training (random
    start aside). The attack point is a constant for autograd (Danskin), so gradients reach
    the model's parameters through the forward pass run on ``x'``; ``∂x'/∂x`` is the identity.

    Args:
        eps: Budget ``ε >= 0`` (L2 ball or L∞ box, input units).
        sigma: Noise standard deviation ``σ >= 0``.
        steps: ``T``, default 50 (paper, Section 4.1).
        step_size: ``η``; default ``2.5 ε / T`` (the library's choice; docs/theory.md, 'Attacks').
        random_start: Start uniformly in the ball; default on (docs/theory.md, 'Attacks').
        objective: ``"nll"`` (default), ``"mse"``, ``"cw"`` or ``"entropy"``.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        kappa: CW confidence ``κ``.
        entropy_sign: ``+1`` or ``-1``.
        eot: Resample the target's posterior draws before every step.
        chunk_size: Examples per forward/backward pass (see :class:`adv_attacks.Attack`).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x = torch.rand(5, 1, 2, 2)
        >>> ch = PGDChannel(eps=0.3, sigma=0.0, steps=5)
        >>> x_adv = ch.sample(x, target=net, generator=torch.Generator().manual_seed(0))
        >>> bool(((x_adv - x).flatten(1).norm(dim=1) <= 0.3 + 1e-6).all()), ch.has_density
        (True, False)
    """

    def __init__(
        self,
        *,
        eps: float,
        sigma: float,
        steps: int = 50,
        step_size: float | None = None,
        random_start: bool = True,
        objective: Objective | str = Objective.NLL,
        norm: Norm | str = Norm.L2,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        kappa: float = 0.0,
        entropy_sign: int = 1,
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.eps = check_scalar(eps, "eps")
        self.sigma = check_scalar(sigma, "sigma")
        if step_size is not None:
            step_size = check_scalar(step_size, "step_size")
        self.attack = PGD(
            eps=self.eps,
            norm=norm,
            objective=objective,
            clamp=clamp,
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            kappa=kappa,
            entropy_sign=entropy_sign,
            eot=eot,
            chunk_size=chunk_size,
        )

    @property
    def needs_target(self) -> bool:
        """Always: PGD ascends the target's objective."""
        return True

    @property
    def objective(self) -> Objective:
        """The attack objective."""
        return Objective(self.attack.spec.objective)

    @property
    def clamp(self) -> tuple[float, float] | None:
        """The valid input range of the attack point."""
        return self.attack.clamp

    def sample(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Run PGD on ``target`` (random start from ``generator``), then add ``σ ξ``."""
        x = check_x(x)
        y = check_y(y, x)
        require_target(target, type(self).__name__)
        assert target is not None
        point = keep_input_grad(self.attack(target, x.detach(), y, generator=generator), x)
        if self.sigma == 0.0:
            return point
        return point + self.sigma * standard_normal(x, generator)

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        a = self.attack
        return (
            f"eps={self.eps}, sigma={self.sigma}, steps={a.steps}, "
            f"random_start={a.random_start}, objective={self.objective.value!r}, "
            f"norm={a.norm.value!r}, clamp={self.clamp}"
        )
