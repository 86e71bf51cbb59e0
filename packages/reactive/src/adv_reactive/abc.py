"""Likelihood-free reactive defence: ABC weights from channel simulations.

Eqs. 4 and 5 of the paper weight the training inputs by the channel density
``k_mi(x') = p(x' | x_i, β_m)``. A channel known only as a simulator (multi-step PGD, a
learned generator, any attack) has none; approximate Bayesian computation (ABC) replaces it
by a kernel on the distance between the observed ``x'`` and simulations
``x'_mis ~ p(x' | x_i, β_m)``, ``s = 1..S`` (docs/theory.md, "Likelihood-free reactive
defence"):

``k̂_mi(x') = (1/S) Σ_s K_h(x' − x'_mis)``, ``K_h = N(0, h² I)`` (Gaussian kernel), or

the ``k`` nearest simulations (rejection ABC with an adaptive tolerance).

With the Gaussian kernel this is the same computation as the Gaussian reactive PPD with keys
``x'_mis`` (``S`` keys per ``(m, i)`` pair sharing the value ``P_mi``) and ``σ`` replaced by
``h``: :func:`adv_reactive.reactive_aggregate` with ``simulations=S``. :class:`ABC` holds the
options; pass it to :class:`adv_reactive.ReactivePPD` as ``abc=ABC(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor

from adv_channels import Channel
from adv_reactive.offset_keys import OffsetKeys
from adv_reactive.options import AggregationMode, coerce_option

__all__ = [
    "ABC",
    "ABCKernel",
    "BandwidthRule",
    "Simulator",
    "nearest_neighbour_bandwidth",
    "nearest_simulations",
    "simulate",
]

Simulator = Callable[[Tensor, Tensor | None, Any, torch.Generator | None], Tensor]
"""A custom channel: ``simulate(x, y, predictive_or_none, generator) -> x'`` of ``x``'s shape."""


class ABCKernel(StrEnum):
    """How simulations are weighted against the observed ``x'``."""

    GAUSSIAN = "gaussian"
    """``K_h(x' − x'_mis) = N(x'; x'_mis, h² I)``: eq. 4 (online) and eq. 5 (offline), smooth
    in ``x'`` (adaptive attacks get gradients); the fused aggregation with ``σ = h``."""

    NEAREST = "nearest"
    """The ``k`` nearest simulations, weighted equally (rejection ABC whose tolerance is the
    ``k``-th distance). Online (eq. 4): the ``k`` nearest among all ``M·N·S`` simulations, so a
    draw counts by how many of its simulations are among them (its ABC marginal likelihood);
    offline (eq. 5): the ``k`` nearest among each draw's ``N·S``, averaged over draws.
    Piecewise constant in ``x'``: no gradient reaches ``x'``."""


class BandwidthRule(StrEnum):
    """How the Gaussian kernel's bandwidth ``h`` is chosen at fit when it is not given."""

    NEAREST_NEIGHBOUR = "nearest_neighbour"
    """``h`` = the ``quantile`` (default the median) of the distances from a random subset of
    the simulations to their nearest other simulation (exact copies, e.g. the identity
    component of a mixture under every draw, excluded). It is the scale at which an ``x'``
    drawn by the channel sits from the simulations around it, and it shrinks as ``S`` (and
    ``N``, ``M``) grows: ``h → 0`` and ``S → ∞`` together."""


@dataclass(frozen=True)
class ABC:
    """Options of the likelihood-free (ABC) reactive defence.

    Args:
        simulations: ``S >= 1`` simulations per (draw, training input) pair, drawn once at
            :meth:`adv_reactive.ReactivePPD.fit`. Memory: ``S`` times the one-step keys.
        bandwidth: The Gaussian kernel's ``h > 0`` (input units), or ``None`` (default) to
            choose it at fit by ``rule``.
        rule: The bandwidth rule (:class:`BandwidthRule`), default ``"nearest_neighbour"``.
        quantile: The rule's quantile in ``(0, 1]``, default ``0.5``.
        reference_size: Simulations whose nearest-neighbour distance enters the rule
            (a random subset; default 512).
        kernel: ``"gaussian"`` (default) or ``"nearest"`` (:class:`ABCKernel`).
        k: Neighbours of the ``"nearest"`` kernel, default 10.
        per_draw: Simulate under each posterior draw ``β_m`` (``M·S`` keys per input) or once
            for all draws (``S`` keys, the channel called without a model). ``None``
            (default): per draw exactly when the channel reads a model (``needs_target``;
            always for a custom callable).

    Examples:
        >>> ABC(simulations=4).kernel
        <ABCKernel.GAUSSIAN: 'gaussian'>
        >>> ABC(bandwidth=0.0)
        Traceback (most recent call last):
        ...
        ValueError: bandwidth must be a positive finite number or None; got 0.0
    """

    simulations: int = 1
    bandwidth: float | None = None
    rule: BandwidthRule | str = BandwidthRule.NEAREST_NEIGHBOUR
    quantile: float = 0.5
    reference_size: int = 512
    kernel: ABCKernel | str = ABCKernel.GAUSSIAN
    k: int = 10
    per_draw: bool | None = None

    def __post_init__(self) -> None:
        for name in ("simulations", "reference_size", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        h = self.bandwidth
        if h is not None:
            if isinstance(h, bool) or not isinstance(h, int | float):
                raise TypeError(f"bandwidth must be a float or None; got {type(h).__name__}")
            if not (math.isfinite(h) and h > 0):
                raise ValueError(f"bandwidth must be a positive finite number or None; got {h!r}")
            object.__setattr__(self, "bandwidth", float(h))
        q = self.quantile
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q <= 1:
            raise ValueError(f"quantile must be a number in (0, 1]; got {q!r}")
        object.__setattr__(self, "quantile", float(q))
        object.__setattr__(self, "rule", coerce_option(BandwidthRule, self.rule, "rule"))
        object.__setattr__(self, "kernel", coerce_option(ABCKernel, self.kernel, "kernel"))
        if self.per_draw is not None and not isinstance(self.per_draw, bool):
            raise TypeError(f"per_draw must be a bool or None; got {self.per_draw!r}")

    def config(self) -> dict[str, Any]:
        """Plain data (for files read with ``torch.load(weights_only=True)``)."""
        out = asdict(self)
        out["rule"] = str(BandwidthRule(self.rule).value)
        out["kernel"] = str(ABCKernel(self.kernel).value)
        return out


def check_simulator(channel: object) -> None:
    """Raise a clear error unless ``channel`` can be sampled (a Channel or a callable)."""
    if isinstance(channel, Channel):
        return
    if callable(channel) and not isinstance(channel, torch.nn.Module | type):
        return
    raise TypeError(
        "with abc=, channel must be something that can be sampled: an adv_channels Channel "
        "(PGDChannel, a MixtureChannel, a LearnedChannel, ...) or a callable "
        f"simulate(x, y, predictive, generator) -> x'; got {type(channel).__name__} "
        "without sample()"
    )


def simulate(
    channel: Channel | Simulator,
    x: Tensor,
    y: Tensor | None,
    target: Any,
    generator: torch.Generator | None,
) -> Tensor:
    """One simulation ``x' ~ p(x' | x, β)`` per input, detached.

    Args:
        channel: An :class:`adv_channels.Channel` (``channel.sample``) or a callable
            ``simulate(x, y, target, generator)``.
        x: ``(B, *)`` clean inputs.
        y: ``(B,)`` labels or ``None``.
        target: The predictive of the posterior draw (attack-based channels), or ``None``.
        generator: The random stream.

    Returns:
        ``(B, *)`` simulations, detached.
    """
    if isinstance(channel, Channel):
        out = channel.sample(x, y, target, generator=generator)
    else:
        out = channel(x, y, target, generator)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the simulator must return x' of shape {tuple(x.shape)}; got {got}")
    out = out.detach()
    if not bool(torch.isfinite(out).all()):
        raise ValueError("the simulator returned NaN or infinite values")
    return out


def _chunk(keys: Tensor | OffsetKeys, g: int, a: int, b: int, dtype: torch.dtype) -> Tensor:
    if isinstance(keys, OffsetKeys):
        return keys.chunk(g, a, b, dtype)
    return keys[g, a:b].to(dtype)


def nearest_neighbour_bandwidth(
    keys: Tensor | OffsetKeys,
    key_sq_norms: Tensor,
    *,
    quantile: float = 0.5,
    reference_size: int = 512,
    chunk_size: int = 1024,
    generator: torch.Generator | None = None,
) -> float:
    """The :attr:`BandwidthRule.NEAREST_NEIGHBOUR` bandwidth of stored simulations.

    Memory: ``reference_size × chunk_size`` distances at a time.

    Args:
        keys: ``(G, N, D)`` simulations (or :class:`~adv_reactive.OffsetKeys`).
        key_sq_norms: ``(G, N)`` their squared norms.
        quantile: Which quantile of the nearest-neighbour distances, in ``(0, 1]``.
        reference_size: How many simulations (drawn at random) measure their distance to
            the nearest other one.
        chunk_size: Keys per chunk.
        generator: Picks the reference simulations (CPU generator).

    Returns:
        ``h > 0``.

    Raises:
        ValueError: With fewer than two simulations, or if every simulation coincides with
            another one (exact copies are not neighbours: pass ``ABC(bandwidth=...)``).

    Examples:
        >>> keys = torch.tensor([[[0.0], [1.0], [3.0]]])
        >>> nearest_neighbour_bandwidth(keys, keys.square().sum(-1), quantile=1.0)
        2.0
    """
    groups, num, _ = keys.shape
    total = groups * num
    if total < 2:
        raise ValueError("the bandwidth rule needs at least two simulations: pass bandwidth=")
    dtype = torch.float64 if key_sq_norms.dtype == torch.float64 else torch.float32
    count = min(reference_size, total)
    pick = torch.randperm(total, generator=generator)[:count].to(key_sq_norms.device)
    ref_g, ref_i = pick // num, pick % num
    ref = torch.stack(
        [
            _chunk(keys, int(g), int(i), int(i) + 1, dtype)[0]
            for g, i in zip(ref_g.tolist(), ref_i.tolist(), strict=True)
        ]
    )
    ref_sq = key_sq_norms[ref_g, ref_i].to(dtype)
    rel_tol = 1e-12 if dtype == torch.float64 else 1e-5
    best = ref_sq.new_full((count,), math.inf)
    for g in range(groups):
        for start in range(0, num, chunk_size):
            stop = min(start + chunk_size, num)
            block = _chunk(keys, g, start, stop, dtype)
            d2 = ref_sq[:, None] + key_sq_norms[g, start:stop].to(dtype)[None] - 2 * ref @ block.T
            self_hit = (ref_g == g)[:, None] & (
                ref_i[:, None] == torch.arange(start, stop, device=ref_i.device)[None]
            )
            # Exact copies (the simulation itself, an identity component's x_i under every
            # draw) say nothing about the spread: they are not neighbours. ``tol`` covers the
            # rounding of the GEMM expansion.
            tol = rel_tol * (ref_sq[:, None] + key_sq_norms[g, start:stop].to(dtype)[None])
            d2 = d2.masked_fill(self_hit | (d2 <= tol), math.inf)
            best = torch.minimum(best, d2.amin(dim=1))
    found = best[torch.isfinite(best)]
    if found.numel() == 0:
        raise ValueError(
            "the nearest-neighbour bandwidth is undefined: every simulation coincides with "
            "another one (a deterministic channel without noise?): pass ABC(bandwidth=h), h > 0"
        )
    return float(torch.quantile(found.sqrt().double(), quantile))


def nearest_simulations(
    queries: Tensor,
    keys: Tensor | OffsetKeys,
    key_sq_norms: Tensor,
    values: Tensor,
    *,
    k: int,
    mode: AggregationMode | str,
    simulations: int,
    shared: bool,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """The ``k``-nearest-simulations ABC average (:attr:`ABCKernel.NEAREST`), streamed.

    Args:
        queries: ``(B, D)``.
        keys: ``(G, N, D)`` simulations, ``G = M·S`` (per draw) or ``S`` (shared).
        key_sq_norms: ``(G, N)``.
        values: ``(M, N, C)``.
        k: Neighbours per pool (``1 <= k``; capped at the pool's size).
        mode: Online: one pool of all simulations; offline: one pool per draw.
        simulations: ``S``.
        shared: Whether the keys are shared by every draw (values then averaged).
        chunk_size: Keys per chunk.

    Returns:
        ``output (B, C)`` (the average of the neighbours' values; offline, averaged over
        draws) and ``counts (B, M)``: how many of the ``k`` (online) neighbours each draw
        supplied (offline: ``k`` each). No gradient.
    """
    mode = coerce_option(AggregationMode, mode, "mode")
    dtype = queries.dtype
    q = queries.detach()
    q_sq = torch.linalg.vecdot(q, q)
    groups, num, _ = keys.shape
    num_draws = values.shape[0]
    vals = values.to(dtype)
    if shared:
        vals = vals.mean(dim=0, keepdim=True)
    pools = num_draws if (mode is AggregationMode.OFFLINE and not shared) else 1
    per_pool = groups // pools
    outs, counts = [], torch.zeros(q.shape[0], num_draws, dtype=dtype, device=q.device)
    with torch.no_grad():
        for p in range(pools):
            best_d = q.new_full((q.shape[0], 0), math.inf)
            best_g = torch.zeros(q.shape[0], 0, dtype=torch.long, device=q.device)
            best_i = torch.zeros_like(best_g)
            for g in range(p * per_pool, (p + 1) * per_pool):
                for start in range(0, num, chunk_size):
                    stop = min(start + chunk_size, num)
                    block = _chunk(keys, g, start, stop, dtype)
                    d2 = (
                        q_sq[:, None]
                        + key_sq_norms[g, start:stop].to(dtype)[None]
                        - 2 * q @ block.T
                    )
                    kk = min(k, stop - start)
                    cand_d, cand_i = d2.topk(kk, dim=1, largest=False)
                    merged_d = torch.cat((best_d, cand_d), dim=1)
                    merged_i = torch.cat((best_i, cand_i + start), dim=1)
                    merged_g = torch.cat((best_g, torch.full_like(cand_i, g)), dim=1)
                    best_d, pos = merged_d.topk(min(k, merged_d.shape[1]), dim=1, largest=False)
                    best_i, best_g = merged_i.gather(1, pos), merged_g.gather(1, pos)
            draw = torch.zeros_like(best_g) if shared else best_g // simulations
            outs.append(vals[draw, best_i].mean(dim=1))
            if not shared:
                counts.scatter_add_(1, draw, torch.ones_like(best_d))
            else:
                counts += best_d.shape[1] / num_draws
    output = torch.stack(outs).mean(dim=0)
    return output, counts
