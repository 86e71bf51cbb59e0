"""The one-step channel ``x' ~ N(x + ε g/‖g‖, σ² I)`` (paper SM-5.2).

With ``random_start=True`` (Wong et al. 2020, "Fast is better than free"; docs/theory.md):
``x₀ ~ U(B_ε(x))`` (clamped to the valid range), ``x₁ = clip(Π_ε(x₀ + α g(x₀)/‖g(x₀)‖))``
with ``α = 1.25 ε`` by default, then ``x' ~ N(x₁, σ² I)``: the gradient is taken at the random
start, not at ``x``.

``g = ∇_x J(x, y)`` for any objective of :mod:`adv_attacks` (``nll``, ``mse``, ``cw``,
``entropy``), evaluated at the target: a posterior draw ``β`` (the Bayesian model in
``"sample"`` mode) or the PPD. The attack point is computed by :class:`adv_attacks.OneStep`
and clamped to the valid range; the Gaussian noise is added after and never clamped, so the
density is exactly ``N(x'; μ, σ² I)`` with ``μ`` the (clamped) attack point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from adv_attacks import (
    AttackProblem,
    Norm,
    Objective,
    ObjectiveSpec,
    OneStep,
    RoutedOneStep,
    per_example_norm,
)
from adv_channels._checks import check_scalar, keep_input_grad, require_target
from adv_channels.base import NoDensityError, Predictive
from adv_channels.gaussian import GaussianFamilyChannel, gaussian_sample

__all__ = ["DEFAULT_STEP_FACTOR", "OneStepChannel", "sample_one_steps"]

DEFAULT_STEP_FACTOR = 1.25
"""Default step ``α = 1.25 ε`` of the random-start step (Wong et al. 2020)."""


def _random_start_step(
    problem: AttackProblem, spec: ObjectiveSpec, step_size: float, generator: torch.Generator | None
) -> Tensor:
    """``clip(Π_ε(x₀ + α g(x₀)/‖g(x₀)‖))`` from ``x₀ = clip(x + δ)``, ``δ ~ U(B_ε)``."""
    x0 = problem.start(True, generator)
    g, _ = problem.gradient(x0, spec)
    alpha = torch.full_like(problem.eps, step_size)
    return problem.step(x0, g, alpha)


class _RandomStartOneStep(OneStep):
    """:class:`adv_attacks.OneStep` from a uniform random start with step ``α``."""

    def __init__(self, *, step_size: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.step_size = step_size

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        if self.eot:
            problem.resample(generator)
        return _random_start_step(problem, self.spec, self.step_size, generator)


class _RandomStartRoutedOneStep(RoutedOneStep):
    """:class:`adv_attacks.RoutedOneStep` from a uniform random start with step ``α``."""

    def __init__(self, *, step_size: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.step_size = step_size

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        if self.routed.route.shape[0] != problem.batch_size:
            raise ValueError(
                f"route has {self.routed.route.shape[0]} entries for a batch of "
                f"{problem.batch_size}"
            )
        return _random_start_step(problem, self.routed, self.step_size, generator)  # type: ignore[arg-type]


class OneStepChannel(GaussianFamilyChannel):
    """One normalised gradient step of size ``ε``, then Gaussian noise ``σ``.

    ``x' = clip(x + ε g / ‖g‖₂) + σ ξ`` (``g = 0`` where ``‖g‖ = 0``); with ``norm="linf"``
    the step is ``ε sign(g)``. ``σ = 0`` is the deterministic point mass used by adversarial
    training (no density).

    Gradients (the pathwise ELBO gradient): ``x'`` is reparameterised, so gradients reach
    the model's parameters through the forward pass the trainer runs on ``x'``. The attack
    direction itself is a constant by default (``differentiable=False``): by Danskin's
    theorem the gradient of ``max_δ ℓ(β; x + δ)`` is that of ``ℓ`` at the maximiser, as in
    adversarial training practice. With ``differentiable=True`` the step is differentiated
    through ``g`` (second order, ``create_graph``), so ``∂x'/∂β ≠ 0``; this costs a double
    backward and is defined for ``norm="l2"`` only (``sign`` has zero derivative). Either way
    ``∂x'/∂x`` is the identity (the perturbation is held constant with respect to ``x``).

    Args:
        eps: Step length ``ε >= 0`` (input units; ``‖x' - x‖₂ = ε`` before noise and
            clamping).
        sigma: Noise standard deviation ``σ >= 0``.
        objective: ``"nll"`` (default), ``"mse"``, ``"cw"`` or ``"entropy"``.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range of the attack point, default ``(0.0, 1.0)``; ``None`` for
            unbounded inputs.
        kappa: CW confidence ``κ >= 0``.
        entropy_sign: ``+1`` raises the predictive entropy, ``-1`` lowers it.
        differentiable: Differentiate the attack direction (see above). Default ``False``.
        random_start: Take the step from ``x₀`` uniform in the ``ε``-ball (clamped), with
            step ``α`` then projected back onto the ball (Wong et al. 2020). Default
            ``False`` (the paper's step from ``x``).
        step_size: ``α > 0`` of the random-start step; default ``1.25 ε``. Only with
            ``random_start``.
        eot: Call ``target.resample(generator=...)`` before the step.
        chunk_size: Examples per forward/backward pass of the attack (see
            :class:`adv_attacks.Attack`).

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``; ``log_prob``: ``(B,)``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,))
        >>> ch = OneStepChannel(eps=0.5, sigma=0.1, clamp=None)
        >>> x_adv = ch.sample(x, y, net)
        >>> d = (ch.mean(x, y, net) - x).flatten(1).norm(dim=1)
        >>> bool(torch.allclose(d, torch.full((5,), 0.5)))
        True
    """

    def __init__(
        self,
        *,
        eps: float,
        sigma: float,
        objective: Objective | str = Objective.NLL,
        norm: Norm | str = Norm.L2,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        kappa: float = 0.0,
        entropy_sign: int = 1,
        differentiable: bool = False,
        random_start: bool = False,
        step_size: float | None = None,
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.eps = check_scalar(eps, "eps")
        self.sigma = check_scalar(sigma, "sigma")
        self.random_start = bool(random_start)
        if step_size is not None and not self.random_start:
            raise ValueError("step_size applies with random_start=True only (else the step is eps)")
        self.step_size = (
            DEFAULT_STEP_FACTOR * self.eps
            if step_size is None
            else check_scalar(step_size, "step_size", positive=True)
        )
        if self.random_start and differentiable:
            raise ValueError(
                "random_start=True and differentiable=True cannot be combined: the "
                "differentiable step is taken at x"
            )
        options = {"step_size": self.step_size} if self.random_start else {}
        attack_cls = _RandomStartOneStep if self.random_start else OneStep
        self.attack = attack_cls(
            **options,
            eps=self.eps,
            norm=norm,
            objective=objective,
            clamp=clamp,
            kappa=kappa,
            entropy_sign=entropy_sign,
            eot=eot,
            chunk_size=chunk_size,
        )
        self.differentiable = bool(differentiable)
        if self.differentiable and self.attack.norm is Norm.LINF:
            raise ValueError(
                "differentiable=True needs norm='l2': the L-inf step eps * sign(g) has zero "
                "derivative, so there is nothing to differentiate"
            )

    @property
    def has_density(self) -> bool:
        """``σ > 0`` and no random start.

        With a random start ``x'`` is a continuous mixture over the start ``x₀``, whose
        density is not available in closed form.
        """
        return self.sigma > 0 and not self.random_start

    def log_prob(
        self,
        x_adv: Tensor,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """``log N(x_adv; μ, σ² I)`` per example (not available with a random start)."""
        if self.random_start:
            raise NoDensityError(
                "OneStepChannel with random_start=True has no closed-form density (a mixture "
                "over the random start)"
            )
        return super().log_prob(x_adv, x, y, target)

    def mean(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """The attack point ``μ`` (not available with a random start: ``μ`` is random)."""
        if self.random_start:
            raise NoDensityError(
                "OneStepChannel with random_start=True: the attack point depends on the random "
                "start, so its mean is not available in closed form; use sample"
            )
        return super().mean(x, y, target)

    @property
    def needs_target(self) -> bool:
        """Always: the step is the target's gradient."""
        return True

    @property
    def objective(self) -> Objective:
        """The attack objective."""
        return Objective(self.attack.spec.objective)

    @property
    def clamp(self) -> tuple[float, float] | None:
        """The valid input range of the attack point."""
        return self.attack.clamp

    def loc_scale(
        self,
        x: Tensor,
        y: Tensor | None,
        target: Predictive | None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, float]:
        """``μ`` the (clamped) attack point; ``σ`` the fixed noise level."""
        require_target(target, type(self).__name__)
        assert target is not None
        # Under inference_mode nothing can be differentiated anyway: the plain step (same
        # point) is what can run there.
        if self.differentiable and not torch.is_inference_mode_enabled():
            point = self._differentiable_step(x, y, target, generator)
        else:
            point = self.attack(target, x.detach(), y, generator=generator)
        return keep_input_grad(point, x), self.sigma

    def _differentiable_step(
        self, x: Tensor, y: Tensor | None, target: Predictive, generator: torch.Generator | None
    ) -> Tensor:
        """The L2 step with ``g`` kept in the autograd graph (``create_graph=True``)."""
        attack = self.attack
        spec = attack.spec
        problem = AttackProblem(
            target,
            x.detach(),
            y,
            eps=self.eps,
            norm=attack.norm,
            clamp=attack.clamp,
            specs=(spec,),
            chunk_size=attack.chunk_size,
        )
        if attack.eot:
            if not callable(getattr(target, "resample", None)):
                raise ValueError("eot=True needs a target with a resample(generator=None) method")
            problem.resample(generator)
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            out = problem.read(xr)
            labels = None
            if spec.needs_labels:
                labels = out.prediction() if y is None else problem.labels()
            total = spec.total(out, labels)
            if not total.requires_grad:
                raise ValueError(
                    "the target's output does not depend differentiably on x (was it computed "
                    "under torch.no_grad() or detached?)"
                )
            (g,) = torch.autograd.grad(total, xr, create_graph=True)
        norm = per_example_norm(g).view((-1,) + (1,) * (x.ndim - 1))
        safe = norm.clamp_min(torch.finfo(g.dtype).tiny)
        # g = 0 gives no move and no gradient (the direction is undefined there).
        unit = torch.where(norm > 0, g / safe, torch.zeros_like(g))
        point = x.detach() + self.eps * unit
        if attack.clamp is not None:
            point = point.clamp(*attack.clamp)
        return point

    def fuses_with(self, other: object) -> bool:
        """Whether ``other`` differs from this channel in its objective only.

        Such channels can sample one batch together (:func:`sample_one_steps`): same class,
        ``ε``, ``σ``, norm, clamp and chunking, the same start (both at ``x``, or both random
        with the same ``α``), the plain step (not ``differentiable``), no ``eot`` (each channel
        would resample the target).
        """
        if type(self) is not OneStepChannel or type(other) is not OneStepChannel:
            return False
        mine, theirs = self.attack, other.attack
        return (
            self.eps == other.eps
            and self.sigma == other.sigma
            and not self.differentiable
            and not other.differentiable
            and not mine.eot
            and not theirs.eot
            and self.random_start == other.random_start
            and (not self.random_start or self.step_size == other.step_size)
            and mine.norm is theirs.norm
            and mine.clamp == theirs.clamp
            and mine.chunk_size == theirs.chunk_size
        )

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return (
            f"eps={self.eps}, sigma={self.sigma}, objective={self.objective.value!r}, "
            f"norm={self.attack.norm.value!r}, clamp={self.clamp}, "
            f"differentiable={self.differentiable}"
            + (f", random_start=True, step_size={self.step_size}" if self.random_start else "")
        )


def sample_one_steps(
    channels: Sequence[OneStepChannel],
    route: Tensor,
    x: Tensor,
    y: Tensor | None,
    target: Predictive | None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample example ``b`` from ``channels[route[b]]``, one attack pass for the batch.

    The channels must fuse (:meth:`OneStepChannel.fuses_with`: they differ in their
    objective only). With ``random_start`` the starts are drawn for the whole batch at once,
    from ``generator``. The attack points are those each channel computes on its own examples
    (:class:`adv_attacks.RoutedOneStep`) for a target that treats examples independently (a
    network with batch norm in training mode normalises over the whole batch here, over each
    channel's examples when they sample apart); the noise ``σ ξ`` is drawn once, so
    the draws follow the same distribution as sampling each sub-batch in turn, not the same
    random stream.

    Args:
        channels: The one-step channels.
        route: ``(B,)`` ``int64`` index into ``channels`` per example.
        x: Clean inputs ``(B, *)`` (validated by the caller).
        y: Labels ``(B,)`` or ``None``.
        target: The predictive the steps ascend.
        generator: Random stream of the noise.

    Returns:
        ``x'`` ``(B, *)``, as :meth:`OneStepChannel.sample`.
    """
    first = channels[0]
    if not all(first.fuses_with(c) for c in channels):
        raise ValueError("sample_one_steps needs channels that differ in their objective only")
    require_target(target, type(first).__name__)
    assert target is not None
    options = {"step_size": first.step_size} if first.random_start else {}
    attack_cls = _RandomStartRoutedOneStep if first.random_start else RoutedOneStep
    attack = attack_cls(
        **options,
        eps=first.eps,
        specs=[c.attack.spec for c in channels],
        route=route,
        norm=first.attack.norm,
        clamp=first.attack.clamp,
        chunk_size=first.attack.chunk_size,
    )
    loc = keep_input_grad(attack(target, x.detach(), y, generator=generator), x)
    return gaussian_sample(loc, first.sigma, x, generator)
