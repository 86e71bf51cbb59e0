"""Mixtures of channels ``p(x' | x, β) = Σ_k π_k p_k(x' | x, β)`` (paper, SM-5.3).

Two ways to sample a minibatch: draw a component per example (i.i.d. from ``π``), or
*stratify* it, giving each component exactly its share of the batch, as the paper does
("mini-batches with the corresponding proportions of clean and attacked samples"). Stratified
counts round ``π_k B`` at random, without bias: each ``n_k`` is ``⌊π_k B⌋`` or ``⌈π_k B⌉``,
``Σ n_k = B``, and ``E[n_k] = π_k B`` (the slots left after the floors go to component ``k``
with probability equal to the fractional part of ``π_k B``, by systematic sampling), so that
small batches, down to one example, follow ``π`` on average too. The components are
assigned to a random subset of the batch; each then samples its own sub-batch, except that
one-step components differing in their objective only (MIX's ``nll``, ``cw`` and ``entropy``
parts) sample theirs together, in one attack pass
(:func:`~adv_channels.one_step.sample_one_steps`: the same attack points, one noise draw).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adv_channels._checks import check_x, check_x_adv, check_y
from adv_channels.base import Channel, NoDensityError, Predictive
from adv_channels.one_step import OneStepChannel, sample_one_steps

__all__ = ["MixtureChannel", "stratified_counts"]

WEIGHT_TOLERANCE = 1e-6
"""How far ``Σ π_k`` may be from 1 (the weights are then renormalised exactly)."""


def _check_weights(weights: object, num_components: int) -> tuple[float, ...]:
    if isinstance(weights, Tensor):
        weights = weights.detach().cpu().tolist()
    if not isinstance(weights, Sequence) or isinstance(weights, str):
        raise TypeError(f"weights must be a sequence of floats, got {type(weights).__name__}")
    if len(weights) != num_components:
        raise ValueError(
            f"weights must have one entry per component ({num_components}); got {len(weights)}"
        )
    out = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float):
            raise TypeError(f"weights must hold real numbers, got {w!r}")
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
        out.append(float(w))
    total = math.fsum(out)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"weights must sum to 1 (within {WEIGHT_TOLERANCE}); got sum {total!r}")
    return tuple(w / total for w in out)


def stratified_counts(
    weights: Sequence[float], batch_size: int, *, generator: torch.Generator | None = None
) -> list[int]:
    """Per-batch counts ``n_k`` for proportions ``π``: ``π_k B`` rounded at random, unbiased.

    ``n_k = ⌊π_k B⌋`` plus one extra slot with probability ``f_k``, the fractional part of
    ``π_k B``; the ``B − Σ⌊π_k B⌋ = Σ f_k`` extra slots are placed by systematic sampling (one
    uniform offset over the fractional parts laid end to end, in a random order), so exactly
    that many are given, at most one per component, and ``E[n_k] = π_k B``. (Largest
    remainders, the deterministic alternative, is biased for small batches: at ``B = 1``
    it would always pick the component with the largest weight.)

    Args:
        weights: Proportions ``π_k >= 0`` summing to 1.
        batch_size: ``B >= 0``.
        generator: Random stream for the rounding.

    Returns:
        ``K`` non-negative counts summing to ``B``, each ``⌊π_k B⌋`` or ``⌈π_k B⌉``.

    Examples:
        >>> stratified_counts([0.4, 0.2, 0.2, 0.2], 10)
        [4, 2, 2, 2]
        >>> sorted(stratified_counts([0.5, 0.5], 7))
        [3, 4]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    pis = _check_weights(weights, len(weights))
    floors: list[int] = []
    fracs: list[float] = []
    for p in pis:
        q = p * batch_size
        r = round(q)
        if abs(q - r) <= 1e-9 * max(1, batch_size):  # 0.2 * 5 = 1.0000000000000002
            q = float(r)
        f = math.floor(q)
        floors.append(f)
        fracs.append(q - f)
    left = batch_size - sum(floors)
    if left <= 0:
        return floors
    order = torch.randperm(len(pis), generator=generator).tolist()
    # Systematic sampling: points u, u + 1, ..., u + left − 1 on the fractional parts laid
    # end to end (total ``left`` up to rounding); each part is < 1 long, so it holds at most
    # one point, and it holds one with probability equal to its length.
    u = float(torch.rand((), generator=generator))
    scale = left / sum(fracs[k] for k in order)  # exactly 1 but for float rounding
    start, point, picked = 0.0, u, []
    for k in order:
        end = start + fracs[k] * scale
        if point < end and len(picked) < left:
            picked.append(k)
            point += 1.0
        start = end
    # float rounding could leave the last point just past the end: never short of B
    picked += [k for k in order if fracs[k] > 0 and k not in picked][: left - len(picked)]
    for k in picked:
        floors[k] += 1
    return floors


class MixtureChannel(Channel):
    """A mixture of channels with weights ``π``, stratified per minibatch or per example.

    Args:
        components: The channels ``p_k`` (any :class:`~adv_channels.Channel`).
        weights: ``π_k >= 0`` summing to 1 (within ``1e-6``), one per component.
        stratified: ``True`` (default, the paper's choice): each minibatch holds exactly the
            proportions ``π`` up to rounding (unbiased random rounding of ``π_k B``, see
            :func:`stratified_counts`; random positions). ``False``: each
            example draws its component independently from ``π``.

    The density, where every component with ``π_k > 0`` has one, is
    ``log p = logsumexp_k(log π_k + log p_k)``; :meth:`mean` is ``Σ_k π_k μ_k``.

    Shape:
        - x: ``(B, *)``; y: ``(B,)``; output: ``(B, *)``; ``log_prob``: ``(B,)``.

    Examples:
        >>> from adv_channels import GaussianChannel, IdentityChannel
        >>> mix = MixtureChannel([IdentityChannel(), GaussianChannel(0.5)], [0.5, 0.5])
        >>> x = torch.zeros(10, 3)
        >>> x_adv, k = mix.sample_with_components(x, generator=torch.Generator().manual_seed(0))
        >>> int((k == 0).sum()), bool((x_adv[k == 0] == 0).all())
        (5, True)
    """

    def __init__(
        self,
        components: Sequence[Channel],
        weights: Sequence[float] | Tensor,
        *,
        stratified: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(components, Channel) or not isinstance(components, Sequence | nn.ModuleList):
            raise TypeError("components must be a sequence of Channel instances")
        if len(components) == 0:
            raise ValueError("components must hold at least one channel")
        for c in components:
            if not isinstance(c, Channel):
                raise TypeError(f"components must be Channel instances, got {type(c).__name__}")
        self.components = nn.ModuleList(components)
        self.weights = _check_weights(weights, len(components))
        self.stratified = bool(stratified)

    def _active(self) -> list[tuple[int, float, Channel]]:
        """``(k, π_k, p_k)`` for the components with ``π_k > 0``."""
        return [
            (k, w, c)
            for k, (w, c) in enumerate(zip(self.weights, self.components, strict=True))
            if w > 0
        ]

    def _fused_groups(self) -> list[list[int]]:
        """The active components in order, one-step channels that fuse grouped together.

        One-step channels differing in their objective only (MIX's ``nll``/``cw``/
        ``entropy`` parts) sample their examples in one attack pass (one forward and
        backward through the target instead of one per component; ``bench/perf.py``,
        section ``robust_vi``): the same attack points, the noise drawn once.
        """
        groups: list[list[int]] = []
        for k, _, channel in self._active():
            for group in groups:
                head = self.components[group[0]]
                if isinstance(head, OneStepChannel) and head.fuses_with(channel):
                    group.append(k)
                    break
            else:
                groups.append([k])
        return groups

    @property
    def has_density(self) -> bool:
        """Every component with ``π_k > 0`` has a density."""
        return all(c.has_density for _, _, c in self._active())

    @property
    def needs_target(self) -> bool:
        """Some component with ``π_k > 0`` reads the target."""
        return any(c.needs_target for _, _, c in self._active())

    @property
    def learnable(self) -> bool:
        """Some component with ``π_k > 0`` is learned."""
        return any(c.learnable for _, _, c in self._active())

    def assign(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """The component index of each example of a batch.

        Args:
            batch_size: ``B``.
            generator: Random stream (positions, tie-breaks, per-example draws).
            device: Where the result lives; default the generator's (CPU).

        Returns:
            ``(B,)`` ``int64`` indices into :attr:`components`; stratified: exactly the
            counts of :func:`stratified_counts`.
        """
        dev = generator.device if generator is not None else torch.device("cpu")
        k = len(self.weights)
        if batch_size == 0:
            comp = torch.zeros(0, dtype=torch.long, device=dev)
        elif self.stratified:
            counts = stratified_counts(self.weights, batch_size, generator=generator)
            labels = torch.repeat_interleave(
                torch.arange(k, device=dev), torch.tensor(counts, device=dev)
            )
            perm = torch.randperm(batch_size, generator=generator, device=dev)
            comp = torch.empty_like(labels)
            comp[perm] = labels
        else:
            pis = torch.tensor(self.weights, dtype=torch.float64, device=dev)
            comp = torch.multinomial(pis, batch_size, replacement=True, generator=generator)
        return comp.to(device if device is not None else dev)

    def _check_target(self, target: Predictive | None) -> None:
        if target is None and self.needs_target:
            names = sorted({type(c).__name__ for _, _, c in self._active() if c.needs_target})
            raise ValueError(
                f"this mixture holds attack-based components ({', '.join(names)}): pass "
                "target= (a predictive returning (B, C) scores or (mean, var))"
            )

    def sample_with_components(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``x'`` and report which component produced each example.

        Returns:
            ``x'`` ``(B, *)`` and the component indices ``(B,)`` (``int64``, on ``x``'s
            device), as drawn by :meth:`assign` with the same ``generator``.
        """
        x = check_x(x)
        y = check_y(y, x)
        self._check_target(target)
        b = x.shape[0]
        comp = self.assign(b, generator=generator, device=x.device)
        if b == 0:
            return x.clone(), comp
        parts: list[Tensor] = []
        where: list[Tensor] = []
        for group in self._fused_groups():
            members = torch.tensor(group, device=comp.device)
            idx = torch.isin(comp, members).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            xs = x.index_select(0, idx)
            ys = None if y is None else y.index_select(0, idx)
            present = comp.index_select(0, idx)
            if len(group) == 1 or bool((present == present[0]).all()):
                channel = self.components[int(present[0])]
                parts.append(channel.sample(xs, ys, target, generator=generator))
            else:
                route = torch.searchsorted(members, present)
                channels = [self.components[k] for k in group]
                parts.append(
                    sample_one_steps(channels, route, xs, ys, target, generator=generator)  # type: ignore[arg-type]
                )
            where.append(idx)
        order = torch.cat(where)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(b, device=order.device)
        return torch.cat(parts).index_select(0, inverse), comp

    def sample(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw the components (stratified or per example), then sample each sub-batch."""
        return self.sample_with_components(x, y, target, generator=generator)[0]

    def log_prob(
        self,
        x_adv: Tensor,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """``log Σ_k π_k p_k(x_adv | x, β)`` per example (log-sum-exp), shape ``(B,)``.

        Raises:
            NoDensityError: If a component with ``π_k > 0`` has no density.
        """
        x = check_x(x)
        x_adv = check_x_adv(x_adv, x)
        y = check_y(y, x)
        missing = [type(c).__name__ for _, _, c in self._active() if not c.has_density]
        if missing:
            raise NoDensityError(
                f"this mixture has components without a density ({', '.join(missing)}): "
                "log_prob is not available"
            )
        terms = [
            math.log(w) + channel.log_prob(x_adv, x, y, target) for _, w, channel in self._active()
        ]
        return torch.logsumexp(torch.stack(terms), dim=0)

    def mean(
        self,
        x: Tensor,
        y: Tensor | None = None,
        target: Predictive | None = None,
    ) -> Tensor:
        """``E[x'] = Σ_k π_k μ_k(x)``, shape ``(B, *)``."""
        x = check_x(x)
        y = check_y(y, x)
        out = None
        for _, w, channel in self._active():
            term = w * channel.mean(x, y, target)
            out = term if out is None else out + term
        assert out is not None
        return out

    def adversary_step(
        self,
        target: Predictive,
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor | None:
        """Update every learned component on the whole batch; their mean loss, or ``None``."""
        losses = [
            loss
            for _, _, c in self._active()
            if c.learnable
            and (loss := c.adversary_step(target, x, y, generator=generator)) is not None
        ]
        if not losses:
            return None
        return torch.stack(losses).mean()

    def joint_parameters(self) -> list[nn.Parameter]:
        """Every component's :meth:`~adv_channels.Channel.joint_parameters`."""
        return [p for _, _, c in self._active() for p in c.joint_parameters()]

    def joint_adversary_step(self) -> None:
        """Every component's :meth:`~adv_channels.Channel.joint_adversary_step`."""
        for _, _, c in self._active():
            c.joint_adversary_step()

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        return f"weights={list(self.weights)}, stratified={self.stratified}"
