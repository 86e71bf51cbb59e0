"""The regression reactive PPD: a Gaussian mixture over (draw, training input) pairs.

The paper's eqs. 4 and 5 with ``p(y | x_i, β_m) = N(y; f_mi, s²)`` (learned noise ``s``,
docs/theory.md, 'Bayesian neural networks'): the reactive PPD at ``x'`` is the mixture
``Σ_{m,i} w_mi(x') N(y; f_mi, s²)`` whose weights are those of eq. 4 (online) or eq. 5 (offline,
``w_mi = k_mi / (M Σ_j k_mj)``). Two quantities come out of the streaming aggregation of
:func:`adv_reactive.reactive_aggregate`:

* its moments, from the values ``[f, f²]`` (:func:`moment_values`, :func:`mixture_moments`):
  ``mean = Σ w f`` and ``var = s² + Σ w f² − mean²``;
* its log-density at a target ``y`` (:func:`reactive_gaussian_log_prob`). The mixture needs
  ``y``-dependent weights, but ``−(y − f)² / (2s²)`` is one more squared distance: with
  ``c = σ / s``, appending ``c·y`` to the query and ``c·f_mi`` to the key turns the score
  ``−‖x' − μ_mi‖² / (2σ²)`` into ``−‖x' − μ_mi‖² / (2σ²) − (y − f_mi)² / (2s²)``, so the
  same streaming log-sum-exp (either back end, differentiable) gives
  ``log Σ_i k_mi N(y; f_mi, s²)`` up to the Gaussian constants.

Values are centred at a constant offset (the mean of all ``f_mi``) before squaring, so that
``Σ w f² − mean²`` does not cancel catastrophically when ``|f|`` is large against its spread.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from adv_reactive.ops import _describe, _inverse_variance, reactive_aggregate, squared_norms
from adv_reactive.options import AggregationMode, Backend, coerce_option

__all__ = ["mixture_moments", "moment_values", "reactive_gaussian_log_prob"]


def moment_values(means: Tensor, offset: Tensor) -> Tensor:
    """The values whose reactive average gives the mixture's first two moments.

    Args:
        means: ``(M, N, K)`` per-draw regression means ``f_mi``.
        offset: ``(K,)`` centring constant (e.g. the mean of ``means`` over draws and inputs).

    Returns:
        ``(M, N, 2K)``: ``[f − offset, (f − offset)²]``.

    Examples:
        >>> moment_values(torch.tensor([[[1.0], [3.0]]]), torch.tensor([2.0]))
        tensor([[[-1.,  1.],
                 [ 1.,  1.]]])
    """
    centred = means - offset
    return torch.cat((centred, centred.square()), dim=-1)


def mixture_moments(aggregated: Tensor, offset: Tensor, noise_var: float) -> tuple[Tensor, Tensor]:
    """Mean and variance of the mixture from the reactive average of :func:`moment_values`.

    Args:
        aggregated: ``(B, 2K)`` reactive average of ``[f − offset, (f − offset)²]``.
        offset: ``(K,)`` the centring constant used for the values.
        noise_var: The observation-noise variance ``s² > 0``.

    Returns:
        ``mean`` and ``var``, each ``(B, K)``: ``mean = offset + Σ w (f − offset)`` and
        ``var = s² + Σ w (f − offset)² − (Σ w (f − offset))²`` (the spread term clamped at 0
        against rounding).
    """
    k = aggregated.shape[-1] // 2
    first, second = aggregated[..., :k], aggregated[..., k:]
    spread = (second - first.square()).clamp_min(0.0)
    return first + offset.to(first.dtype), spread + noise_var


def reactive_gaussian_log_prob(
    queries: Tensor,
    targets: Tensor,
    keys: Tensor,
    means: Tensor,
    *,
    sigma: float,
    noise_var: float,
    mode: AggregationMode | str = AggregationMode.ONLINE,
    key_sq_norms: Tensor | None = None,
    chunk_size: int | None = None,
    backend: Backend | str = Backend.AUTO,
) -> Tensor:
    """Log-density of targets under the regression reactive PPD (paper, eqs. 4 and 5).

    With ``s_bmi = −‖x'_b − μ_mi‖² / (2σ²)`` and ``ℓ_bmi = log N(y_b; f_mi, s² I)``:

    * online: ``log p(y_b | x'_b) = logsumexp_{m,i}(s_bmi + ℓ_bmi) − logsumexp_{m,i}(s_bmi)``;
    * offline: ``log p(y_b | x'_b) = logsumexp_m [logsumexp_i(s_bmi + ℓ_bmi) −
      logsumexp_i(s_bmi)] − log M``.

    The ``y``-dependent part is folded into the streaming aggregation by appending ``y`` and
    ``f_mi`` (scaled by ``σ / s``) to queries and keys, one draw at a time: ``M + 1`` passes
    over ``N`` keys with shared keys, ``2M`` with per-draw keys, and a temporary
    ``(N, D + K)`` copy of one draw's keys. Differentiable with respect to ``queries`` and
    ``targets``.

    Args:
        queries: ``(B, D)`` test inputs ``x'`` (flattened).
        targets: ``(B, K)`` (or ``(B,)`` when ``K = 1``) regression targets ``y``.
        keys: ``(N, D)`` keys shared by every draw, or ``(M, N, D)`` per-draw keys ``μ_mi``.
        means: ``(M, N, K)`` per-draw means ``f_mi``.
        sigma: Channel standard deviation ``σ > 0``.
        noise_var: Observation-noise variance ``s² > 0``.
        mode: ``"online"`` (eq. 4) or ``"offline"`` (eq. 5).
        key_sq_norms: Cached ``‖μ_mi‖²``, ``(N,)`` or ``(M, N)``; computed when ``None``.
        chunk_size: Keys per chunk of the PyTorch back end (see :func:`reactive_aggregate`).
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        ``(B,)`` log-densities (nats), float64 for float64 inputs, else float32.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If shapes disagree, ``sigma <= 0`` or ``noise_var <= 0``, or for any
            error of :func:`reactive_aggregate`.

    Shape:
        - queries: ``(B, D)``; targets: ``(B, K)`` or ``(B,)``; keys: ``(N, D)`` or
          ``(M, N, D)``; means: ``(M, N, K)``; output: ``(B,)``.

    Examples:
        >>> keys, means = torch.rand(50, 4), torch.randn(3, 50, 1)  # shared keys, M = 3
        >>> lp = reactive_gaussian_log_prob(
        ...     torch.rand(2, 4), torch.zeros(2), keys, means, sigma=0.5, noise_var=0.1
        ... )
        >>> lp.shape
        torch.Size([2])
    """
    mode = coerce_option(AggregationMode, mode, "mode")
    coerce_option(Backend, backend, "backend")
    _inverse_variance(sigma)
    noise_var = _check_noise_var(noise_var)
    for name, x in (("queries", queries), ("targets", targets), ("keys", keys), ("means", means)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got {_describe(x)}")
    if means.dim() != 3:
        raise ValueError(f"means must have shape (M, N, K); got {tuple(means.shape)}")
    num_draws, num_keys, num_out = means.shape
    if keys.dim() == 3 and keys.shape[:2] != means.shape[:2]:
        raise ValueError(
            f"per-draw keys {tuple(keys.shape)} and means {tuple(means.shape)} must agree on (M, N)"
        )
    if keys.dim() in (2, 3) and keys.shape[-2] != num_keys:
        raise ValueError(
            f"keys {tuple(keys.shape)} and means {tuple(means.shape)} must have the same N"
        )
    if queries.dim() != 2:
        raise ValueError(f"queries must have shape (B, D); got {tuple(queries.shape)}")
    if targets.dim() == 1 and num_out == 1:
        targets = targets.unsqueeze(1)
    if targets.shape != (queries.shape[0], num_out):
        raise ValueError(
            f"targets must have shape ({queries.shape[0]}, {num_out}) (or ({queries.shape[0]},) "
            f"when K = 1); got {tuple(targets.shape)}"
        )
    if targets.device != queries.device or means.device != queries.device:
        raise ValueError("queries, targets and means must be on the same device")

    common = {"sigma": sigma, "chunk_size": chunk_size, "backend": backend}
    ones = means.new_ones(num_keys, 1)
    # Plain per-draw log normalisers logsumexp_i(s_bmi) (also validates keys and queries).
    plain_values = ones if keys.dim() == 2 else ones.expand(num_draws, num_keys, 1)
    plain = reactive_aggregate(
        queries, keys, plain_values, key_sq_norms=key_sq_norms, **common
    ).log_normalizer  # (B, M) or (B, 1)
    dtype = plain.dtype
    if key_sq_norms is None:
        key_sq_norms = squared_norms(keys)

    scale = math.sqrt(float(sigma) ** 2 / noise_var)  # σ / s
    offset = means.detach().mean(dim=(0, 1), dtype=dtype)  # centring, for precision
    query_aug = torch.cat((queries.to(dtype), (targets.to(dtype) - offset) * scale), dim=1)
    augmented = []
    for m in range(num_draws):
        key_m = keys if keys.dim() == 2 else keys[m]
        norm_m = key_sq_norms if keys.dim() == 2 else key_sq_norms[m]
        extra = (means[m].to(dtype) - offset) * scale  # (N, K)
        key_aug = torch.cat((key_m.to(dtype), extra), dim=1)
        norm_aug = norm_m.to(dtype) + torch.linalg.vecdot(extra, extra)
        res = reactive_aggregate(query_aug, key_aug, ones, key_sq_norms=norm_aug, **common)
        augmented.append(res.log_normalizer[:, 0])
        del key_aug
    aug = torch.stack(augmented, dim=1)  # (B, M): logsumexp_i(s_bmi − (y − f_mi)² / 2s²)
    log_const = -0.5 * num_out * math.log(2.0 * math.pi * noise_var)
    if mode is AggregationMode.ONLINE:
        log_p = torch.logsumexp(aug, dim=1) - torch.logsumexp(plain.expand_as(aug), dim=1)
    else:
        log_p = torch.logsumexp(aug - plain, dim=1) - math.log(num_draws)
    return log_p + log_const


def _check_noise_var(noise_var: object) -> float:
    if isinstance(noise_var, Tensor):
        if noise_var.numel() != 1:
            raise ValueError(f"noise_var must be a scalar; got {_describe(noise_var)}")
        noise_var = noise_var.item()
    if isinstance(noise_var, bool) or not isinstance(noise_var, int | float):
        raise TypeError(f"noise_var must be a float; got {_describe(noise_var)}")
    if not (math.isfinite(noise_var) and noise_var > 0):
        raise ValueError(f"noise_var must be a positive finite number; got {noise_var!r}")
    return float(noise_var)
