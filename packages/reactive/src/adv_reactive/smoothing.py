"""Randomized smoothing: PREDICT and CERTIFY of Cohen et al. (2019) (paper, Proposition 3.5).

Randomized smoothing is the reactive defence's limit with one point estimate, a flat
covariate prior and the Gaussian channel: the smoothed classifier is
``g(x) = argmax_c P(f(x + η) = c)``, ``η ~ N(0, σ² I)``. Here ``f(x) = argmax`` of any
classifier's output (logits or log-probabilities, a point estimate or a Bayesian PPD), and
the probabilities are Monte Carlo counts over noise drawn in batches on the input's device.

* :func:`predict`: ``n`` draws, top two counts ``c₁, c₂``; abstain (``-1``) unless the
  two-sided binomial test of ``c₁`` out of ``c₁ + c₂`` at ½ has p-value ``<= α``.
* :func:`certify`: ``n₀`` draws choose ``ĉ``; ``n`` fresh draws count ``n_A``;
  ``p_A`` = the ``(1 − α)`` Clopper–Pearson lower bound; abstain if ``p_A < ½``, else
  ``ĉ`` with certified L2 radius ``σ Φ⁻¹(p_A)``.
* :func:`certified_accuracy`: the fraction of inputs certified correct at each radius.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from adv_reactive.binomial import binomial_test, clopper_pearson_lower

__all__ = [
    "ABSTAIN",
    "Certificate",
    "certified_accuracy",
    "certify",
    "class_counts",
    "eval_mode",
    "predict",
]

ABSTAIN = -1
"""The label returned where the smoothed classifier abstains."""

Classifier = Callable[[Tensor], Tensor]


class Certificate(NamedTuple):
    """What :func:`certify` returns, per input.

    Attributes:
        label: ``(B,)`` int64 predicted class ``ĉ``, or :data:`ABSTAIN`.
        radius: ``(B,)`` float64 certified L2 radius ``σ Φ⁻¹(p_A)`` (``0`` where abstaining),
            in input units.
        p_lower: ``(B,)`` float64 lower confidence bound ``p_A`` of ``P(f(x + η) = ĉ)``.
        counts: ``(B, C)`` int64 class counts of the ``n`` estimation draws.
    """

    label: Tensor
    radius: Tensor
    p_lower: Tensor
    counts: Tensor


@contextlib.contextmanager
def eval_mode(classifier: object) -> Iterator[None]:
    """Put an ``nn.Module`` (and every submodule) in eval mode; restore the flags on exit.

    Anything else passes through untouched.

    Examples:
        >>> net = nn.Dropout()
        >>> with eval_mode(net):
        ...     assert not net.training
        >>> net.training
        True
    """
    if not isinstance(classifier, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in classifier.modules()]
    try:
        classifier.eval()
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def class_counts(
    classifier: Classifier,
    x: Tensor,
    *,
    sigma: float,
    num_samples: int,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Counts of ``argmax classifier(x + η)`` over ``num_samples`` draws of ``η ~ N(0, σ² I)``.

    The ``B × num_samples`` noisy inputs are evaluated in batches of ``batch_size`` rows that
    may mix inputs, so small ``num_samples`` over many inputs is as vectorised as large
    ``num_samples`` over one. Runs under ``torch.no_grad()`` and :func:`eval_mode`.

    Args:
        classifier: Callable mapping ``(b, ...)`` inputs to ``(b, C)`` logits or
            log-probabilities.
        x: ``(B, ...)`` inputs.
        sigma: Noise standard deviation ``σ > 0``, in input units.
        num_samples: Draws per input, ``>= 1``.
        batch_size: Rows per classifier call.
        generator: Random stream on ``x``'s device (``None``: the global one).

    Returns:
        ``(B, C)`` int64 counts on ``x``'s device; each row sums to ``num_samples``.
    """
    _check_common(x, sigma, generator)
    num_samples = _check_positive_int(num_samples, "num_samples")
    batch_size = _check_positive_int(batch_size, "batch_size")
    num_inputs = x.shape[0]
    total = num_inputs * num_samples
    counts: Tensor | None = None
    with torch.no_grad(), eval_mode(classifier):
        for start in range(0, total, batch_size):
            rows = torch.arange(start, min(start + batch_size, total), device=x.device)
            owner = rows // num_samples
            batch = x[owner]
            noise = torch.randn(
                batch.shape, generator=generator, dtype=batch.dtype, device=batch.device
            )
            out = classifier(batch + sigma * noise)
            if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != batch.shape[0]:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"classifier must return (b, C) scores for a batch of b inputs; got {shape}"
                )
            if counts is None:
                counts = torch.zeros(num_inputs, out.shape[1], dtype=torch.long, device=x.device)
            pred = out.argmax(dim=1)
            counts.index_put_((owner, pred), torch.ones_like(pred), accumulate=True)
    assert counts is not None
    return counts


def predict(
    classifier: Classifier,
    x: Tensor,
    *,
    sigma: float,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PREDICT of Cohen et al. (2019): the smoothed class, or abstain (paper, Prop. 3.5).

    With ``c₁ >= c₂`` the top two class counts over ``n`` noisy draws, return the top class
    when the two-sided binomial test of ``c₁`` out of ``c₁ + c₂`` at ½ has p-value
    ``<= alpha``; otherwise :data:`ABSTAIN`. The probability of returning a class other than
    the smoothed classifier's is at most ``alpha``.

    Args:
        classifier: Callable mapping ``(b, ...)`` inputs to ``(b, C)`` logits or
            log-probabilities (a point estimate or a Bayesian PPD), ``C >= 2``.
        x: ``(B, ...)`` inputs.
        sigma: Noise standard deviation ``σ > 0``, in input units.
        n: Noisy draws per input.
        alpha: Test level, in ``(0, 1)``.
        batch_size: Rows per classifier call.
        generator: Random stream on ``x``'s device.

    Returns:
        ``(B,)`` int64 classes, :data:`ABSTAIN` where the test does not reject.

    Shape:
        - x: ``(B, ...)``; output: ``(B,)``.

    Examples:
        >>> net = nn.Linear(2, 3)
        >>> predict(net, torch.zeros(4, 2), sigma=0.25, n=1000).shape
        torch.Size([4])
    """
    _check_alpha(alpha)
    counts = class_counts(
        classifier, x, sigma=sigma, num_samples=n, batch_size=batch_size, generator=generator
    )
    if counts.shape[1] < 2:
        raise ValueError(f"classifier must score C >= 2 classes; got C = {counts.shape[1]}")
    top = counts.topk(2, dim=1)
    c1, c2 = top.values[:, 0], top.values[:, 1]
    p_value = binomial_test(c1, c1 + c2)
    label = top.indices[:, 0].clone()
    label[p_value.to(label.device) > alpha] = ABSTAIN
    return label


def certify(
    classifier: Classifier,
    x: Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> Certificate:
    """CERTIFY (Cohen et al. 2019; paper, Prop. 3.5): a class and a certified L2 radius, or abstain.

    ``n0`` draws choose ``ĉ`` (the most frequent class); ``n`` fresh draws count ``n_A``
    hits of ``ĉ``; ``p_A`` is the one-sided ``(1 − alpha)`` Clopper–Pearson lower bound of
    ``n_A / n``. Abstain if ``p_A < ½``; else return ``ĉ`` with radius ``σ Φ⁻¹(p_A)``: with
    probability at least ``1 − alpha``, the smoothed classifier returns ``ĉ`` everywhere in
    that L2 ball.

    Args:
        classifier: Callable mapping ``(b, ...)`` inputs to ``(b, C)`` logits or
            log-probabilities (a point estimate or a Bayesian PPD).
        x: ``(B, ...)`` inputs.
        sigma: Noise standard deviation ``σ > 0``, in input units.
        n0: Selection draws per input.
        n: Estimation draws per input.
        alpha: Error probability, in ``(0, 1)``.
        batch_size: Rows per classifier call.
        generator: Random stream on ``x``'s device.

    Returns:
        A :class:`Certificate` with ``label``, ``radius``, ``p_lower`` (each ``(B,)``) and
        ``counts`` (``(B, C)``).

    Examples:
        >>> net = nn.Linear(2, 2)
        >>> cert = certify(net, torch.randn(3, 2), sigma=0.5, n0=10, n=1000)
        >>> cert.label.shape, cert.radius.dtype
        (torch.Size([3]), torch.float64)
    """
    _check_alpha(alpha)
    select = class_counts(
        classifier, x, sigma=sigma, num_samples=n0, batch_size=batch_size, generator=generator
    )
    guess = select.argmax(dim=1)
    counts = class_counts(
        classifier, x, sigma=sigma, num_samples=n, batch_size=batch_size, generator=generator
    )
    n_a = counts.gather(1, guess[:, None])[:, 0]
    p_lower = clopper_pearson_lower(n_a, n, alpha)
    certified = p_lower >= 0.5
    radius = torch.where(certified, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))
    label = torch.where(certified.to(guess.device), guess, torch.full_like(guess, ABSTAIN))
    return Certificate(label, radius, p_lower, counts)


def certified_accuracy(
    label: Tensor, radius: Tensor, target: Tensor, radii: Tensor | list[float]
) -> Tensor:
    """Certified accuracy at each radius: the fraction certified correct with radius ``>= r``.

    The curve of Cohen et al. (2019, fig. 6); abstentions count as errors.

    Args:
        label: ``(B,)`` certified labels (:data:`ABSTAIN` allowed).
        radius: ``(B,)`` certified radii.
        target: ``(B,)`` true labels.
        radii: ``(R,)`` radii at which to evaluate (``>= 0``).

    Returns:
        ``(R,)`` float64 fractions in ``[0, 1]``, non-increasing in the radius.

    Examples:
        >>> certified_accuracy(
        ...     torch.tensor([0, 1, -1]), torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0, 0, 1]),
        ...     [0.0, 0.5, 0.75],
        ... )
        tensor([0.3333, 0.3333, 0.0000], dtype=torch.float64)
    """
    if label.dim() != 1 or radius.shape != label.shape or target.shape != label.shape:
        raise ValueError(
            "label, radius and target must all have shape (B,); got "
            f"{tuple(label.shape)}, {tuple(radius.shape)}, {tuple(target.shape)}"
        )
    grid = torch.as_tensor(radii, dtype=torch.float64, device=radius.device)
    if grid.dim() != 1 or bool((grid < 0).any()):
        raise ValueError("radii must be a 1-D list of non-negative radii")
    correct = (label == target.to(label.device)) & (label != ABSTAIN)
    ok = correct[None, :] & (radius.double()[None, :] >= grid[:, None])
    return ok.double().mean(dim=1) if label.numel() else torch.zeros_like(grid)


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _check_alpha(alpha: object) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")


def _check_common(x: object, sigma: object, generator: object) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise TypeError("x must be a floating-point tensor of shape (B, ...)")
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, float | int)
        or not (math.isfinite(sigma) and sigma > 0)
    ):
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        if torch.device(generator.device).type != x.device.type:
            raise ValueError(
                f"generator is on {generator.device} but x is on {x.device}: noise is drawn on "
                "the input's device"
            )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or infinite values")
