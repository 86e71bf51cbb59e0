"""Robust accuracy as the per-example worst case over an ensemble of attacks ("AA").

Croce & Hein (2020) evaluate robustness with an ensemble of parameter-free attacks run in
sequence, each on the examples still classified correctly, and report the worst case per
example: APGD-CE, APGD-T (targeted DLR), FAB-T and Square in their "standard" version;
APGD-CE and APGD-DLR, each step's gradient averaged over 20 redraws (EOT), for randomised
defences ("rand"). :func:`robust_accuracy` runs that evaluation on any classification
predictive (a plain classifier, a BNN's posterior predictive, a reactive PPD) and adds
checks for gradient masking a user can act on (Athalye et al. 2018; Tramèr et al. 2020):
a gradient-free attack beating the gradient ones, one step beating many, EOT changing the
result, and (:func:`robust_accuracy_curve`) accuracy that does not fall as ε grows.
FAB-T is not part of the ensemble. See docs/theory.md, "Reliable evaluation".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import torch
from torch import Tensor

from adv_attacks._options import coerce_option
from adv_attacks._progress import progress_bar
from adv_attacks.apgd import APGD, APGDT, check_eot
from adv_attacks.base import (
    Attack,
    AttackProblem,
    Budget,
    Clamp,
    check_budget,
    check_clamp,
    check_steps,
    per_example,
)
from adv_attacks.norms import Norm
from adv_attacks.objectives import ObjectiveSpec
from adv_attacks.one_step import OneStep
from adv_attacks.predictive import ClassificationOutput, read_output
from adv_attacks.square import Square

__all__ = [
    "AttackSummary",
    "Diagnostic",
    "DiagnosticCode",
    "EnsembleAttack",
    "RobustAccuracy",
    "RobustAccuracyCurve",
    "Version",
    "robust_accuracy",
    "robust_accuracy_curve",
]


class Version(StrEnum):
    """Which ensemble :func:`robust_accuracy` runs."""

    STANDARD = "standard"
    """APGD-CE, APGD-T, Square, the predictive's draws fixed (deterministic predictives)."""
    RAND = "rand"
    """APGD-CE and APGD-DLR with EOT, judged at fresh draws (stochastic predictives)."""


class EnsembleAttack(StrEnum):
    """The attacks an ensemble can hold (``attacks=`` of :func:`robust_accuracy`)."""

    APGD_CE = "apgd-ce"
    APGD_DLR = "apgd-dlr"
    APGD_T = "apgd-t"
    SQUARE = "square"


_VERSIONS: dict[Version, tuple[EnsembleAttack, ...]] = {
    Version.STANDARD: (EnsembleAttack.APGD_CE, EnsembleAttack.APGD_T, EnsembleAttack.SQUARE),
    Version.RAND: (EnsembleAttack.APGD_CE, EnsembleAttack.APGD_DLR),
}
ONE_STEP = "one-step (check)"
"""Name of the one-step check among the attack summaries."""
FIXED_DRAWS = "apgd-ce fixed draws (check)"
"""Name of the EOT check (APGD-CE on fixed draws) among the attack summaries."""


class DiagnosticCode(StrEnum):
    """What a masking diagnostic checks."""

    GRADIENT_FREE_BEATS_GRADIENT = "gradient_free_beats_gradient"
    """Square fooled examples that every gradient attack before it missed."""
    ONE_STEP_BEATS_ITERATIVE = "one_step_beats_iterative"
    """A single gradient step fooled examples that APGD-CE (many steps) missed."""
    EOT_CHANGES_RESULT = "eot_changes_result"
    """APGD-CE with EOT and on fixed draws disagree (judged at fresh draws)."""
    ACCURACY_NOT_DECREASING = "accuracy_not_decreasing"
    """Robust accuracy rises with ε, stays flat over the grid, or examples fooled at a
    smaller ε survive a larger one."""


@dataclass(frozen=True)
class Diagnostic:
    """One masking check: whether it fired, and what to do about it.

    Attributes:
        code: Which check.
        flagged: Whether it fired (``value > threshold``).
        value: The measured quantity (a fraction of the evaluated examples, or an accuracy
            difference); NaN when the check could not run.
        threshold: The tolerance it is compared with.
        message: A sentence for a human: what was seen and what to do.
    """

    code: DiagnosticCode
    flagged: bool
    value: float
    threshold: float
    message: str


@dataclass(frozen=True)
class AttackSummary:
    """One attack of the ensemble (or a check) and what it achieved.

    Attributes:
        name: ``"apgd-ce"``, ``"apgd-t"``, ``"apgd-dlr"``, ``"square"`` or a check's name.
        seen: Examples it attacked (those still standing when it ran).
        fooled: Of those, the examples it misclassified.
        accuracy: ``(seen - fooled) / seen``: its accuracy over the examples it saw
            (NaN when it saw none).
        cumulative_accuracy: Robust accuracy over the whole batch once it has run.
        seconds: Wall time.
    """

    name: str
    seen: int
    fooled: int
    accuracy: float
    cumulative_accuracy: float
    seconds: float


@dataclass(frozen=True)
class RobustAccuracy:
    """The result of :func:`robust_accuracy`.

    Attributes:
        accuracy: Worst-case robust accuracy: the fraction of the batch classified
            correctly at the clean input and by every attack.
        clean_accuracy: Accuracy at the clean inputs.
        attacks: Per-attack summaries, in the order run (checks last).
        clean_correct: ``(B,)`` bool, correct at the clean input.
        robust: ``(B,)`` bool, correct at the clean input and after every attack.
        success: ``(B,)`` bool, the worst-case success mask: correct at the clean input and
            fooled by some attack (``clean_correct & ~robust``).
        broken_by: ``(B,)`` ``int64``, index into :attr:`attacks` of the attack that fooled
            the example, ``-1`` where none did (or the clean input is misclassified).
        x_adv: ``(B, *)``: the fooling point where there is one, else the clean input.
        diagnostics: The masking checks (:attr:`flagged` lists those that fired).
        eps: ``(B,)`` budgets.
        norm: The threat model.
        version: The ensemble's version.
        settings: Every setting the ensemble ran with.
        seconds: Total wall time.
    """

    accuracy: float
    clean_accuracy: float
    attacks: tuple[AttackSummary, ...]
    clean_correct: Tensor
    robust: Tensor
    success: Tensor
    broken_by: Tensor
    x_adv: Tensor
    diagnostics: tuple[Diagnostic, ...]
    eps: Tensor
    norm: Norm
    version: Version
    settings: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def flagged(self) -> tuple[Diagnostic, ...]:
        """The diagnostics that fired."""
        return tuple(d for d in self.diagnostics if d.flagged)

    @property
    def per_attack(self) -> dict[str, float]:
        """Each attack's accuracy over the examples it saw, by name."""
        return {a.name: a.accuracy for a in self.attacks}

    def summary(self) -> str:
        """A markdown table of the attacks, then the worst case and the flagged diagnostics."""
        lines = [
            "| attack | seen | fooled | accuracy on seen | cumulative | s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for a in self.attacks:
            lines.append(
                f"| {a.name} | {a.seen} | {a.fooled} | {a.accuracy:.4f} | "
                f"{a.cumulative_accuracy:.4f} | {a.seconds:.1f} |"
            )
        lines.append(
            f"\nclean {self.clean_accuracy:.4f}, worst case {self.accuracy:.4f} "
            f"({self.version.value}, {self.norm.value})"
        )
        lines += [f"- FLAG {d.code.value}: {d.message}" for d in self.flagged]
        return "\n".join(lines)


def _fraction(n: int, d: int) -> float:
    return n / d if d else float("nan")


def _diag(code: DiagnosticCode, value: float, threshold: float, fired: str, ok: str) -> Diagnostic:
    flagged = bool(value > threshold) if not math.isnan(value) else False
    return Diagnostic(code, flagged, value, threshold, fired if flagged else ok)


class _Judge:
    """Decides whether each example is classified correctly, at fixed or fresh draws."""

    def __init__(
        self,
        problem: AttackProblem,
        fresh_draws: bool,
        generator: torch.Generator | None,
    ) -> None:
        self.problem = problem
        self.fresh = fresh_draws
        self.generator = generator

    def correct(self, index: Tensor, x: Tensor) -> Tensor:
        """``(n,)`` bool: the prediction at ``x`` (the examples ``index``) equals the label."""
        if index.numel() == 0:
            return torch.zeros(0, dtype=torch.bool, device=x.device)
        if self.fresh:
            self.problem.resample(self.generator)
        sub = self.problem.subset(index)
        with torch.no_grad():
            out = sub.read(x)
        assert isinstance(out, ClassificationOutput)
        return out.prediction() == sub.labels()


def _check_names(attacks: Sequence[str] | None, version: Version) -> tuple[EnsembleAttack, ...]:
    if attacks is None:
        return _VERSIONS[version]
    if isinstance(attacks, str) or not isinstance(attacks, Sequence) or not attacks:
        raise TypeError("attacks must be a non-empty sequence of attack names or None")
    names = tuple(coerce_option(EnsembleAttack, a, "attacks[...]") for a in attacks)
    if len(set(names)) != len(names):
        raise ValueError(f"attacks must not repeat a name; got {list(attacks)}")
    return names


def robust_accuracy(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor,
    eps: Budget,
    norm: Norm | str,
    *,
    version: Version | str = Version.STANDARD,
    attacks: Sequence[EnsembleAttack | str] | None = None,
    steps: int = 100,
    n_targets: int = 9,
    n_queries: int = 5000,
    p_init: float = 0.8,
    eot: int = 20,
    n_restarts: int = 1,
    clamp: Clamp = (0.0, 1.0),
    one_step_check: bool = True,
    eot_check: bool | None = None,
    tolerance: float = 0.01,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> RobustAccuracy:
    """Worst-case robust accuracy over an attack ensemble, with masking diagnostics.

    Croce & Hein (2020): the attacks run in order, each only on the examples still
    classified correctly; an example counts as robust only if no attack fooled it.

    ``version="standard"``: APGD-CE, APGD-T (``n_targets`` targets), Square
    (``n_queries``), all on the predictive's current draws, which also judge the result
    (what a deterministic predictive, or a BNN's PPD with its ``M`` draws fixed, is).
    ``version="rand"``: APGD-CE and APGD-DLR with each gradient averaged over ``eot``
    redraws (``predictive.resample(generator=...)``); every verdict (clean and adversarial)
    is read at fresh draws, as a deployed stochastic predictive would answer, so the
    predictive's draws change.

    Checks (each a :class:`Diagnostic`; ``tolerance`` is a fraction of the examples
    correct at the clean input, or an accuracy difference): Square fooling examples the
    gradient attacks missed; ``one_step_check``: one gradient step (FGSM in L∞, PGD1 in
    L2, on ``nll``) fooling examples APGD-CE missed; ``eot_check`` (default: on for
    ``rand``): APGD-CE on fixed draws against APGD-CE with EOT. Points found by the checks
    are valid adversarial examples and enter the worst case.

    Args:
        predictive: A classifier returning ``(B, C)`` logits or log-probabilities (a BNN's
            posterior predictive, a reactive PPD, a plain ``nn.Module``).
        x: Clean inputs ``(B, *)`` (Square needs images ``(B, C, H, W)``).
        y: True labels ``(B,)``.
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        version: ``"standard"`` or ``"rand"``.
        attacks: Override the version's attacks and their order, names from
            :class:`EnsembleAttack`.
        steps: APGD iterations (per target for APGD-T); AutoAttack: 100.
        n_targets: APGD-T targets; AutoAttack: 9.
        n_queries: Square iterations; AutoAttack: 5000.
        p_init: Square's initial square size; AutoAttack: 0.8.
        eot: Redraws averaged per gradient in the ``rand`` version; AutoAttack: 20.
        n_restarts: APGD restarts.
        clamp: Valid input range or ``None``.
        one_step_check: Run the one-step check.
        eot_check: Run the EOT check (``rand`` only; ``None``: on for ``rand``).
        tolerance: A diagnostic fires when its value exceeds it (default 0.01).
        generator: Random stream for starts, searches and redraws.
        chunk_size: Examples per forward/backward pass.
        progress: Show tqdm bars.

    Returns:
        A :class:`RobustAccuracy`.

    Raises:
        TypeError, ValueError: For a bad budget, norm, version, attack name, label, range,
            a regression predictive, or ``rand``/``eot_check`` on a predictive without
            ``resample``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
        >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
        >>> res = robust_accuracy(net, x, y, 0.1, "linf", steps=5, n_targets=2,
        ...                       n_queries=10, progress=False)
        >>> res.accuracy <= res.clean_accuracy
        True
    """
    t_start = time.perf_counter()
    norm = coerce_option(Norm, norm, "norm")
    version = coerce_option(Version, version, "version")
    names = _check_names(attacks, version)
    check_budget(eps, "eps")
    clamp = check_clamp(clamp)
    check_steps(steps)
    check_steps(n_targets, "n_targets")
    check_steps(n_queries, "n_queries")
    eot = check_eot(eot)
    if version is Version.RAND and eot < 1:
        raise ValueError(f"version='rand' needs eot >= 1 (redraws per gradient), got {eot}")
    if not isinstance(tolerance, int | float) or isinstance(tolerance, bool) or tolerance < 0:
        raise ValueError(f"tolerance must be a float >= 0, got {tolerance!r}")
    if eot_check is None:
        eot_check = version is Version.RAND
    stochastic = version is Version.RAND
    has_resample = callable(getattr(predictive, "resample", None))
    if stochastic and not has_resample:
        raise ValueError(
            "version='rand' needs a stochastic predictive with resample(generator=None) "
            "(e.g. bnn_core.PosteriorPredictive); use version='standard' otherwise"
        )
    if eot_check and not stochastic:
        raise ValueError("eot_check needs version='rand' (the standard version keeps draws fixed)")
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a tensor of labels, got {type(y).__name__}")
    probe = AttackProblem(
        predictive, x, None, eps=0.0, norm=norm, clamp=clamp, specs=(ObjectiveSpec("entropy"),)
    )  # validates x and the predictive; one example's output tells the task, labels aside
    if probe.batch_size:
        with torch.no_grad():
            first = read_output(predictive(probe.x[:1]), 1)
        if not isinstance(first, ClassificationOutput):
            raise ValueError(
                "robust_accuracy needs a classification predictive returning (B, C) class "
                "scores; this one returned (mean, var)"
            )
    problem = AttackProblem(
        predictive,
        x,
        y,
        eps=eps,
        norm=norm,
        clamp=clamp,
        specs=(ObjectiveSpec("nll"),),
        chunk_size=chunk_size,
    )
    b = problem.batch_size
    eps_t = per_example(eps, "eps", problem.x)
    with torch.no_grad():
        if b:
            problem.read(problem.x[:1])  # validates the labels against the class count
    judge = _Judge(problem, stochastic, generator)
    everything = torch.arange(b, device=problem.x.device)
    clean_correct = judge.correct(everything, problem.x)
    robust = clean_correct.clone()
    x_adv = problem.x.clone()
    broken_by = torch.full((b,), -1, dtype=torch.long, device=problem.x.device)
    n_clean = int(clean_correct.sum())
    summaries: list[AttackSummary] = []
    fooled_by: dict[str, Tensor] = {}  # attack name -> (B,) mask of what it fooled
    eot_run = eot if stochastic else 0
    common = dict(eps=eps_t, norm=norm, clamp=clamp, chunk_size=chunk_size, progress=progress)

    def build(name: EnsembleAttack | str, eot_n: int = eot_run) -> Attack:
        if name == EnsembleAttack.SQUARE:
            return Square(n_queries=n_queries, p_init=p_init, **common)  # type: ignore[arg-type]
        if name == EnsembleAttack.APGD_T:
            return APGDT(
                steps=steps, n_targets=n_targets, n_restarts=n_restarts, eot=eot_n, **common
            )  # type: ignore[arg-type]
        loss = "dlr" if name == EnsembleAttack.APGD_DLR else "ce"
        return APGD(steps=steps, loss=loss, n_restarts=n_restarts, eot=eot_n, **common)  # type: ignore[arg-type]

    def run(name: str, attack: Attack, index: Tensor, *, merge: bool) -> Tensor:
        """Attack the examples ``index``; return the ``(B,)`` mask of those it fooled."""
        t0 = time.perf_counter()
        fooled = torch.zeros(b, dtype=torch.bool, device=problem.x.device)
        if index.numel():
            sub_eps = eps_t.index_select(0, index)
            attack.eps = sub_eps
            xs = attack(predictive, problem.x[index], problem.labels()[index], generator=generator)
            ok = ~judge.correct(index, xs)
            fooled[index[ok]] = True
            if merge:
                new = fooled & robust
                x_adv[new] = xs[ok & robust[index]]
                broken_by[new] = len(summaries)
                robust.logical_and_(~fooled)
        n_f = int(fooled.sum())
        summaries.append(
            AttackSummary(
                name=name,
                seen=int(index.numel()),
                fooled=n_f,
                accuracy=_fraction(int(index.numel()) - n_f, int(index.numel())),
                cumulative_accuracy=_fraction(int(robust.sum()), b),
                seconds=time.perf_counter() - t0,
            )
        )
        fooled_by[name] = fooled
        return fooled

    clean_index = clean_correct.nonzero().squeeze(1)
    bar = progress_bar(len(names), f"AA {version.value} {norm.value}", progress, unit="attack")
    try:
        for name in names:
            run(name.value, build(name), robust.nonzero().squeeze(1), merge=True)
            bar.update(1)
            bar.set_postfix_str(f"robust {int(robust.sum())}/{b}")
    finally:
        bar.close()

    diagnostics: list[Diagnostic] = []
    gradient_names = [n.value for n in names if n is not EnsembleAttack.SQUARE]
    # (a) a gradient-free attack beating the gradient attacks that ran before it
    if EnsembleAttack.SQUARE in names and gradient_names:
        k = int(fooled_by[EnsembleAttack.SQUARE.value].sum())
        value = _fraction(k, n_clean)
        diagnostics.append(
            _diag(
                DiagnosticCode.GRADIENT_FREE_BEATS_GRADIENT,
                value,
                tolerance,
                f"Square (gradient-free) fooled {k} of {n_clean} examples that "
                f"{', '.join(gradient_names)} missed: the gradients are likely masked or "
                "obfuscated (e.g. a non-differentiable or saturating layer); trust the "
                "worst case, not a gradient attack alone, and inspect those examples "
                "(broken_by).",
                f"Square fooled {k} of {n_clean} examples the gradient attacks missed.",
            )
        )
    else:
        diagnostics.append(
            Diagnostic(
                DiagnosticCode.GRADIENT_FREE_BEATS_GRADIENT,
                False,
                float("nan"),
                tolerance,
                "not run: the ensemble holds no Square attack after a gradient attack.",
            )
        )
    # (c) one step beating many: on every example correct at the clean input
    first_gradient = EnsembleAttack.APGD_CE.value
    if one_step_check:
        os_attack = OneStep(
            eps=eps_t, norm=norm, clamp=clamp, eot=stochastic, chunk_size=chunk_size
        )
        os_fooled = run(ONE_STEP, os_attack, clean_index, merge=True)
        if first_gradient in fooled_by:
            k = int((os_fooled & ~fooled_by[first_gradient]).sum())
            value = _fraction(k, n_clean)
            diagnostics.append(
                _diag(
                    DiagnosticCode.ONE_STEP_BEATS_ITERATIVE,
                    value,
                    tolerance,
                    f"one gradient step fooled {k} of {n_clean} examples that APGD-CE "
                    f"({steps} steps) missed: the loss surface is likely masked or "
                    "shattered near the data (iterative attacks get stuck); use the worst "
                    "case and check with Square or more restarts.",
                    f"one gradient step fooled {k} of {n_clean} examples APGD-CE missed.",
                )
            )
    # (d) EOT changing the result
    if eot_check:
        fixed = build(EnsembleAttack.APGD_CE, eot_n=0)
        fx = run(FIXED_DRAWS, fixed, clean_index, merge=True)
        if first_gradient in fooled_by:
            acc_fixed = _fraction(n_clean - int(fx.sum()), n_clean)
            acc_eot = _fraction(n_clean - int(fooled_by[first_gradient].sum()), n_clean)
            diff = acc_fixed - acc_eot
            msg = (
                f"on the {n_clean} clean-correct examples APGD-CE leaves accuracy "
                f"{acc_fixed:.3f} with the predictive's draws fixed and {acc_eot:.3f} with "
                f"EOT ({eot} redraws per step), both judged at fresh draws: "
            )
            if diff > 0:
                msg += "attacks on fixed draws overstate robustness; report the 'rand' version."
            else:
                msg += (
                    "EOT is weaker than fixed draws here; raise eot or check the predictive's "
                    "randomness (resample)."
                )
            diagnostics.append(
                _diag(DiagnosticCode.EOT_CHANGES_RESULT, abs(diff), tolerance, msg, msg)
            )
    settings: dict[str, object] = {
        "version": version.value,
        "attacks": [n.value for n in names],
        "norm": norm.value,
        "steps": steps,
        "n_targets": n_targets,
        "n_queries": n_queries,
        "p_init": p_init,
        "eot": eot_run,
        "n_restarts": n_restarts,
        "clamp": clamp,
        "one_step_check": one_step_check,
        "eot_check": bool(eot_check),
        "tolerance": tolerance,
    }
    return RobustAccuracy(
        accuracy=_fraction(int(robust.sum()), b),
        clean_accuracy=_fraction(n_clean, b),
        attacks=tuple(summaries),
        clean_correct=clean_correct,
        robust=robust,
        success=clean_correct & ~robust,
        broken_by=broken_by,
        x_adv=x_adv,
        diagnostics=tuple(diagnostics),
        eps=eps_t,
        norm=norm,
        version=version,
        settings=settings,
        seconds=time.perf_counter() - t_start,
    )


@dataclass(frozen=True)
class RobustAccuracyCurve:
    """The result of :func:`robust_accuracy_curve`.

    Attributes:
        eps: The budgets, increasing.
        results: One :class:`RobustAccuracy` per budget.
        diagnostics: The ε check (:attr:`DiagnosticCode.ACCURACY_NOT_DECREASING`).
    """

    eps: tuple[float, ...]
    results: tuple[RobustAccuracy, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def accuracy(self) -> tuple[float, ...]:
        """Worst-case robust accuracy per budget."""
        return tuple(r.accuracy for r in self.results)

    @property
    def flagged(self) -> tuple[Diagnostic, ...]:
        """Every diagnostic that fired, at any budget or across them."""
        per_eps = tuple(d for r in self.results for d in r.flagged)
        return per_eps + tuple(d for d in self.diagnostics if d.flagged)


def robust_accuracy_curve(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor,
    eps: Sequence[float],
    norm: Norm | str,
    *,
    tolerance: float = 0.01,
    **kwargs: object,
) -> RobustAccuracyCurve:
    """:func:`robust_accuracy` at increasing budgets, and the check that accuracy falls.

    Balls grow with ε, so a point that fools the predictive at ``ε_k`` is a valid attack at
    every ``ε_{k+1} > ε_k``: accuracy can only fall, and an example fooled at a smaller ε
    must be fooled at a larger one. The check fires when accuracy rises between
    consecutive budgets by more than ``tolerance``, when it does not fall at all over the
    grid while above ``tolerance``, or when more than a ``tolerance`` fraction of the
    examples survive a larger ε after being fooled at a smaller one; all three point to an
    attack that fails for reasons other than robustness (masking, too few steps).

    Args:
        predictive: As :func:`robust_accuracy`.
        x: Clean inputs ``(B, *)``.
        y: True labels ``(B,)``.
        eps: At least two increasing budgets (floats).
        norm: ``"l2"`` or ``"linf"``.
        tolerance: As :func:`robust_accuracy`.
        **kwargs: Passed to :func:`robust_accuracy` (``version``, ``steps``, ...).

    Returns:
        A :class:`RobustAccuracyCurve`.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
        >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
        >>> curve = robust_accuracy_curve(net, x, y, [0.05, 0.5], "linf", steps=5,
        ...                               n_targets=2, n_queries=10, progress=False)
        >>> len(curve.results)
        2
    """
    if isinstance(eps, Tensor | str) or not isinstance(eps, Sequence) or len(eps) < 2:
        raise TypeError("eps must be a sequence of at least two floats (increasing budgets)")
    for e in eps:
        check_budget(e, "eps[...]")
        if isinstance(e, Tensor):
            raise TypeError("eps must hold floats (one budget per point of the curve)")
    if any(b <= a for a, b in zip(eps, eps[1:], strict=False)):
        raise ValueError(f"eps must be strictly increasing; got {list(eps)}")
    results = tuple(
        robust_accuracy(predictive, x, y, float(e), norm, tolerance=tolerance, **kwargs)  # type: ignore[arg-type]
        for e in eps
    )
    acc = [r.accuracy for r in results]
    rises = [
        (eps[k], eps[k + 1], acc[k], acc[k + 1])
        for k in range(len(acc) - 1)
        if acc[k + 1] > acc[k] + tolerance
    ]
    flat = acc[-1] > tolerance and acc[-1] >= acc[0] - tolerance
    n = max(int(results[0].clean_correct.sum()), 1)
    survivors = 0
    for k in range(len(results) - 1):
        survivors += int((results[k].success & results[k + 1].robust).sum())
    frac = survivors / n
    problems = []
    if rises:
        problems.append(
            "accuracy rises with ε ("
            + "; ".join(f"ε {a:g}→{b:g}: {p:.3f}→{q:.3f}" for a, b, p, q in rises)
            + ")"
        )
    if flat:
        problems.append(
            f"accuracy does not fall over ε {eps[0]:g}…{eps[-1]:g} ({acc[0]:.3f}→{acc[-1]:.3f})"
        )
    if frac > tolerance:
        problems.append(
            f"{survivors} example(s) fooled at a smaller ε survive a larger one ({frac:.3f} of "
            "the clean-correct examples)"
        )
    value = max(
        max((q - p for _, _, p, q in rises), default=0.0),
        frac,
        1.0 if flat else 0.0,
    )
    fired = bool(problems)
    message = (
        "; ".join(problems)
        + ": the attacks fail for reasons other than robustness (masked gradients, too few "
        "steps or queries); raise the budgets of the attacks and read the worst case."
        if fired
        else f"accuracy falls with ε ({', '.join(f'{a:.3f}' for a in acc)})."
    )
    diag = Diagnostic(DiagnosticCode.ACCURACY_NOT_DECREASING, fired, value, tolerance, message)
    return RobustAccuracyCurve(tuple(float(e) for e in eps), results, (diag,))
