"""The Square attack: gradient-free random search (Andriushchenko et al. 2020).

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020. Each iteration proposes a change of the
current point inside one random square window (L∞: the window set to ``±ε`` per channel
from the clean input; L2: mass moved between two windows with the paper's centred
pattern), and keeps it only if it lowers the example's margin
``log p_y - max_{k≠y} log p_k``. It reads nothing but the predictive's outputs, so it is
blind to gradient masking: when it beats the gradient attacks, their figure overstates
robustness (docs/theory.md, "Reliable evaluation").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, overload

import torch
from torch import Tensor

from adv_attacks._progress import progress_bar
from adv_attacks.base import Attack, AttackProblem, AttackResult, Budget, Clamp, check_steps
from adv_attacks.norms import Norm
from adv_attacks.objectives import ObjectiveSpec, _others_max
from adv_attacks.predictive import ClassificationOutput

__all__ = ["Square", "margin_values", "p_schedule", "square"]

_TINY = 1e-12
"""Added to the norms the reference implementation divides by."""


def margin_values(log_probs: Tensor, y: Tensor) -> Tensor:
    """Square's loss, the margin ``log p_y - max_{k≠y} log p_k`` per example (``<= 0``: fooled).

    Args:
        log_probs: ``(B, C)``.
        y: Labels ``(B,)``.

    Returns:
        ``(B,)``.

    Examples:
        >>> margin_values(torch.tensor([[0.0, -1.0, -3.0]]).log_softmax(1), torch.tensor([0]))
        tensor([1.])
    """
    return log_probs.gather(1, y.unsqueeze(1)).squeeze(1) - _others_max(log_probs, y)


def p_schedule(i: int, n_queries: int, p_init: float) -> float:
    """The fraction ``p`` of pixels a square covers at iteration ``i`` (reference schedule).

    ``p_init`` halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a
    10 000-query run, those iterations rescaled to ``n_queries``.

    Examples:
        >>> p_schedule(0, 5000, 0.8), p_schedule(100, 5000, 0.8)
        (0.8, 0.2)
    """
    it = int(i / n_queries * 10000)
    for k, edge in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= edge:
            return p_init / 2**k
    return p_init / 512


def _eta_rectangle(rows: int, cols: int) -> Tensor:
    delta = torch.zeros(rows, cols, dtype=torch.float64)
    rc, cc = rows // 2 + 1, cols // 2 + 1
    r0, c0 = rc - 1, cc - 1
    for k in range(max(rc, cc)):
        delta[max(r0, 0) : min(r0 + 2 * k + 1, rows), max(c0, 0) : min(c0 + 2 * k + 1, cols)] += (
            1.0 / (k + 1) ** 2
        )
        r0, c0 = r0 - 1, c0 - 1
    return delta / delta.norm()


@lru_cache(maxsize=64)
def _eta(s: int) -> Tensor:
    """The L2 update's ``s × s`` pattern: two centred pyramids of opposite sign, unit norm."""
    delta = torch.zeros(s, s, dtype=torch.float64)
    delta[: s // 2] = _eta_rectangle(s // 2, s)
    delta[s // 2 :] = -_eta_rectangle(s - s // 2, s)
    return delta / delta.norm()


class _Random:
    """Draws from one generator (on its own device), moved to the batch's device."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.g = generator
        self.dev = generator.device if generator is not None else device
        self.out = device

    def sign(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        u = torch.randint(0, 2, shape, generator=self.g, device=self.dev)
        return (2 * u - 1).to(device=self.out, dtype=dtype)

    def integers(self, high: Tensor | int, n: int) -> Tensor:
        """``n`` integers uniform in ``[0, high]`` (inclusive)."""
        u = torch.rand(n, generator=self.g, device=self.dev, dtype=torch.float64)
        return (u * (high + 1)).floor().long().to(self.out)

    def coin(self, n: int) -> Tensor:
        return (torch.rand(n, generator=self.g, device=self.dev) < 0.5).to(self.out)


def _window(top: Tensor, left: Tensor, s: int, h: int, w: int) -> Tensor:
    """``(n, 1, h, w)`` masks of the ``s × s`` windows with corners ``(top, left)``."""
    r = torch.arange(h, device=top.device)
    c = torch.arange(w, device=top.device)
    in_r = (r >= top[:, None]) & (r < top[:, None] + s)
    in_c = (c >= left[:, None]) & (c < left[:, None] + s)
    return (in_r[:, None, :, None] & in_c[:, None, None, :]).contiguous()


def _place(pattern: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    """``(n, 1, h, w)``: each example's ``s × s`` pattern ``(n, s, s)`` at its window."""
    n, s, _ = pattern.shape
    ar = torch.arange(s, device=top.device)
    flat = (top[:, None, None] + ar[None, :, None]) * w + (left[:, None, None] + ar[None, None, :])
    out = pattern.new_zeros(n, h * w)
    out.scatter_(1, flat.reshape(n, s * s), pattern.reshape(n, s * s))
    return out.view(n, 1, h, w)


def _norm4(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


class Square(Attack):
    """Square attack (Andriushchenko et al. 2020), L∞ or L2, on the margin loss.

    Random search for the minimum of the margin ``log p_y - max_{k≠y} log p_k`` of the
    predictive's log-probabilities (equal to the margin of logits for a plain classifier).
    L∞: start from vertical stripes ``x ± ε``; each iteration picks, per example, a square
    of side ``s = round(√(p·H·W))`` at a uniform position and sets it to ``x ± ε`` (one sign
    per channel). L2: start from a grid of the paper's centred patterns scaled to
    ``‖δ‖₂ = ε``; each iteration moves the perturbation's mass in one window into a new
    pattern in another (the paper's square-pair update), renormalised to ``‖δ‖₂ = ε``.
    ``p`` follows :func:`p_schedule`. A proposal is kept only if it lowers the example's
    margin; an example stops being queried once fooled. Every proposal is projected onto
    the ball and clamped to the range. Windows, signs and patterns are drawn per example
    (the reference implementation of AutoAttack shares them across the batch).

    Args:
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` (default) or ``"linf"``.
        clamp: Valid input range, default ``(0.0, 1.0)``; ``None`` for unbounded inputs.
        n_queries: Iterations (one forward pass of the examples still standing each),
            default 5000 (AutoAttack's standard setting); queries per example are at most
            ``n_queries + 1``.
        p_init: Initial fraction of pixels of a square, default 0.8 (AutoAttack's).
        chunk_size: Examples per forward pass (see :class:`~adv_attacks.Attack`).
        progress: Show a tqdm bar over the iterations.

    Shape:
        - x: ``(B, C, H, W)`` images; y: ``(B,)`` labels; output: like ``x``.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 2])
        >>> x_adv = Square(eps=0.1, norm="linf", n_queries=20)(net, x, y)
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """

    def __init__(
        self,
        *,
        eps: Budget,
        norm: Norm | str = Norm.L2,
        clamp: Clamp = (0.0, 1.0),
        n_queries: int = 5000,
        p_init: float = 0.8,
        chunk_size: int | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(eps=eps, norm=norm, clamp=clamp, eot=False, chunk_size=chunk_size)
        self.n_queries = check_steps(n_queries, "n_queries")
        if isinstance(p_init, bool) or not isinstance(p_init, int | float):
            raise TypeError(f"p_init must be a float, got {type(p_init).__name__}")
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init = float(p_init)
        self.progress = bool(progress)

    @property
    def specs(self) -> tuple[ObjectiveSpec, ...]:
        """The reported objective: the CW margin ``max_{k≠y} log p_k - log p_y`` (uncapped)."""
        return (ObjectiveSpec("cw", kappa=1e30),)

    def _margin(self, problem: AttackProblem, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = problem.read(x)
        if not isinstance(out, ClassificationOutput):
            raise ValueError("Square needs a classification predictive (class scores)")
        return margin_values(out.log_probs, problem.labels())

    def _perturb(self, problem: AttackProblem, generator: torch.Generator | None) -> Tensor:
        x0 = problem.x
        if x0.ndim != 4:
            raise ValueError(
                f"Square needs image batches (B, C, H, W); got shape {tuple(x0.shape)}"
            )
        b, c, h, w = x0.shape
        if self.norm is Norm.L2 and min(h, w) < 3:
            raise ValueError(f"Square-L2 needs images of at least 3x3 pixels; got {h}x{w}")
        rnd = _Random(generator, x0.device)
        eps4 = problem.eps.view(-1, 1, 1, 1)
        with torch.no_grad():
            if self.norm is Norm.LINF:
                x_best = problem.clip(x0 + eps4 * rnd.sign((b, c, 1, w), x0.dtype))
            else:
                x_best = problem.clip(x0 + self._l2_init(x0, rnd) * eps4)
            margin = self._margin(problem, x_best)
            bar = progress_bar(self.n_queries, "Square", self.progress, unit="query")
            try:
                for i in range(self.n_queries):
                    index = (margin > 0).nonzero().squeeze(1)
                    if index.numel() == 0:
                        break
                    sub = problem.subset(index)
                    p = p_schedule(i, self.n_queries, self.p_init)
                    if self.norm is Norm.LINF:
                        x_new = self._linf_proposal(sub, x_best[index], p, rnd)
                    else:
                        x_new = self._l2_proposal(sub, x_best[index], p, rnd)
                    m_new = self._margin(sub, x_new)
                    better = m_new < margin[index]
                    keep = index[better]
                    x_best[keep] = x_new[better]
                    margin[keep] = m_new[better]
                    bar.update(1)
                    if i % 50 == 0:
                        bar.set_postfix_str(f"fooled {int((margin <= 0).sum())}/{b}")
            finally:
                bar.close()
        return x_best

    def _l2_init(self, x0: Tensor, rnd: _Random) -> Tensor:
        """The reference's start: a grid of centred patterns with random signs, unit norm."""
        b, c, h, w = x0.shape
        s = max(h // 5, 2)
        delta = torch.zeros_like(x0)
        start = (h - s * 5) // 2 if h >= 5 * s else 0
        for bh in range(h // s):
            for bw in range(w // s):
                top, left = start + bh * s, start + bw * s
                if top + s > h or left + s > w:
                    continue
                pat = _eta(s).to(device=x0.device, dtype=x0.dtype)
                if bool(rnd.coin(1)):
                    pat = pat.t()
                delta[:, :, top : top + s, left : left + s] += pat * rnd.sign(
                    (b, c, 1, 1), x0.dtype
                )
        return delta / (_norm4(delta) + _TINY)

    def _linf_proposal(self, sub: AttackProblem, x_best: Tensor, p: float, rnd: _Random) -> Tensor:
        n, c, h, w = x_best.shape
        s = min(max(int(round(math.sqrt(p * h * w))), 1), h, w)
        top, left = rnd.integers(h - s, n), rnd.integers(w - s, n)
        mask = _window(top, left, s, h, w)
        eps4 = sub.eps.view(-1, 1, 1, 1)
        x0 = sub.x
        cand = x0 + eps4 * rnd.sign((n, c, 1, 1), x0.dtype)
        x_new = torch.where(mask, cand, x_best)
        x_new = torch.minimum(torch.maximum(x_new, x0 - eps4), x0 + eps4)
        return sub.clip(x_new)

    def _l2_proposal(self, sub: AttackProblem, x_best: Tensor, p: float, rnd: _Random) -> Tensor:
        n, c, h, w = x_best.shape
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = min(s, h, w)
        if s % 2 == 0:
            s = s + 1 if s + 1 <= min(h, w) else s - 1
        x0 = sub.x
        eps4 = sub.eps.view(-1, 1, 1, 1)
        delta = x_best - x0
        top1, left1 = rnd.integers(h - s, n), rnd.integers(w - s, n)
        top2, left2 = rnd.integers(h - s, n), rnd.integers(w - s, n)
        m1 = _window(top1, left1, s, h, w)
        m2 = _window(top2, left2, s, h, w)
        in1 = delta * m1
        norm_win1 = in1.square().sum(dim=(2, 3), keepdim=True).sqrt()  # (n, c, 1, 1)
        norm_img = _norm4(delta)
        norm_wins = _norm4(delta * (m1 | m2))
        pat = _eta(s).to(device=x0.device, dtype=x0.dtype).expand(n, s, s)
        pat = torch.where(rnd.coin(n).view(-1, 1, 1), pat.transpose(1, 2), pat)
        new = _place(pat, top1, left1, h, w) * rnd.sign((n, c, 1, 1), x0.dtype)
        new = new + in1 / (_TINY + norm_win1)
        new_norm = new.square().sum(dim=(2, 3), keepdim=True).sqrt()
        budget = (
            (eps4.square() - norm_img.square()).clamp_min(0.0) / c + norm_wins.square()
        ).sqrt()
        new = new / (_TINY + new_norm) * budget
        delta = torch.where(m2, torch.zeros_like(delta), delta)
        delta = torch.where(m1, new, delta)
        return sub.clip(x0 + delta / (_norm4(delta) + _TINY) * eps4)


@overload
def square(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    n_queries: int = ...,
    p_init: float = ...,
    chunk_size: int | None = ...,
    progress: bool = ...,
    return_info: Literal[False] = ...,
) -> Tensor: ...


@overload
def square(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = ...,
    clamp: Clamp = ...,
    generator: torch.Generator | None = ...,
    n_queries: int = ...,
    p_init: float = ...,
    chunk_size: int | None = ...,
    progress: bool = ...,
    return_info: Literal[True],
) -> AttackResult: ...


def square(
    predictive: Callable[[Tensor], object],
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: Budget,
    norm: Norm | str = Norm.L2,
    clamp: Clamp = (0.0, 1.0),
    generator: torch.Generator | None = None,
    n_queries: int = 5000,
    p_init: float = 0.8,
    chunk_size: int | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> Tensor | AttackResult:
    """Square attack (Andriushchenko et al. 2020); see :class:`Square` for every option.

    Args:
        predictive: A classifier returning ``(B, C)`` logits or log-probabilities.
        x: Clean images ``(B, C, H, W)``, never modified.
        y: Labels ``(B,)``, or ``None`` (the clean prediction).
        eps: Budget ``ε >= 0``, a float or a ``(B,)`` tensor.
        norm: ``"l2"`` or ``"linf"``.
        clamp: Valid input range or ``None``.
        generator: Random stream for every draw of the search.
        n_queries: Iterations, default 5000.
        p_init: Initial fraction of pixels per square, default 0.8.
        chunk_size: Examples per forward pass.
        progress: Show a tqdm bar.
        return_info: Return an :class:`AttackResult`.

    Returns:
        The adversarial batch, or an :class:`AttackResult`.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(25, 3))
        >>> res = square(net, torch.rand(3, 1, 5, 5), eps=0.5, n_queries=10, return_info=True)
        >>> res.success.shape
        torch.Size([3])
    """
    attack = Square(
        eps=eps,
        norm=norm,
        clamp=clamp,
        n_queries=n_queries,
        p_init=p_init,
        chunk_size=chunk_size,
        progress=progress,
    )
    return attack(predictive, x, y, generator=generator, return_info=return_info)
