"""Several objectives in one batch: each example ascends its own (one forward/backward).

A stratified mixture of one-step channels (the paper's MIX: ``nll``, ``cw`` and ``entropy``
components at one posterior draw) needs three one-step attacks on three small sub-batches.
Since examples are independent, the gradient of ``Σ_b J_{k(b)}(x_b)`` with respect to
``x_b`` is ``∇ J_{k(b)}(x_b)``: one pass over the union gives every example its own
component's step. :class:`RoutedOneStep` is that attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from adv_attacks.base import Attack, AttackProblem, Budget, Clamp
from adv_attacks.norms import Norm
from adv_attacks.objectives import ObjectiveSpec
from adv_attacks.predictive import PredictiveOutput

__all__ = ["RoutedObjective", "RoutedOneStep"]


@dataclass(frozen=True)
class RoutedObjective:
    """Example ``b`` of a batch ascends ``specs[route[b]]``.

    Used where an :class:`~adv_attacks.ObjectiveSpec` is (``total``, ``values``,
    ``check_task``, ``needs_labels``, ``targeted``); :meth:`chunk` restricts it to a slice of
    the batch (the attacks' CPU chunks).

    Attributes:
        specs: The objectives, ``K >= 1`` of them, all untargeted or all targeted.
        route: ``(B,)`` ``int64`` indices into ``specs``.
    """

    specs: tuple[ObjectiveSpec, ...]
    route: Tensor

    def __post_init__(self) -> None:
        specs = tuple(self.specs)
        if not specs or not all(isinstance(s, ObjectiveSpec) for s in specs):
            raise TypeError("specs must be a non-empty sequence of ObjectiveSpec")
        if len({s.targeted for s in specs}) > 1:
            raise ValueError("specs must be all targeted or all untargeted")
        route = self.route
        if not isinstance(route, Tensor) or route.ndim != 1 or route.dtype != torch.long:
            raise TypeError("route must be a 1-D int64 tensor (one index per example)")
        if route.numel() and (bool((route < 0).any()) or bool((route >= len(specs)).any())):
            raise ValueError(f"route must hold indices in [0, {len(specs)})")
        object.__setattr__(self, "specs", specs)

    @property
    def needs_labels(self) -> bool:
        """Whether any objective reads ``y``."""
        return any(s.needs_labels for s in self.specs)

    @property
    def targeted(self) -> bool:
        """Whether ``y`` holds targets."""
        return self.specs[0].targeted

    def check_task(self, output: PredictiveOutput) -> None:
        """Every objective must be defined for this kind of predictive."""
        for spec in self.specs:
            spec.check_task(output)

    def chunk(self, part: slice) -> RoutedObjective:
        """The same routing restricted to the examples ``part`` of the batch."""
        return RoutedObjective(self.specs, self.route[part])

    def _groups(self, output: PredictiveOutput) -> list[tuple[ObjectiveSpec, Tensor]]:
        """``(objective, indices of its examples)`` for each objective that has examples."""
        if output.batch_size != self.route.shape[0]:
            raise ValueError(
                f"route has {self.route.shape[0]} entries for a batch of {output.batch_size}"
            )
        groups = []
        for k, spec in enumerate(self.specs):
            index = (self.route == k).nonzero().squeeze(1)
            if index.numel():
                groups.append((spec, index))
        return groups

    def total(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """``Σ_b J_{route[b]}(b)``: each objective's total over its own examples."""
        totals = [
            spec.total(output.select(index), _labels(spec, y, index))
            for spec, index in self._groups(output)
        ]
        return torch.stack(totals).sum()

    def values(self, output: PredictiveOutput, y: Tensor | None) -> Tensor:
        """Per-example values ``J_{route[b]}(b)``, shape ``(B,)``."""
        groups = self._groups(output)
        values = torch.cat(
            [spec.values(output.select(index), _labels(spec, y, index)) for spec, index in groups]
        )
        order = torch.cat([index for _, index in groups]).to(values.device)
        return values.index_select(0, torch.argsort(order))


def _labels(spec: ObjectiveSpec, y: Tensor | None, index: Tensor) -> Tensor | None:
    if y is None or not spec.needs_labels:
        return None
    return y.index_select(0, index.to(y.device))


class RoutedOneStep(Attack):
    """One normalised gradient step per example, each on the objective its route names.

    ``x'_b = clip(x_b + ε g_b / ‖g_b‖)`` with ``g_b = ∇ J_{route[b]}(x_b)``: the same points
    as :class:`~adv_attacks.OneStep` run on each objective's sub-batch, from one forward and
    backward pass over the batch (exactly so when the predictive treats examples
    independently: no batch norm in training mode).

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        specs: The objectives.
        route: ``(B,)`` ``int64`` index into ``specs`` per example of the batch it attacks.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range, default ``(0.0, 1.0)``.
        chunk_size: As :class:`~adv_attacks.OneStep`.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> specs = (ObjectiveSpec("nll"), ObjectiveSpec("entropy"))
        >>> attack = RoutedOneStep(eps=0.1, specs=specs, route=torch.tensor([0, 1, 1, 0]))
        >>> attack(net, x, y).shape
        torch.Size([4, 1, 2, 2])
    """

    def __init__(
        self,
        *,
        eps: Budget,
        specs: Sequence[ObjectiveSpec],
        route: Tensor,
        norm: Norm | str = Norm.L2,
        clamp: Clamp = (0.0, 1.0),
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=False, chunk_size=chunk_size)
        self.routed = RoutedObjective(tuple(specs), route)

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The routed objective (it stands where a single objective would)."""
        return (self.routed,)  # type: ignore[return-value]

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        if self.routed.route.shape[0] != problem.batch_size:
            raise ValueError(
                f"route has {self.routed.route.shape[0]} entries for a batch of "
                f"{problem.batch_size}"
            )
        g, _ = problem.gradient(problem.x, self.routed, at_clean=True)  # type: ignore[arg-type]
        return problem.step(problem.x.clone(), g, problem.eps)
