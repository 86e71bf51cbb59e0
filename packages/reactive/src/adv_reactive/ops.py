"""The reactive aggregation: channel-density-weighted averages of per-draw predictions.

Eqs. 4 and 5 of the paper (Section 3.2): at test time the clean input behind ``x'`` is inferred
by weighting the training inputs with the channel density ``k_mi(x') = N(x'; μ_mi, σ² I)``.
In attention terms, queries are the test inputs ``x'_b``, keys the channel means ``μ_mi``
and values the per-draw predictions ``P_mi``; the scores are an RBF kernel,

``s_bmi = −‖x'_b − μ_mi‖² / (2σ²)``

(the Gaussian normaliser is the same for every key and cancels). This module holds the
public function :func:`reactive_aggregate` and its launcher, which picks one of two back
ends that stream over keys with a running log-sum-exp:

* PyTorch (:mod:`adv_reactive._reference`): any device, chunks of ``chunk_size`` keys.
* A fused Triton kernel (:mod:`adv_reactive._kernels`): CUDA (or ``TRITON_INTERPRET=1``).

Both are differentiable with respect to the queries (the backward pass recomputes the scores
chunk by chunk in PyTorch), so adaptive attacks can target the defended predictor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from adv_reactive import _reference
from adv_reactive._triton import interpreting, kernel_can_run, triton
from adv_reactive.offset_keys import OffsetKeys
from adv_reactive.options import AggregationMode, Backend, coerce_option

__all__ = ["ReactiveAggregate", "reactive_aggregate", "squared_norms"]

_CPU_CHUNK = 1024
_CUDA_CHUNK = 65536


class ReactiveAggregate(NamedTuple):
    """What :func:`reactive_aggregate` returns, per query.

    Attributes:
        output: ``(B, C)``: the reactive average of the values (for class probabilities, the
            reactive PPD ``p(y | x')``).
        log_normalizer: ``(B, M)``: per posterior draw ``m``, ``log Σ_i exp(s_bmi)`` with
            ``s_bmi = −‖x'_b − μ_mi‖² / (2σ²)``. Add ``−log N − (D/2) log(2πσ²)`` for the log
            marginal channel likelihood ``log L_m``; the online draw weights are
            ``softmax_m(log_normalizer)``. With shared keys every column is the same, and
            ``M`` is 1 when ``values`` was given as ``(N, C)``.
        ess: ``(B,)``: effective sample size ``1 / Σ w²`` of the normalised weights. Online:
            over all weighted keys (``N`` shared keys, or ``M·N`` per-draw keys); offline:
            the mean over draws of each draw's ESS over its ``N`` keys. Not differentiable.
        top_k_indices: ``(B, k)`` int64 indices of the training inputs with the largest
            posterior weight ``p(x = x_i | x')`` (the weight of input ``i`` summed over
            draws), sorted by decreasing weight; ``None`` when ``top_k == 0``.
        top_k_weights: ``(B, k)``: those posterior weights; ``None`` when ``top_k == 0``.
    """

    output: Tensor
    log_normalizer: Tensor
    ess: Tensor
    top_k_indices: Tensor | None
    top_k_weights: Tensor | None


def squared_norms(keys: Tensor | OffsetKeys, *, dtype: torch.dtype | None = None) -> Tensor:
    """Squared L2 norms over the last dimension, to cache with the keys.

    Args:
        keys: ``(..., D)`` keys, e.g. ``(N, D)`` or ``(M, N, D)``; or
            :class:`~adv_reactive.OffsetKeys`, whose keys ``base + offsets`` are summed in
            the compute dtype (float32, or float64 with a float64 base) block by block.
        dtype: ``torch.float32`` or ``torch.float64`` to accumulate in (e.g. float64 for
            float32 keys that float64 queries will meet); default: float32 for
            half-precision keys, else the keys' dtype (an ``OffsetKeys``: its base's).

    Returns:
        ``(...)`` tensor of ``‖k‖²`` in that dtype.

    Examples:
        >>> squared_norms(torch.tensor([[3.0, 4.0]]))
        tensor([25.])
    """
    if dtype not in (None, torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32, torch.float64 or None; got {dtype}")
    if isinstance(keys, OffsetKeys):
        _check_offset_keys(keys)
        if dtype is None:
            dtype = torch.float64 if keys.base.dtype == torch.float64 else torch.float32
        num_draws, num_keys, dim = keys.offsets.shape
        out = torch.empty(num_draws, num_keys, dtype=dtype, device=keys.base.device)
        for m in range(num_draws):
            _blocked_sq_norms(out[m], dim, lambda a, b, m=m: keys.chunk(m, a, b, dtype))
        return out
    if not isinstance(keys, Tensor) or not keys.is_floating_point():
        raise TypeError(f"keys must be a floating-point tensor; got {_describe(keys)}")
    if dtype is None:
        dtype = keys.dtype if keys.dtype in (torch.float32, torch.float64) else torch.float32
    flat = keys.reshape(-1, keys.shape[-1]) if keys.dim() > 0 else keys.reshape(1, 1)
    out = torch.empty(flat.shape[0], dtype=dtype, device=keys.device)
    _blocked_sq_norms(out, flat.shape[1], lambda a, b: flat[a:b].to(dtype))
    return out.reshape(keys.shape[:-1])


def _blocked_sq_norms(out: Tensor, dim: int, rows: Callable[[int, int], Tensor]) -> None:
    """``out[i] = ‖rows(i, i + 1)‖²`` computed block by block (``rows(a, b)``: ``(b − a, D)``).

    Bounded temporaries (vecdot materialises the products; half-precision keys are cast):
    about 2^22 elements per block, 16 MB in float32.
    """
    step = max(1, (1 << 22) // max(1, dim))
    for start in range(0, out.shape[0], step):
        block = rows(start, start + step)
        out[start : start + step] = torch.linalg.vecdot(block, block)


def _check_offset_keys(keys: OffsetKeys) -> None:
    """Types, shapes and devices of an ``OffsetKeys``."""
    for name, x in (("keys.base", keys.base), ("keys.offsets", keys.offsets)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got {_describe(x)}")
    if keys.base.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"keys.base must be float32 or float64; got {keys.base.dtype}")
    if keys.base.dim() != 2 or keys.offsets.dim() != 3:
        raise ValueError(
            f"OffsetKeys needs base (N, D) and offsets (M, N, D); got base "
            f"{tuple(keys.base.shape)} and offsets {tuple(keys.offsets.shape)}"
        )
    if keys.offsets.shape[1:] != keys.base.shape:
        raise ValueError(
            f"keys.offsets {tuple(keys.offsets.shape)} must be (M, N, D) with (N, D) = "
            f"{tuple(keys.base.shape)} as in keys.base"
        )
    if keys.offsets.device != keys.base.device:
        raise ValueError(
            f"keys.offsets is on {keys.offsets.device} but keys.base is on {keys.base.device}"
        )


def reactive_aggregate(
    queries: Tensor,
    keys: Tensor | OffsetKeys,
    values: Tensor,
    *,
    sigma: float,
    mode: AggregationMode | str = AggregationMode.ONLINE,
    key_sq_norms: Tensor | None = None,
    top_k: int = 0,
    chunk_size: int | None = None,
    backend: Backend | str = Backend.AUTO,
    simulations: int = 1,
) -> ReactiveAggregate:
    """Online (eq. 4) or offline (eq. 5) reactive average of per-draw values (paper, Section 3.2).

    With weights ``k_bmi = exp(s_bmi)``, ``s_bmi = −‖q_b − k_mi‖² / (2σ²)``:

    * online: ``out_b = Σ_{m,i} k_bmi v_mi / Σ_{m,i} k_bmi`` (one softmax over ``M·N``);
    * offline: ``out_b = (1/M) Σ_m Σ_i w_bmi v_mi``, ``w_bmi = k_bmi / Σ_j k_bmj``.

    With keys shared by every draw (identity channel, ``μ_mi = x_i``) both equal a single
    softmax over the ``N`` keys applied to ``v̄_i = mean_m v_mi``, which is what is computed.
    Everything is in log space with a streaming log-sum-exp over key chunks (extreme ``σ``
    is fine), memory stays ``O(B × chunk)`` beyond the inputs, and the result is
    differentiable with respect to ``queries`` (not ``keys`` or ``values``).

    Precision: squared distances come from ``‖q‖² + ‖k‖² − 2 q·k``, whose absolute error is
    about ``ε·‖q‖·‖k‖`` (``ε`` the dtype's precision): use float64 when ``σ²`` is not large
    against that. On CUDA the kernel computes float32 dot products as 3×TF32 (about float32
    accuracy); float16/bfloat16 keys make them run in that dtype.

    Args:
        queries: ``(B, D)`` test inputs ``x'`` (flattened).
        keys: ``(N, D)`` keys shared by every draw, or ``(M, N, D)`` per-draw keys ``μ_mi``,
            or :class:`~adv_reactive.OffsetKeys` ``(base (N, D), offsets (M, N, D))``
            standing for per-draw keys ``base + offsets`` (bfloat16 offsets: faster products
            within a stated error; PyTorch back end only).
        values: ``(M, N, C)`` per-draw values ``P_mi`` (class probabilities; for regression
            e.g. ``[f, f²]``), or ``(N, C)`` with shared keys (already averaged over draws).
        sigma: Channel standard deviation ``σ > 0`` (same units as the inputs).
        mode: ``"online"`` (eq. 4) or ``"offline"`` (eq. 5); see :class:`AggregationMode`.
        key_sq_norms: Cached ``‖k‖²`` of shape ``(N,)`` or ``(M, N)`` (see
            :func:`squared_norms`); computed when ``None``. Must match ``keys``.
        top_k: Also return the ``top_k`` training inputs with the largest posterior weight
            (``0``: none). Costs one more pass over the keys in PyTorch.
        chunk_size: Keys per chunk of the PyTorch path (default 1024 on the CPU, 65536 on
            CUDA).
        backend: ``"auto"``, ``"torch"`` or ``"triton"``; see :class:`Backend`.
        simulations: ``S >= 1`` keys per (draw, training input) pair, the likelihood-free
            (ABC) form of eqs. 4 and 5 (docs/theory.md): ``k_bmi = (1/S) Σ_s exp(s_bmsi)``.
            Keys are then ``(M·S, N, D)`` (group ``m·S + s`` holds the ``s``-th simulation
            of every input under draw ``m``; values stay ``(M, N, C)``) or, shared by every
            draw, ``(S, N, D)`` (values ``(N, C)`` or ``(M, N, C)``, averaged); an
            ``OffsetKeys`` has offsets of those shapes. ``sigma`` is then the kernel
            bandwidth ``h``. ``log_normalizer`` includes the ``−log S``.

    Returns:
        A :class:`ReactiveAggregate` (``output`` ``(B, C)``, ``log_normalizer`` ``(B, M)``,
        ``ess`` ``(B,)``, optional top-k), in float64 for float64 inputs, else float32.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``sigma <= 0``, shapes or devices disagree, the key set is empty, an
            input holds NaN or infinity, ``backend="triton"`` cannot run here (or is asked
            for with ``OffsetKeys``), or gradients are requested for ``keys`` or ``values``.

    Shape:
        - queries: ``(B, D)``; keys: ``(N, D)`` or ``(M, N, D)``; values: ``(N, C)`` or
          ``(M, N, C)``.
        - output: ``(B, C)``; log_normalizer: ``(B, M)``; ess: ``(B,)``; top-k: ``(B, k)``.

    Examples:
        >>> x_train = torch.rand(100, 784)
        >>> probs = torch.softmax(torch.randn(10, 100, 3), dim=-1)  # (M, N, C)
        >>> res = reactive_aggregate(torch.rand(4, 784), x_train, probs, sigma=1.0, top_k=2)
        >>> res.output.shape, res.log_normalizer.shape, res.top_k_indices.shape
        (torch.Size([4, 3]), torch.Size([4, 10]), torch.Size([4, 2]))
    """
    mode = coerce_option(AggregationMode, mode, "mode")
    backend = coerce_option(Backend, backend, "backend")
    inv_var = _inverse_variance(sigma)
    offset_keys = isinstance(keys, OffsetKeys)
    if offset_keys:
        _check_offset_keys(keys)
        if backend is Backend.TRITON:
            raise ValueError(
                "OffsetKeys run on the PyTorch back end only: use backend='torch' or 'auto', "
                "or pass the full keys (keys.materialize())"
            )
    num_sims = _check_int(simulations, "simulations", low=1)
    raw_keys = keys.offsets if isinstance(keys, OffsetKeys) else keys
    stacked_shared = (  # (1, N, D) keys with (N, C) values: one simulation shared by the draws
        isinstance(raw_keys, Tensor)
        and raw_keys.dim() == 3
        and raw_keys.shape[0] == 1
        and isinstance(values, Tensor)
        and values.dim() == 2
    )
    if num_sims > 1 or stacked_shared:
        shared, num_draws = _check_simulation_shapes(queries, keys, values, key_sq_norms, num_sims)
    else:
        shared, num_draws = _check_shapes(queries, keys, values, key_sq_norms)
    _check_devices_and_grads(queries, keys, values, key_sq_norms)
    top_k = _check_int(top_k, "top_k", low=0, high=keys.shape[-2])
    if chunk_size is None:
        chunk_size = _CUDA_CHUNK if queries.is_cuda else _CPU_CHUNK
    chunk_size = _check_int(chunk_size, "chunk_size", low=1)
    use_triton = not offset_keys and _use_triton(backend, queries.device)

    key_dtype = keys.base.dtype if isinstance(keys, OffsetKeys) else keys.dtype
    dtype = torch.float64 if torch.float64 in (queries.dtype, key_dtype) else torch.float32
    q = queries.to(dtype)
    norms_given = key_sq_norms is not None
    if key_sq_norms is None:
        key_sq_norms = squared_norms(keys, dtype=dtype)  # float64 queries: float64 norms
    if dtype == torch.float32 and inv_var > torch.finfo(torch.float32).max:
        raise ValueError(
            f"sigma={sigma!r} is too small for float32 (1/sigma**2 overflows it): pass "
            "float64 queries or keys, or use a larger sigma"
        )
    _check_finite(
        queries=queries,
        values=values,
        **{"key_sq_norms" if norms_given else "keys": key_sq_norms},
    )
    keys3: Tensor | OffsetKeys
    grouped = len(keys.shape) == 3 and (shared or num_sims > 1)  # simulations: (G, N, D)
    if shared and not grouped:
        assert isinstance(keys, Tensor)
        keys3 = keys.unsqueeze(0)
        norms2 = key_sq_norms.reshape(1, -1)
        values3 = (values.mean(dim=0, dtype=dtype) if values.dim() == 3 else values).unsqueeze(0)
    elif grouped:
        keys3, norms2, values3 = _simulation_groups(keys, key_sq_norms, values, num_sims, shared)
    else:
        keys3, norms2, values3 = keys, key_sq_norms, values

    lse, out, sumsq = _GroupStats.apply(q, keys3, norms2, values3, inv_var, chunk_size, use_triton)
    if not bool(torch.isfinite(lse).all() & torch.isfinite(out).all()):  # one device sync
        raise ValueError(
            "the aggregation produced non-finite values: either the scaled squared distances "
            f"‖x' − μ‖²/σ² overflow {dtype} at sigma={sigma!r} (use float64 inputs or a "
            "larger sigma), or the keys hold NaN/infinity or do not match key_sq_norms"
        )
    if grouped and isinstance(keys3, OffsetKeys):  # one group per (draw, simulation)
        lse, out, sumsq = _merge_simulations(lse, out, sumsq, num_sims)
    elif grouped:  # one group per draw over its S·N simulations: k_mi = (1/S) Σ_s K
        lse = lse - math.log(num_sims)

    if shared:
        output, ess = out[:, 0], 1.0 / sumsq[:, 0]
        log_normalizer = lse.expand(-1, num_draws).clone()
        offsets = lse
    elif mode is AggregationMode.ONLINE:
        draw_weights = torch.softmax(lse, dim=1)
        output = torch.einsum("bm,bmc->bc", draw_weights, out)
        ess = 1.0 / (draw_weights.detach().square() * sumsq).sum(dim=1)
        log_normalizer = lse
        offsets = torch.logsumexp(lse.detach(), dim=1, keepdim=True).expand(-1, num_draws)
    else:
        output = out.mean(dim=1)
        ess = (1.0 / sumsq).mean(dim=1)
        log_normalizer = lse
        offsets = lse.detach() + math.log(num_draws)

    top_idx = top_w = None
    if top_k > 0 and grouped:
        # Top-k sums the weights of an input over groups: one group per (draw m, simulation
        # s), normalised by the draw's offset, which (``lse`` holding the −log S) gets + log S.
        keys3 = keys
        norms2 = key_sq_norms
        offsets = (offsets + math.log(num_sims)).repeat_interleave(num_sims, dim=1)
    if top_k > 0:
        with torch.no_grad():
            top_idx, top_w = _reference.top_k_inputs(
                q.detach(), keys3, norms2, inv_var, offsets.detach(), top_k, chunk_size
            )
    return ReactiveAggregate(output, log_normalizer, ess, top_idx, top_w)


def _simulation_groups(
    keys: Tensor | OffsetKeys, norms: Tensor, values: Tensor, num_sims: int, shared: bool
) -> tuple[Tensor | OffsetKeys, Tensor, Tensor]:
    """Keys, norms and values for the group statistics of ``S`` simulations per pair.

    Plain keys ``(M·S, N, D)`` are viewed as ``(M, S·N, D)``: one group per draw over its
    ``S·N`` simulations (``values`` repeated ``S`` times along ``N``), so the streaming
    log-sum-exp sums over ``s`` and ``i`` at once. ``OffsetKeys`` (their base is ``(N, D)``)
    keep one group per (draw, simulation), merged afterwards by :func:`_merge_simulations`.
    """
    groups, num, dim = keys.shape
    per_draw = values.mean(dim=0, keepdim=True, dtype=values.dtype) if shared else values
    if values.dim() == 2:
        per_draw = values.unsqueeze(0)
    if isinstance(keys, OffsetKeys):
        if shared:
            return keys, norms, per_draw.expand(num_sims, *per_draw.shape[1:])
        return keys, norms, per_draw.repeat_interleave(num_sims, dim=0)
    draws = groups // num_sims
    return (
        keys.reshape(draws, num_sims * num, dim),
        norms.reshape(draws, num_sims * num),
        per_draw.repeat(1, num_sims, 1),
    )


def _merge_simulations(
    lse: Tensor, out: Tensor, sumsq: Tensor, num_sims: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group stats ``(B, M·S)`` -> per-draw stats ``(B, M)`` of ``k = (1/S) Σ_s k_s``.

    ``lse_m = logsumexp_s lse_ms − log S``; the draw's normalised average is the average of
    its groups' weighted by ``softmax_s lse_ms``, and so is its sum of squared weights (with
    the squared group weights).
    """
    batch, groups = lse.shape
    lse3 = lse.reshape(batch, groups // num_sims, num_sims)
    merged = torch.logsumexp(lse3, dim=2)
    share = torch.softmax(lse3, dim=2)
    out3 = out.reshape(batch, groups // num_sims, num_sims, -1)
    out_m = torch.einsum("bms,bmsc->bmc", share, out3)
    sumsq_m = (share.square() * sumsq.reshape(lse3.shape)).sum(dim=2)
    return merged - math.log(num_sims), out_m, sumsq_m


def _check_simulation_shapes(
    queries: object, keys: object, values: object, key_sq_norms: object, num_sims: int
) -> tuple[bool, int]:
    """Shapes with ``S > 1`` simulations per pair; return (shared, number of draws M)."""
    raw = keys.offsets if isinstance(keys, OffsetKeys) else keys
    if isinstance(raw, Tensor) and raw.dim() != 3:
        raise ValueError(
            f"with simulations={num_sims}, keys must have shape (M·S, N, D) (per draw) or "
            f"(S, N, D) (shared); got {tuple(raw.shape)}"
        )
    # Validate as per-group keys (G, N, D) with per-group values, then check the grouping.
    _check_shapes(queries, keys, _values_like(values, raw), key_sq_norms)
    assert isinstance(raw, Tensor) and isinstance(values, Tensor)
    groups = raw.shape[0]
    if groups % num_sims:
        raise ValueError(
            f"keys has {groups} groups, not a multiple of simulations={num_sims} (expected "
            "(M·S, N, D) or (S, N, D))"
        )
    if values.dim() == 3 and values.shape[0] * num_sims == groups:
        return False, values.shape[0]
    if groups == num_sims:
        return True, values.shape[0] if values.dim() == 3 else 1
    raise ValueError(
        f"values must have shape (M, N, C) with M·S = {groups} (or keys (S, N, D) shared by "
        f"every draw) with simulations={num_sims}: values {tuple(values.shape)} do not match "
        f"keys {tuple(raw.shape)}"
    )


def _values_like(values: object, keys: object) -> object:
    """A stand-in ``(G, N, C)`` for the shape check of per-group values (a view, no copy)."""
    if not isinstance(values, Tensor) or not isinstance(keys, Tensor) or values.dim() < 2:
        return values
    return (
        values[:1].expand(keys.shape[0], *values.shape[-2:])
        if values.dim() == 3
        else (values.unsqueeze(0).expand(keys.shape[0], *values.shape))
    )


class _GroupStats(torch.autograd.Function):
    """Per-group ``(lse, out, sumsq)`` from either back end; backward in chunked PyTorch."""

    @staticmethod
    def forward(
        ctx: Any,
        queries: Tensor,
        keys: Tensor | OffsetKeys,
        key_sq_norms: Tensor,
        values: Tensor,
        inv_var: float,
        chunk_size: int,
        use_triton: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        if use_triton:
            lse, out, sumsq = triton_group_stats(queries, keys, key_sq_norms, values, inv_var)
        else:
            lse, out, sumsq = _reference.group_stats(
                queries, keys, key_sq_norms, values, inv_var, chunk_size
            )
        # An OffsetKeys is saved as its two tensors and put together again in backward.
        ctx.offset_keys = isinstance(keys, OffsetKeys)
        key_tensors = tuple(keys) if isinstance(keys, OffsetKeys) else (keys,)
        ctx.save_for_backward(queries, key_sq_norms, values, lse, out, *key_tensors)
        ctx.inv_var = inv_var
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(sumsq)
        return lse, out, sumsq

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_lse: Tensor | None, grad_out: Tensor | None, _grad_sumsq: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        queries, key_sq_norms, values, lse, out, *key_tensors = ctx.saved_tensors
        keys = OffsetKeys(*key_tensors) if ctx.offset_keys else key_tensors[0]
        grad_q = None
        if ctx.needs_input_grad[0]:
            grad_q = _reference.group_stats_backward(
                queries,
                keys,
                key_sq_norms,
                values,
                ctx.inv_var,
                ctx.chunk_size,
                lse,
                out,
                grad_lse,
                grad_out,
            )
        return grad_q, None, None, None, None, None, None


def triton_group_stats(
    queries: Tensor,
    keys: Tensor,
    key_sq_norms: Tensor,
    values: Tensor,
    inv_var: float,
    *,
    num_splits: int | None = None,
    precision: str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the fused kernel and merge its key splits: same contract as the PyTorch path.

    Args:
        queries: ``(B, D)`` float32 or float64.
        keys: ``(G, N, D)``; float16/bfloat16 keys make the dot products run in that dtype
            (float32 accumulation).
        key_sq_norms: ``(G, N)``.
        values: ``(G, N, C)``.
        inv_var: ``1 / σ²``.
        num_splits: Key splits per group (parallelism over keys); chosen from the device
            when ``None``.
        precision: ``tl.dot``'s ``input_precision`` for float32 inputs: ``"tf32x3"`` (the
            default on CUDA: tensor cores, about float32 accuracy), ``"ieee"`` (the default
            under the interpreter) or ``"tf32"`` (fastest, about 1e-3 relative error).

    Returns:
        ``lse (B, G)``, ``out (B, G, C)``, ``sumsq (B, G)`` in the queries' dtype.
    """
    from adv_reactive import _kernels  # decorated at first use: honours TRITON_INTERPRET

    tl = triton.language
    num_q, dim = queries.shape
    num_groups, num_keys, _ = keys.shape
    num_values = values.shape[-1]
    device = queries.device
    if queries.dtype == torch.float64:
        acc_dtype, dot_dtype, q = tl.float64, tl.float64, queries
    elif keys.dtype in (torch.float16, torch.bfloat16):
        acc_dtype, q = tl.float32, queries.to(keys.dtype)
        dot_dtype = tl.float16 if keys.dtype == torch.float16 else tl.bfloat16
    else:
        acc_dtype, dot_dtype, q = tl.float32, tl.float32, queries
    q = q.contiguous()
    if dot_dtype != tl.float32:
        precision = "ieee"  # only float32 operands have a choice
    elif precision is None:
        precision = "tf32x3" if device.type == "cuda" and not interpreting() else "ieee"
    out_dtype = torch.float64 if acc_dtype == tl.float64 else torch.float32

    multiple = _kernels.BLOCK_N_MULTIPLE
    if num_splits is None:
        num_splits = _default_splits(num_q, num_groups, num_keys, device)
    split_len = _ceil_div(_ceil_div(num_keys, max(1, num_splits)), multiple) * multiple
    num_splits = _ceil_div(num_keys, split_len)  # no empty split

    lse_part = torch.empty(num_q, num_groups, num_splits, dtype=out_dtype, device=device)
    sq_part = torch.empty_like(lse_part)
    out_part = torch.empty(
        num_q, num_groups, num_splits, num_values, dtype=out_dtype, device=device
    )
    scale = torch.tensor([inv_var / math.log(2.0)], dtype=out_dtype, device=device)

    def grid(meta: dict[str, Any]) -> tuple[int, int, int]:
        return (triton.cdiv(num_q, meta["BLOCK_B"]), num_groups, num_splits)

    _kernels.group_stats_kernel[grid](
        q,
        keys,
        key_sq_norms,
        values,
        lse_part,
        out_part,
        sq_part,
        num_q,
        num_keys,
        dim,
        num_values,
        split_len,
        scale,
        *q.stride(),
        *keys.stride(),
        *key_sq_norms.stride(),
        *values.stride(),
        *lse_part.stride(),
        *out_part.stride(),
        BLOCK_C=max(16, triton.next_power_of_2(num_values)),
        DOT_DTYPE=dot_dtype,
        DOT_PRECISION=precision,
        ACC_DTYPE=acc_dtype,
    )
    # Merge the splits: a log-sum-exp of log-sum-exps.
    lse = torch.logsumexp(lse_part, dim=2)
    split_w = torch.exp(lse_part - lse[..., None])
    out = torch.einsum("bgs,bgsc->bgc", split_w, out_part)
    sumsq = (split_w.square() * sq_part).sum(dim=2)
    lse = lse - (0.5 * inv_var) * torch.linalg.vecdot(queries, queries)[:, None]
    dtype = queries.dtype
    return lse.to(dtype), out.to(dtype), sumsq.to(dtype)


def _default_splits(num_q: int, num_groups: int, num_keys: int, device: torch.device) -> int:
    """Enough key splits to fill the device, each of at least 1024 keys."""
    if device.type != "cuda":
        return 1
    programs = _ceil_div(num_q, 64) * num_groups
    target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(_ceil_div(target, programs), num_keys // 1024))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _use_triton(backend: Backend, device: torch.device) -> bool:
    if backend is Backend.TORCH:
        return False
    can_run = kernel_can_run(device)
    if backend is Backend.TRITON and not can_run:
        raise ValueError(
            "backend='triton' needs Triton and CUDA tensors (or TRITON_INTERPRET=1); got "
            f"tensors on {device}. Use backend='torch' or 'auto'."
        )
    return can_run


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)} on {x.device}"
    return f"{type(x).__name__} {x!r}"


def _inverse_variance(sigma: object) -> float:
    if isinstance(sigma, Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma must be a scalar; got {_describe(sigma)}")
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, int | float):
        raise TypeError(f"sigma must be a float; got {_describe(sigma)}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number; got {sigma!r}")
    variance = float(sigma) * float(sigma)
    if variance == 0.0 or not math.isfinite(1.0 / variance):
        raise ValueError(f"sigma is too small: 1/sigma**2 overflows; got {sigma!r}")
    return 1.0 / variance


def _check_int(value: object, name: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {_describe(value)}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def _check_shapes(
    queries: object, keys: object, values: object, key_sq_norms: object
) -> tuple[bool, int]:
    """Validate the shapes; return (keys are shared, number of draws M)."""
    if isinstance(keys, OffsetKeys):  # checked already; its offsets have the keys' shape
        keys = keys.offsets
    for name, x in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {_describe(x)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got {_describe(x)}")
    assert isinstance(queries, Tensor) and isinstance(keys, Tensor)
    assert isinstance(values, Tensor)
    if queries.dim() != 2:
        raise ValueError(f"queries must have shape (B, D); got {tuple(queries.shape)}")
    if keys.dim() not in (2, 3):
        raise ValueError(
            f"keys must have shape (N, D) (shared) or (M, N, D) (per draw); got {tuple(keys.shape)}"
        )
    shared = keys.dim() == 2
    num_keys, dim = keys.shape[-2], keys.shape[-1]
    if num_keys == 0:
        raise ValueError("keys is empty (N = 0): the reactive average needs training inputs")
    if dim != queries.shape[1]:
        raise ValueError(
            f"queries and keys must have the same feature dimension D; got queries "
            f"{tuple(queries.shape)} and keys {tuple(keys.shape)}"
        )
    if shared:
        ok = values.dim() in (2, 3) and values.shape[-2] == num_keys
        expected = f"(N, C) or (M, N, C) with N = {num_keys}"
    else:
        ok = values.dim() == 3 and values.shape[:2] == keys.shape[:2]
        expected = f"(M, N, C) with (M, N) = {tuple(keys.shape[:2])} as in keys"
    if not ok or values.shape[-1] == 0:
        raise ValueError(f"values must have shape {expected}, C >= 1; got {tuple(values.shape)}")
    if key_sq_norms is not None:
        if not isinstance(key_sq_norms, Tensor) or not key_sq_norms.is_floating_point():
            raise TypeError(
                f"key_sq_norms must be a floating-point tensor; got {_describe(key_sq_norms)}"
            )
        if key_sq_norms.shape != keys.shape[:-1]:
            raise ValueError(
                f"key_sq_norms must have shape {tuple(keys.shape[:-1])} (keys without D); got "
                f"{tuple(key_sq_norms.shape)}"
            )
    num_draws = values.shape[0] if values.dim() == 3 else 1
    if num_draws == 0:
        raise ValueError("values has no posterior draws (M = 0)")
    return shared, num_draws


def _check_devices_and_grads(
    queries: Tensor, keys: Tensor | OffsetKeys, values: Tensor, key_sq_norms: Tensor | None
) -> None:
    named: dict[str, Tensor | None] = (
        {"keys.base": keys.base, "keys.offsets": keys.offsets}
        if isinstance(keys, OffsetKeys)
        else {"keys": keys}
    )
    named.update(values=values, key_sq_norms=key_sq_norms)
    for name, x in named.items():
        if x is not None and x.device != queries.device:
            raise ValueError(
                f"{name} is on {x.device} but queries is on {queries.device}: move them to "
                "the same device"
            )
    if torch.is_grad_enabled():
        for name, x in named.items():
            if x is not None and x.requires_grad:
                raise ValueError(
                    f"{name} requires grad, but gradients flow to queries only: pass "
                    f"{name}.detach()"
                )


def _check_finite(**tensors: Tensor) -> None:
    """One reduction per tensor and one device sync for all (keys are checked via their norms).

    ``max |x|`` is NaN or infinite exactly when ``x`` holds a NaN or an infinity.
    """
    named = {name: x for name, x in tensors.items() if x.numel() > 0}
    if not named:
        return
    peaks = [torch.linalg.vector_norm(x, ord=math.inf).double() for x in named.values()]
    flags = torch.isfinite(torch.stack(peaks)).tolist()
    for name, ok in zip(named, flags, strict=True):
        if not ok:
            raise ValueError(f"{name} holds NaN or infinite values")
