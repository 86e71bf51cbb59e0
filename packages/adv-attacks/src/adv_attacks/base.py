"""The attack base class and the machinery every attack shares.

An attack subclasses :class:`Attack` and implements one method, ``_perturb(problem,
generator) -> x_adv``, with the helpers of :class:`AttackProblem` (a validated batch and
its predictive): ``gradient``, ``start``, ``step``, ``resample``. The base class validates
the input, resolves missing labels, freezes the model's parameters, and builds the optional
per-example report (:class:`AttackResult`). It never modifies the caller's tensors, the
model's parameters, their ``requires_grad`` flags or ``.grad``, the model's ``training``
flag, nor the running statistics of its batch-norm layers (restored after an attack on a
model in training mode), and it takes the device from the input.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Literal, overload

import torch
from torch import Tensor, nn

from adv_attacks._options import coerce_option
from adv_attacks.frozen import frozen_parameters
from adv_attacks.norms import Norm, ascend, project, random_in_ball
from adv_attacks.objectives import ObjectiveSpec, attack_success
from adv_attacks.predictive import (
    ClassificationOutput,
    PredictiveOutput,
    RegressionOutput,
    cat_outputs,
    read_output,
)

__all__ = ["Attack", "AttackProblem", "AttackResult", "Budget", "Clamp"]

Budget = float | Tensor
"""A budget ``ε``: one float for the whole batch, or a ``(B,)`` tensor (one per example)."""
Clamp = tuple[float, float] | None
"""The valid input range ``(low, high)``, or ``None`` for unbounded inputs."""


@dataclass(frozen=True)
class AttackResult:
    """An adversarial batch with a per-example report.

    Attributes:
        x_adv: The adversarial batch, same shape, dtype and device as the input.
        objective: The attack's objective ``J(x_adv, y)`` (as ascended: targeted and
            entropy signs applied; for PGD+ the entropy phase's), shape ``(B,)``.
        success: Classification: whether the prediction at ``x_adv`` differs from the label
            (untargeted; the clean prediction when no label was given) or equals the target
            (targeted), ``(B,)`` bool. ``None`` for regression and for an empty batch.
    """

    x_adv: Tensor
    objective: Tensor
    success: Tensor | None


def check_steps(steps: object, name: str = "steps") -> int:
    """Return ``steps`` if it is an ``int >= 1``; raise ``TypeError``/``ValueError`` otherwise."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"{name} must be an int, got {type(steps).__name__}")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1, got {steps}")
    return steps


def check_clamp(clamp: object) -> tuple[float, float] | None:
    """Validate a valid-input range: ``None`` (unbounded) or a pair ``(low, high)``.

    Args:
        clamp: ``None``, or two real numbers (not NaN; ``±inf`` allowed) with ``low < high``.

    Returns:
        ``None`` or ``(float(low), float(high))``.

    Raises:
        TypeError: Not a pair of numbers.
        ValueError: ``low >= high``.

    Examples:
        >>> check_clamp((0, 1))
        (0.0, 1.0)
    """
    if clamp is None:
        return None
    if not isinstance(clamp, tuple | list) or len(clamp) != 2:
        raise TypeError(f"clamp must be a (low, high) pair or None, got {clamp!r}")
    lo, hi = clamp
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
            raise TypeError(f"clamp must hold two numbers, got {clamp!r}")
    if not lo < hi:
        raise ValueError(f"clamp must satisfy low < high, got {clamp!r}")
    return float(lo), float(hi)


def check_budget(value: object, name: str) -> None:
    """Check a budget-like option (``eps``, ``step_size``) before the batch is known.

    Floats must be finite and ``>= 0``; tensors must be real (their shape and values are
    checked against the batch by :func:`per_example`).
    """
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float or a (B,) tensor, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")


def per_example(value: Budget, name: str, x: Tensor) -> Tensor:
    """A budget-like option as a ``(B,)`` tensor on ``x``'s device and dtype.

    Args:
        value: A float, a 0-d tensor or a ``(B,)`` tensor; finite and ``>= 0``. A tensor
            may live on any device: it is moved to ``x``'s.
        name: The argument's name, for error messages.
        x: The batch ``(B, *)``.

    Raises:
        TypeError, ValueError: For anything else.
    """
    check_budget(value, name)
    b = x.shape[0]
    if isinstance(value, Tensor):
        if value.ndim == 0:
            value = value.expand(b)
        if value.shape != (b,):
            raise ValueError(
                f"{name} must be a float or a tensor of shape ({b},) (one per example); "
                f"got shape {tuple(value.shape)}"
            )
        t = value.detach().to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"{name} must be finite and >= 0 for every example")
        return t
    return torch.full((b,), float(value), device=x.device, dtype=x.dtype)


CPU_CHUNK_ELEMENTS = 1 << 17
"""CPU chunking target: about this many input elements per chunk (``bench/perf.py``)."""
MIN_CHUNK = 32
"""Automatic CPU chunks are never capped below this many examples (per-chunk overhead)."""


def _check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int or None, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size


def _chunks(x: Tensor, chunk_size: int | None, forward_passes: int = 1) -> list[slice]:
    """Split a batch into nearly equal consecutive chunks of at most ``chunk_size`` examples.

    ``None`` (auto): the whole batch on accelerators; on the CPU chunks of about
    ``CPU_CHUNK_ELEMENTS / √forward_passes`` input elements (at least ``MIN_CHUNK``
    examples), where keeping each chunk's activations in cache beats one large batch
    (``bench/perf.py``; measured for deterministic CNNs and for Bayesian ones evaluated draw
    by draw). A predictive that runs its network ``forward_passes`` times per call (a
    posterior predictive over ``M`` draws) keeps that many sets of activations alive; the
    square root is what measured best on the MNIST CNN (M = 10: chunks of 52 instead of 128
    made a PGD step 20-30% faster, M = 5: 64 instead of 128, 15-25%).
    """
    b = x.shape[0]
    if chunk_size is None:
        if x.device.type != "cpu" or b == 0:
            return [slice(0, b)]
        per_example = max(1, x[0].numel()) * math.sqrt(forward_passes)
        chunk_size = max(MIN_CHUNK, int(CPU_CHUNK_ELEMENTS / per_example))
    n = max(1, -(-b // chunk_size))
    bounds = [round(i * b / n) for i in range(n + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(n)]


def _forward_passes(predictive: object) -> int:
    """The predictive's optional ``forward_passes`` (network passes per call; default 1)."""
    passes = getattr(predictive, "forward_passes", 1)
    if isinstance(passes, bool) or not isinstance(passes, int):
        raise TypeError(
            f"predictive.forward_passes must be an int >= 1; got {type(passes).__name__} {passes!r}"
        )
    if passes < 1:
        raise ValueError(f"predictive.forward_passes must be >= 1; got {passes}")
    return passes


def _detach(out: PredictiveOutput) -> PredictiveOutput:
    if isinstance(out, ClassificationOutput):
        return ClassificationOutput(out.log_probs.detach())
    return RegressionOutput(out.mean.detach(), out.var.detach())


def _check_predictive(predictive: object, x: Tensor) -> None:
    if not callable(predictive):
        raise TypeError(f"predictive must be callable, got {type(predictive).__name__}")
    if not isinstance(predictive, nn.Module):
        return
    t = next(chain(predictive.parameters(), predictive.buffers()), None)
    if t is None:
        return
    if t.device != x.device:
        raise ValueError(
            f"predictive has tensors on {t.device} but x is on {x.device}; "
            "move the model or the batch so that they share a device"
        )
    # The compute dtype is the parameters'. Without parameters, buffers may store data in
    # other dtypes than they compute in (a reactive PPD's bfloat16 key offsets next to its
    # float32 inputs): then x must match one of them.
    param = next((p for p in predictive.parameters() if p.is_floating_point()), None)
    if param is not None:
        if param.dtype != x.dtype:
            raise TypeError(
                f"predictive has {param.dtype} parameters but x is {x.dtype}; cast one of them"
            )
        return
    dtypes = {b.dtype for b in predictive.buffers() if b.is_floating_point()}
    if dtypes and x.dtype not in dtypes:
        have = ", ".join(sorted(str(d) for d in dtypes))
        raise TypeError(f"predictive has {have} tensors but x is {x.dtype}; cast one of them")


def _check_x(x: object, clamp: tuple[float, float] | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError("x must be a batch of shape (B, *), got a 0-d tensor")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    check_in_range(x, clamp)
    return x


def check_in_range(x: Tensor, clamp: tuple[float, float] | None, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` has values outside the valid range ``clamp``.

    Attacks (and channels) clamp their points into the range *after* projecting them onto
    the ε-ball, so from an input outside the range the result would leave the ball: such
    inputs are refused rather than silently moved.

    Args:
        x: Any tensor.
        clamp: ``(low, high)`` (see :func:`check_clamp`), or ``None`` for no check.
        name: The argument's name in the message.

    Examples:
        >>> check_in_range(torch.tensor([0.0, 1.0]), (0.0, 1.0))  # fine: no error
    """
    if clamp is None or not x.numel():
        return
    lo, hi = clamp
    xd = x.detach()
    if bool(xd.min() < lo) or bool(xd.max() > hi):
        raise ValueError(
            f"{name} has values outside clamp={clamp} (min {float(xd.min()):.4g}, max "
            f"{float(xd.max()):.4g}); pass clamp=None or the valid range of your inputs"
        )


class AttackProblem:
    """A validated batch, its labels and its predictive: the state of one attack call.

    Built by :meth:`Attack.__call__`; subclasses of :class:`Attack` use its methods.

    Attributes:
        predictive: The callable under attack (see :mod:`adv_attacks.predictive`).
        x: The clean batch ``(B, *)`` (detached; never modified).
        eps: Budgets, shape ``(B,)``.
        norm: The threat model.
        clamp: The valid input range, or ``None``.
        targeted: Whether ``y`` holds targets.
    """

    def __init__(
        self,
        predictive: Callable[[Tensor], object],
        x: Tensor,
        y: Tensor | None,
        *,
        eps: Budget,
        norm: Norm,
        clamp: tuple[float, float] | None,
        specs: Sequence[ObjectiveSpec],
        targeted: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        _check_x(x, clamp)
        _check_predictive(predictive, x)
        if y is not None:
            if not isinstance(y, Tensor):
                raise TypeError(f"y must be a tensor or None, got {type(y).__name__}")
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y must hold one label per example, shape ({x.shape[0]},); "
                    f"got {tuple(y.shape)}"
                )
            if y.device != x.device:
                raise ValueError(f"y is on {y.device} but x is on {x.device}")
        if targeted and y is None:
            raise ValueError("a targeted attack needs the targets: pass y")
        self.predictive = predictive
        self.x = x.detach()
        self.eps = per_example(eps, "eps", x)
        self.norm = norm
        self.clamp = clamp
        self.targeted = targeted
        self._specs = tuple(specs)
        self._y_raw = y
        self._y: Tensor | None = None
        self._checked = False
        self._chunk_size = chunk_size
        self.chunks = _chunks(x, chunk_size, _forward_passes(predictive))

    @property
    def batch_size(self) -> int:
        """Number of examples ``B``."""
        return self.x.shape[0]

    def subset(self, index: Tensor) -> AttackProblem:
        """The same problem restricted to the examples ``index`` (1-D ``int64``), in order.

        Labels are carried over: validated ones as they are, given but not yet validated
        ones to be validated at the subset's first forward pass (no extra pass), missing
        ones resolved first from the clean prediction. Attacks that work on the examples
        still standing (APGD's restarts, APGD-T's targets, Square's queries) use it.
        """
        index = index.to(self.x.device)
        if self._y is None and self._y_raw is None:
            self.labels()
        sub = object.__new__(AttackProblem)
        sub.predictive = self.predictive
        sub.x = self.x.index_select(0, index)
        sub.eps = self.eps.index_select(0, index)
        sub.norm = self.norm
        sub.clamp = self.clamp
        sub.targeted = self.targeted
        sub._specs = self._specs
        if self._y is not None:
            sub._y_raw = sub._y = self._y.index_select(0, index.to(self._y.device))
            sub._checked = True
        else:
            assert self._y_raw is not None
            sub._y_raw = self._y_raw.index_select(0, index.to(self._y_raw.device))
            sub._y = None
            sub._checked = False
        sub._chunk_size = self._chunk_size
        sub.chunks = _chunks(sub.x, self._chunk_size, _forward_passes(self.predictive))
        return sub

    # -- reading the predictive ---------------------------------------------------------

    def read(self, x: Tensor) -> PredictiveOutput:
        """The predictive's output on a full batch ``x`` (read chunk by chunk, concatenated)."""
        return cat_outputs([self._forward(x[c]) for c in self.chunks])

    def _forward(self, x: Tensor) -> PredictiveOutput:
        """Call the predictive on (a chunk of) the batch; validate its first output."""
        out = read_output(self.predictive(x), x.shape[0])
        if not self._checked:
            self._check_first_output(out)
        return out

    def _check_first_output(self, out: PredictiveOutput) -> None:
        for spec in self._specs:
            spec.check_task(out)
        if isinstance(out, RegressionOutput):
            var = out.var.detach()
            if not bool(torch.isfinite(var).all()) or bool((var <= 0).any()):
                raise ValueError("predictive output: var must be finite and > 0")
        if self._y_raw is not None:
            self._y = self._check_labels(self._y_raw, out)
        self._checked = True

    def _check_labels(self, y: Tensor, out: PredictiveOutput) -> Tensor:
        b = self.batch_size
        if isinstance(out, ClassificationOutput):
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise TypeError(f"y must hold integer class indices, got dtype {y.dtype}")
            if y.shape != (b,):
                raise ValueError(f"y must have shape ({b},), got {tuple(y.shape)}")
            c = out.num_classes
            if bool((y < 0).any()) or bool((y >= c).any()):
                raise ValueError(f"y must hold class indices in [0, {c}), got values outside")
            return y.long()
        if not y.is_floating_point():
            raise TypeError(f"y must hold real regression targets, got dtype {y.dtype}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.squeeze(1)
        if y.shape != (b,):
            raise ValueError(f"y must have shape ({b},) or ({b}, 1), got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y contains NaN or infinite values")
        return y.to(out.mean.dtype)

    def labels(self) -> Tensor:
        """The labels (or targets): those given, else the prediction at the clean input.

        Returns:
            ``(B,)`` class indices, or regression targets (the clean predictive mean).
        """
        if self._y is None:
            with torch.no_grad():
                out = self.read(self.x)  # also validates given labels on a first read
            if self._y is None:
                self._y = out.prediction()
        return self._y

    def resample(self, generator: torch.Generator | None) -> None:
        """Draw fresh posterior samples (expectation over transformation)."""
        self.predictive.resample(generator=generator)  # type: ignore[attr-defined]

    # -- gradients and steps ------------------------------------------------------------

    def gradient(
        self, x_adv: Tensor, spec: ObjectiveSpec, *, at_clean: bool = False
    ) -> tuple[Tensor, PredictiveOutput]:
        """Gradient of ``Σ_b J(x_adv_b, y_b)`` with respect to ``x_adv``.

        Args:
            x_adv: Where to differentiate, ``(B, *)``.
            spec: The objective.
            at_clean: ``x_adv`` is the clean batch: missing labels are taken from this very
                forward pass instead of an extra one.

        Returns:
            The gradient (``x_adv``'s shape; examples are independent, so row ``b`` is
            ``∇ J(x_adv_b)``) and the predictive's output at ``x_adv`` (detached).

        On the CPU the batch is processed in chunks (see :attr:`Attack.chunk_size`), each
        with its own forward and backward pass, so that activations stay in cache.
        """
        grads: list[Tensor] = []
        outs: list[PredictiveOutput] = []
        clean_labels: list[Tensor] = []
        for c in self.chunks:
            xr = x_adv[c].detach().requires_grad_(True)
            out = self._forward(xr)
            spec_c = spec.chunk(c)  # the objective(s) of this chunk's examples
            y = None
            if spec.needs_labels:
                if self._y is None and at_clean:
                    y = out.prediction()  # labels from this very pass: no extra forward
                    clean_labels.append(y)
                else:
                    y = self.labels()[c]
            total = spec_c.total(out, y)
            if not total.requires_grad:
                raise ValueError(
                    "the predictive's output does not depend differentiably on x (was it "
                    "computed under torch.no_grad() or detached?)"
                )
            (g,) = torch.autograd.grad(total, xr, allow_unused=True)
            grads.append(torch.zeros_like(xr) if g is None else g)
            outs.append(_detach(out))
        if clean_labels:
            self._y = torch.cat(clean_labels)
        g = grads[0] if len(grads) == 1 else torch.cat(grads)
        return g, cat_outputs(outs)

    def clip(self, x_adv: Tensor) -> Tensor:
        """Clamp to the valid range in place (if there is one) and return ``x_adv``."""
        if self.clamp is not None:
            x_adv.clamp_(*self.clamp)
        return x_adv

    def start(self, random_start: bool, generator: torch.Generator | None) -> Tensor:
        """The first iterate: ``x``, or ``clip(x + δ)`` with ``δ`` uniform in the ball."""
        if not random_start:
            return self.x.clone()
        delta = random_in_ball(self.x, self.eps, self.norm, generator=generator)
        return self.clip(delta.add_(self.x))

    def step(self, x_adv: Tensor, g: Tensor, step_size: Tensor) -> Tensor:
        """One projected step ``clip(Π_ε(x_adv + η d))``, ``d`` the unit ascent direction.

        Args:
            x_adv: The current iterate ``(B, *)``; reused as the output buffer.
            g: The gradient there.
            step_size: ``η`` per example, ``(B,)`` (0 freezes an example).

        Returns:
            The next iterate (a new value of ``x_adv``'s buffer).
        """
        with torch.no_grad():
            x_adv = x_adv.detach()
            ascend(x_adv, g, step_size, self.norm)
            delta = project(x_adv.sub_(self.x), self.eps, self.norm)
            return self.clip(delta.add_(self.x))


class Attack(ABC):
    """Base class of the attacks: configuration, validation and the shared call protocol.

    Subclasses set the objectives they use (:attr:`specs`; the last one is reported in
    :class:`AttackResult`) and implement :meth:`_perturb`.

    Args:
        eps: Budget ``ε >= 0`` (input units: ``‖x' - x‖ ≤ ε``), a float or a ``(B,)``
            tensor for per-example budgets.
        norm: ``"l2"`` or ``"linf"``.
        clamp: Valid input range (images: ``(0.0, 1.0)``, the default), or ``None``.
        eot: Expectation over transformation: call ``predictive.resample(generator=...)``
            before every gradient step, so that each step sees fresh posterior draws;
            otherwise the predictive's draws stay fixed for the whole attack.
        chunk_size: Examples per forward/backward pass. ``None`` (default): the whole
            batch on accelerators; on the CPU cache-sized chunks of about 2¹⁷ input
            elements (divided by √P for a predictive with ``forward_passes = P``, e.g. a
            posterior predictive over P draws) and at least 32 examples (faster there,
            see ``bench/perf.py``). The result does not depend on it as long as the
            predictive treats examples independently (no batch norm in training mode).
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        clamp: Clamp = (0.0, 1.0),
        eot: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        check_budget(eps, "eps")
        self.eps = eps
        self.norm = coerce_option(Norm, norm, "norm")
        self.clamp = check_clamp(clamp)
        self.eot = bool(eot)
        self.chunk_size = _check_chunk_size(chunk_size)

    @property
    @abstractmethod
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The objectives the attack ascends, in order (the last is the one reported)."""

    @property
    def targeted(self) -> bool:
        """Whether ``y`` holds targets rather than labels."""
        return any(s.targeted for s in self.specs)

    @abstractmethod
    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        """Compute the adversarial batch ``(B, *)`` for a validated, non-empty problem."""

    @overload
    def __call__(
        self,
        predictive: Callable[[Tensor], object],
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        return_info: Literal[False] = False,
    ) -> Tensor: ...

    @overload
    def __call__(
        self,
        predictive: Callable[[Tensor], object],
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        return_info: Literal[True],
    ) -> AttackResult: ...

    def __call__(
        self,
        predictive: Callable[[Tensor], object],
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        return_info: bool = False,
    ) -> Tensor | AttackResult:
        """Attack ``predictive`` at the batch ``x``.

        Args:
            predictive: A classifier returning ``(B, C)`` logits or log-probabilities, or a
                Gaussian regressor returning ``(mean, var)``; for a BNN its posterior
                predictive (docs/architecture.md, "The predictive protocol").
            x: Clean inputs ``(B, *)``; never modified.
            y: Labels ``(B,)`` (class indices or regression targets), targets for a
                targeted attack, or ``None``: the prediction at the clean input.
            generator: Random stream for the random start and for ``resample`` (``eot``).
            return_info: Also return per-example objective values and success masks.

        Returns:
            The adversarial batch (``x``'s shape, dtype and device), or an
            :class:`AttackResult` when ``return_info``.
        """
        if self.eot and not callable(getattr(predictive, "resample", None)):
            raise ValueError("eot=True needs a predictive with a resample(generator=None) method")
        # Tensors made under the caller's inference_mode: autograd can use neither them nor
        # labels that a loss would save for backward; plain copies it can.
        with torch.inference_mode(False):
            if isinstance(x, Tensor) and x.is_inference():
                x = x.clone()
            if isinstance(y, Tensor) and y.is_inference():
                y = y.clone()
        problem = AttackProblem(
            predictive,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            clamp=self.clamp,
            specs=self.specs,
            targeted=self.targeted,
            chunk_size=self.chunk_size,
        )
        if problem.batch_size == 0:
            x_adv = x.detach().clone()
            if not return_info:
                return x_adv
            return AttackResult(x_adv, x.new_zeros(0), None)
        with _attack_mode(predictive):
            x_adv = self._perturb(problem, generator).detach()
            if not return_info:
                return x_adv
            return self._report(problem, x_adv)

    def _report(self, problem: AttackProblem, x_adv: Tensor) -> AttackResult:
        spec = self.specs[-1]
        with torch.no_grad():
            out = problem.read(x_adv)
            success = None
            if isinstance(out, ClassificationOutput):
                success = attack_success(out, problem.labels(), targeted=self.targeted)
            y = problem.labels() if spec.needs_labels else None
            objective = spec.values(out, y)
        return AttackResult(x_adv, objective, success)


@contextmanager
def _attack_mode(predictive: object) -> Iterator[None]:
    """Autograd on, parameters frozen, batch-norm running statistics restored on exit.

    Autograd is on also inside a caller's ``no_grad``/``inference_mode``.
    """
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        frozen_parameters(predictive),
        _kept_running_stats(predictive),
    ):
        yield


@contextmanager
def _kept_running_stats(predictive: object) -> Iterator[None]:
    """Restore the running statistics of batch-norm layers in training mode on exit.

    A model attacked in training mode normalises with batch statistics (that is the model
    being attacked), but each forward pass would also move its running mean/variance towards
    the attack's iterates: those are put back, so the attack leaves the model as it found it.
    """
    if not isinstance(predictive, nn.Module):
        yield
        return
    saved = [
        (m, {k: b.clone() for k, b in m._buffers.items() if b is not None})
        for m in predictive.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.training and m.track_running_stats
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in saved:
                for k, b in buffers.items():
                    m._buffers[k].copy_(b)
