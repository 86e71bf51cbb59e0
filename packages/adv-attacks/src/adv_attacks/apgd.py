"""Auto-PGD (APGD, APGD-T): PGD without a step size to tune (Croce & Hein 2020).

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, Algorithm 1: PGD with momentum ``α = 0.75`` whose step
size starts at ``η = 2ε`` and is halved at checkpoints when progress stalls, restarting
from the best point found. Losses: cross-entropy (``nll`` on the predictive's
log-probabilities: for a BNN the log of its mean probabilities) and the difference of
logits ratio (DLR); APGD-T ascends the targeted DLR towards each of the ``k`` most likely
wrong classes in turn. With ``eot=n`` each step's gradient is averaged over ``n``
resamplings of a stochastic predictive (AutoAttack's "rand" version). See docs/theory.md,
"Reliable evaluation".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, overload

import torch
from torch import Tensor

from adv_attacks._options import coerce_option
from adv_attacks._progress import progress_bar
from adv_attacks.base import (
    Attack,
    AttackProblem,
    AttackResult,
    Budget,
    Clamp,
    check_steps,
)
from adv_attacks.norms import Norm, _unsqueeze_like, per_example_norm, project
from adv_attacks.objectives import ObjectiveSpec, TargetedDLR
from adv_attacks.predictive import ClassificationOutput

__all__ = [
    "APGD",
    "APGDLoss",
    "APGDT",
    "apgd",
    "apgd_checkpoints",
    "apgd_start",
    "check_eot",
]

MOMENTUM = 0.75
"""``α`` of Algorithm 1 (the first step takes ``α = 1``)."""
RHO = 0.75
"""``ρ``: condition 1 halves the step when fewer than ``ρ`` of the steps since the last
checkpoint increased the objective."""


class APGDLoss(StrEnum):
    """The loss APGD ascends."""

    CE = "ce"
    """Cross-entropy ``-log p_y`` of the predictive (the ``nll`` objective)."""
    DLR = "dlr"
    """Difference of logits ratio on log-probabilities (shift-invariant)."""


def check_eot(eot: object) -> int:
    """Resamplings per gradient step: ``False``/``0`` none, ``True``/``1`` one, ``n >= 1`` n.

    Raises:
        TypeError, ValueError: For anything else.
    """
    if isinstance(eot, bool):
        return int(eot)
    if not isinstance(eot, int):
        raise TypeError(f"eot must be a bool or an int >= 0, got {type(eot).__name__}")
    if eot < 0:
        raise ValueError(f"eot must be >= 0 (resamplings per step), got {eot}")
    return eot


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ⌈p_j N⌉`` at which APGD checks its step size (j ≥ 1).

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    (Croce & Hein 2020, Section 3.2); duplicates (small ``N``) are merged and checkpoints
    beyond ``N`` dropped.

    Args:
        steps: ``N >= 1``.

    Returns:
        Strictly increasing iterations in ``[1, N]``.

    Examples:
        >>> apgd_checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    check_steps(steps)
    p = [0.0, 0.22]
    while p[-1] <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    out: list[int] = []
    for q in p[1:]:
        w = math.ceil(round(q * steps, 9))
        if 1 <= w <= steps and (not out or w > out[-1]):
            out.append(w)
    return out


def apgd_start(
    x: Tensor, eps: Tensor, norm: Norm, *, generator: torch.Generator | None = None
) -> Tensor:
    """APGD's random start as in the reference implementation: a perturbation on the sphere.

    L2: a Gaussian direction scaled to ``‖δ‖₂ = ε``; L∞: ``u ~ U(-1, 1)`` per entry scaled
    so that ``max |δ_i| = ε``. The caller clamps ``x + δ`` to the valid range.

    Args:
        x: The batch ``(B, *)`` (shape, dtype, device only).
        eps: Budgets ``(B,)``.
        norm: The threat model.
        generator: Random stream (may live on another device than ``x``).

    Returns:
        ``δ`` with ``x``'s shape.
    """
    dev = generator.device if generator is not None else x.device
    if norm is Norm.LINF:
        t = 2.0 * torch.rand(x.shape, generator=generator, device=dev, dtype=x.dtype) - 1.0
    else:
        t = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
    t = t.to(x.device)
    tiny = torch.finfo(x.dtype).tiny
    scale = eps / per_example_norm(t, norm).clamp_min(tiny)
    return t.mul_(_unsqueeze_like(scale, t))


@dataclass
class _Eval:
    """Gradient, per-example objective and success at an iterate."""

    grad: Tensor
    value: Tensor
    success: Tensor


def _evaluate(
    problem: AttackProblem,
    x: Tensor,
    spec: ObjectiveSpec | TargetedDLR,
    eot: int,
    generator: torch.Generator | None,
) -> _Eval:
    """Gradient, objective and success at ``x``; with ``eot = n`` averaged over n redraws.

    The objective is the mean of the ``n`` draws' values (the quantity whose gradient is
    averaged); success is read on the pooled predictive (the log of the mean of the ``n``
    draws' probabilities).
    """
    passes = max(eot, 1)
    grad: Tensor | None = None
    value: Tensor | None = None
    log_probs: list[Tensor] = []
    for _ in range(passes):
        if eot:
            problem.resample(generator)
        g, out = problem.gradient(x, spec)  # type: ignore[arg-type]
        if not isinstance(out, ClassificationOutput):
            raise ValueError("APGD needs a classification predictive (class scores)")
        y = problem.labels()  # after the first pass, which validated the given labels
        with torch.no_grad():
            v = spec.values(out, y)
        grad = g if grad is None else grad.add_(g)
        value = v if value is None else value.add_(v)
        log_probs.append(out.log_probs)
    assert grad is not None and value is not None
    if passes > 1:
        grad.div_(passes)
        value.div_(passes)
        pooled = torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(passes)
    else:
        pooled = log_probs[0]
    return _Eval(grad, value, pooled.argmax(dim=1) != problem.labels())


def _rows(mask: Tensor, x: Tensor) -> Tensor:
    return _unsqueeze_like(mask, x)


def _linf_box(problem: AttackProblem) -> tuple[Tensor, Tensor]:
    """``(lo, hi)``: the L∞ ball ``[x - ε, x + ε]`` intersected with the valid range."""
    e = _rows(problem.eps, problem.x)
    lo, hi = problem.x - e, problem.x + e
    if problem.clamp is not None:
        lo.clamp_(min=problem.clamp[0])
        hi.clamp_(max=problem.clamp[1])
    return lo, hi


def run_apgd(
    problem: AttackProblem,
    spec: ObjectiveSpec | TargetedDLR,
    *,
    steps: int,
    rho: float = RHO,
    eot: int = 0,
    generator: torch.Generator | None = None,
    random_start: bool = True,
    bar: object | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One run of Algorithm 1 of Croce & Hein (2020) on every example of ``problem``.

    Args:
        problem: The validated batch, its labels and predictive.
        spec: The objective (``nll``, ``dlr`` or a :class:`TargetedDLR`).
        steps: ``N`` iterations (``N + 1`` gradient evaluations, the first at the start).
        rho: ``ρ`` of condition 1.
        eot: Resamplings averaged per gradient (0: the predictive's draws stay fixed).
        generator: Random stream for the start and the resamplings.
        random_start: Start on the sphere of radius ε (:func:`apgd_start`), else at ``x``.
        bar: A progress bar advanced by one per iteration.

    Returns:
        ``(x_adv, success, value)``: per example the last misclassified iterate where there
        is one, else the iterate of highest objective; whether it is misclassified; the
        highest objective reached, ``(B,)``.
    """
    x0 = problem.x
    eps = problem.eps
    if random_start:
        x = problem.clip(apgd_start(x0, eps, problem.norm, generator=generator).add_(x0))
    else:
        x = x0.clone()
    ev = _evaluate(problem, x, spec, eot, generator)
    g = ev.grad
    f_best = ev.value.clone()
    x_best, g_best = x.clone(), g.clone()
    success = ev.success.clone()
    x_succ = x.clone()
    eta = 2.0 * eps
    x_prev = x.clone()
    f_prev = ev.value.clone()
    n_incr = torch.zeros_like(f_best)
    f_best_last = f_best.clone()
    reduced_last = torch.zeros_like(success)
    checkpoints = apgd_checkpoints(steps)
    w_prev, j = 0, 0
    box = _linf_box(problem) if problem.norm is Norm.LINF else None
    for i in range(steps):
        a = 1.0 if i == 0 else MOMENTUM
        with torch.no_grad():
            if box is not None:  # L∞: ball ∩ range is a box, one clamp projects onto both
                # g is not read again (g_best holds copies): z is built in its buffer
                z = torch.addcmul(x, g.sign_(), _rows(eta, x), out=g)
                z = torch.clamp(z, min=box[0], max=box[1], out=z)
            else:
                z = problem.step(x.clone(), g, eta)  # clip(Π_ε(x + η d(g)))
            # x + a (z - x) + (1 - a)(x - x_prev) = a z + (1 - a)(2 x - x_prev)
            x_new = z.mul_(a).add_(x, alpha=2.0 * (1.0 - a)).sub_(x_prev, alpha=1.0 - a)
            if box is not None:
                x_new = torch.clamp(x_new, min=box[0], max=box[1], out=x_new)
            else:
                x_new = problem.clip(project(x_new.sub_(x0), eps, problem.norm).add_(x0))
        x_prev, x = x, x_new
        ev = _evaluate(problem, x, spec, eot, generator)
        g, f = ev.grad, ev.value
        with torch.no_grad():
            hit = ev.success
            rows = hit.nonzero().squeeze(1)
            if rows.numel():  # row copies of the few that changed, not whole-batch where
                x_succ.index_copy_(0, rows, x.index_select(0, rows))
                success |= hit
            n_incr += (f > f_prev).to(n_incr.dtype)
            f_prev = f.clone()
            better = f > f_best
            rows = better.nonzero().squeeze(1)
            if rows.numel():  # one nonzero for both copies
                x_best.index_copy_(0, rows, x.index_select(0, rows))
                g_best.index_copy_(0, rows, g.index_select(0, rows))
                f_best = torch.where(better, f, f_best)
            if j < len(checkpoints) and i + 1 == checkpoints[j]:
                cond1 = n_incr < rho * (checkpoints[j] - w_prev)
                cond2 = ~reduced_last & (f_best <= f_best_last)
                reduce = cond1 | cond2
                eta = torch.where(reduce, eta / 2.0, eta)
                x = torch.where(_rows(reduce, x), x_best, x)
                g = torch.where(_rows(reduce, g), g_best, g)
                f_prev = torch.where(reduce, f_best, f_prev)
                reduced_last = reduce
                f_best_last = f_best.clone()
                n_incr.zero_()
                w_prev, j = checkpoints[j], j + 1
        if bar is not None:
            bar.update(1)  # type: ignore[attr-defined]
    x_adv = torch.where(_rows(success, x), x_succ, x_best)
    return x_adv, success, f_best


class _APGDBase(Attack):
    """Options shared by :class:`APGD` and :class:`APGDT`."""

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str,
        clamp: Clamp,
        steps: int,
        n_restarts: int,
        rho: float,
        eot: bool | int,
        random_start: bool,
        chunk_size: int | None,
        progress: bool,
    ) -> None:
        n_eot = check_eot(eot)
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=n_eot > 0, chunk_size=chunk_size)
        self.steps = check_steps(steps)
        self.n_restarts = check_steps(n_restarts, "n_restarts")
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be a float in (0, 1], got {rho!r}")
        self.rho = float(rho)
        self.eot_samples = n_eot
        self.random_start = bool(random_start)
        self.progress = bool(progress)

    def _runs(
        self,
        problem: AttackProblem,
        specs: list[Callable[[Tensor], ObjectiveSpec | TargetedDLR]],
        generator: torch.Generator | None,
        desc: str,
    ) -> Tensor:
        """Run APGD for each restart and each objective on the examples still standing.

        ``specs[k](index)`` builds the k-th objective for the examples ``index``. An example
        keeps its first successful point; one never fooled keeps its highest-objective point
        (over runs of the same objective, the last objective's).
        """
        b = problem.batch_size
        x_adv = problem.x.clone()
        success = torch.zeros(b, dtype=torch.bool, device=problem.x.device)
        best = torch.full((b,), float("-inf"), dtype=problem.x.dtype, device=problem.x.device)
        total = self.steps * self.n_restarts * len(specs)
        bar = progress_bar(total, desc, self.progress, unit="step")
        try:
            for make_spec in specs:
                best.fill_(float("-inf"))
                for _ in range(self.n_restarts):
                    index = (~success).nonzero().squeeze(1)
                    if index.numel() == 0:
                        bar.update(self.steps)
                        continue
                    sub = problem.subset(index)
                    xa, ok, val = run_apgd(
                        sub,
                        make_spec(index),
                        steps=self.steps,
                        rho=self.rho,
                        eot=self.eot_samples,
                        generator=generator,
                        random_start=self.random_start,
                        bar=bar,
                    )
                    keep = ok | (val > best[index])
                    x_adv[index[keep]] = xa[keep]
                    best[index] = torch.maximum(best[index], val)
                    success[index[ok]] = True
                    bar.set_postfix_str(f"fooled {int(success.sum())}/{b}")
        finally:
            bar.close()
        return x_adv


class APGD(_APGDBase):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1) on cross-entropy or DLR, L2 or L∞.

    From a random start on the sphere of radius ε, ``N`` steps
    ``z = clip(Π_ε(x⁽ᵏ⁾ + η d(∇f)))``, ``x⁽ᵏ⁺¹⁾ = clip(Π_ε(x⁽ᵏ⁾ + α(z - x⁽ᵏ⁾) +
    (1 - α)(x⁽ᵏ⁾ - x⁽ᵏ⁻¹⁾)))`` with ``d`` the L2-normalised gradient or its sign (L∞),
    ``α = 0.75`` (1 at the first step) and ``η = 2ε`` at first. At each checkpoint
    ``w_j`` (:func:`apgd_checkpoints`) an example's step is halved, and its iterate reset to
    its best point, when (1) fewer than ``ρ (w_j - w_{j-1})`` of the steps since the last
    checkpoint increased the objective, or (2) its step was not halved at the last
    checkpoint and its best objective has not risen since. The result per example is a
    misclassified iterate where one was met, else the iterate of highest objective.

    Differences from the reference implementation (and torchattacks' ``APGD``), all
    documented in docs/theory.md: condition 1 counts increases from ``x⁽⁰⁾`` (the reference
    compares the first one with 0), condition 2 also applies at the first checkpoint (as
    in the paper's algorithm), and after a reset the next increase is counted from the best
    point's objective.

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        loss: ``"ce"`` (default: ``nll`` on the predictive's log-probabilities) or
            ``"dlr"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        steps: ``N``, default 100 (AutoAttack's standard setting).
        n_restarts: Runs from fresh random starts on the examples not yet fooled.
        rho: ``ρ``, default 0.75.
        eot: Resamplings of the predictive averaged per gradient (``predictive.resample
            (generator=...)`` before each): ``False``/``0`` keeps its draws fixed,
            ``True`` = 1, ``n`` (AutoAttack's "rand" version uses 20).
        random_start: Start on the sphere (default) or at ``x``.
        chunk_size: Examples per forward/backward pass (see :class:`~adv_attacks.Attack`).
        progress: Show a tqdm bar over the steps.

    Shape:
        - x: ``(B, *)``; y: ``(B,)`` labels; output: ``(B, *)``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> x_adv = APGD(eps=0.1, norm="linf", steps=10)(net, x, y)
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        loss: APGDLoss | str = APGDLoss.CE,
        clamp: Clamp = (0.0, 1.0),
        steps: int = 100,
        n_restarts: int = 1,
        rho: float = RHO,
        eot: bool | int = False,
        random_start: bool = True,
        chunk_size: int | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            clamp=clamp,
            steps=steps,
            n_restarts=n_restarts,
            rho=rho,
            eot=eot,
            random_start=random_start,
            chunk_size=chunk_size,
            progress=progress,
        )
        self.loss = coerce_option(APGDLoss, loss, "loss")
        self.spec = ObjectiveSpec("nll" if self.loss is APGDLoss.CE else "dlr")

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The single objective (``nll`` or ``dlr``)."""
        return (self.spec,)

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        desc = f"APGD-{self.loss.value.upper()}"
        return self._runs(problem, [lambda index: self.spec], generator, desc)


class APGDT(_APGDBase):
    """Targeted APGD on the targeted DLR, over the ``k`` most likely wrong classes.

    Croce & Hein (2020), APGD-T: for each of the ``n_targets`` classes other than the
    label with the highest clean scores, in order, :class:`APGD` on
    :class:`~adv_attacks.TargetedDLR` towards it, on the examples not yet misclassified.
    Success is untargeted (the prediction differs from the label). Needs at least 4
    classes; ``n_targets`` is capped at ``C - 1``.

    The options ``eps``, ``norm``, ``clamp``, ``steps`` (per target), ``n_restarts``,
    ``rho``, ``eot``, ``random_start``, ``chunk_size`` and ``progress`` are those of
    :class:`APGD`.

    Args:
        n_targets: ``k``, default 9 (AutoAttack's standard setting).

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> APGDT(eps=0.1, norm="linf", steps=5, n_targets=2)(net, x, y).shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        clamp: Clamp = (0.0, 1.0),
        steps: int = 100,
        n_targets: int = 9,
        n_restarts: int = 1,
        rho: float = RHO,
        eot: bool | int = False,
        random_start: bool = True,
        chunk_size: int | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            clamp=clamp,
            steps=steps,
            n_restarts=n_restarts,
            rho=rho,
            eot=eot,
            random_start=random_start,
            chunk_size=chunk_size,
            progress=progress,
        )
        self.n_targets = check_steps(n_targets, "n_targets")

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The reported objective: the untargeted DLR."""
        return (ObjectiveSpec("dlr"),)

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        with torch.no_grad():
            out = problem.read(problem.x)
        assert isinstance(out, ClassificationOutput)
        c = out.num_classes
        if c < 4:
            raise ValueError(f"APGD-T (targeted DLR) needs at least 4 classes, got {c}")
        y = problem.labels()
        scores = out.log_probs.detach().scatter(1, y.unsqueeze(1), float("-inf"))
        ranked = scores.argsort(dim=1, descending=True)[:, : min(self.n_targets, c - 1)]
        specs = [(lambda index, r=r: TargetedDLR(ranked[index, r])) for r in range(ranked.shape[1])]
        return self._runs(problem, specs, generator, "APGD-T")


@overload
def apgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    loss: APGDLoss | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    n_restarts: int = ...,
    eot: bool | int = ...,
    chunk_size: int | None = ...,
    progress: bool = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def apgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    loss: APGDLoss | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    steps: int = ...,
    n_restarts: int = ...,
    eot: bool | int = ...,
    chunk_size: int | None = ...,
    progress: bool = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def apgd(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    loss: APGDLoss | str = APGDLoss.CE,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    steps: int = 100,
    n_restarts: int = 1,
    eot: bool | int = False,
    chunk_size: int | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """APGD-CE or APGD-DLR (Croce & Hein 2020); see :class:`APGD` for every option.

    Args:
        predictive: A classifier returning ``(B, C)`` logits or log-probabilities.
        x: Clean inputs ``(B, *)``, never modified.
        y: Labels ``(B,)``, or ``None`` (the clean prediction).
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        loss: ``"ce"`` or ``"dlr"``.
        clamp: Valid input range or ``None``.
        generator: Random stream for the start and the resamplings.
        steps: ``N``, default 100.
        n_restarts: Random restarts on the examples not yet fooled.
        eot: Resamplings averaged per gradient (``n``; 0/``False``: draws fixed).
        chunk_size: Examples per forward/backward pass.
        progress: Show a tqdm bar.
        return_info: Return an :class:`AttackResult` (``objective``: the loss at ``x_adv``).

    Returns:
        The adversarial batch, or an :class:`AttackResult`.

    Examples:
        >>> net = torch.nn.Linear(5, 3)
        >>> res = apgd(net, torch.rand(4, 5), eps=0.2, steps=5, return_info=True)
        >>> res.success.shape
        torch.Size([4])
    """
    attack = APGD(
        eps=eps,
        norm=norm,
        loss=loss,
        clamp=clamp,
        steps=steps,
        n_restarts=n_restarts,
        eot=eot,
        chunk_size=chunk_size,
        progress=progress,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
