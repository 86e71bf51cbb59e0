"""Private Triton kernel: fused, streaming RBF-attention statistics (flash-attention style).

One program handles a block of queries, one key group (a posterior draw, or the shared keys)
and one contiguous split of the keys. It makes a single pass over its key blocks, computing
the scores with the GEMM expansion (``q·k`` by ``tl.dot`` over feature blocks, cached
``‖k‖²``) and keeping, per query, the running max, the running sum of weights, the running
sum of squared weights and the running weighted sum of values, all relative to the running
max (in base 2). The partial results of the splits are merged, and online (eq. 4) or offline
(eq. 5) normalisation applied, by the launcher in :mod:`adv_reactive.ops`.

Modelled on triton-lang's ``python/tutorials/06-fused-attention.py``.
"""

from __future__ import annotations

import os
from typing import Any

from adv_reactive._triton import interpreting, tl, triton_autotune, triton_config, triton_jit

__all__ = ["BLOCK_N_MULTIPLE", "group_stats_kernel", "single_config"]

BLOCK_N_MULTIPLE = 128
"""Every config's ``BLOCK_N`` divides this, so key splits of a multiple of it waste no work."""


def single_config() -> bool:
    """Whether autotuning is cut to one config (interpreter, or ``ADV_REACTIVE_AUTOTUNE=0``)."""
    return interpreting() or os.environ.get("ADV_REACTIVE_AUTOTUNE", "1") == "0"


def _keep(config: Any) -> bool:
    kw = config.kwargs
    tile = kw["BLOCK_B"] * kw["BLOCK_N"]
    # Large score tiles need 8 warps; small ones waste them.
    return tile <= 128 * 128 and (config.num_warps == 8) == (tile >= 128 * 128)


def _configs() -> list[Any]:
    if interpreting():  # few, small programs: the interpreter pays per operation
        return [triton_config({"BLOCK_B": 16, "BLOCK_N": 32, "BLOCK_D": 32}, num_warps=4)]
    if single_config():
        return [
            triton_config({"BLOCK_B": 64, "BLOCK_N": 64, "BLOCK_D": 32}, num_warps=4, num_stages=2)
        ]
    configs = [
        triton_config({"BLOCK_B": bb, "BLOCK_N": bn, "BLOCK_D": bd}, num_warps=w, num_stages=s)
        for bb in (64, 128)
        for bn in (64, 128)
        for bd in (32, 64)
        for w in (4, 8)
        for s in (2, 3)
    ]
    return [c for c in configs if _keep(c)]


@triton_autotune(configs=_configs(), key=["D", "BLOCK_C", "DOT_DTYPE", "DOT_PRECISION"])
@triton_jit
def group_stats_kernel(
    q_ptr,
    k_ptr,
    kn_ptr,
    v_ptr,
    lse_ptr,
    out_ptr,
    sq_ptr,
    B,
    N,
    D,
    C,
    split_len,
    scale_ptr,
    stride_qb,
    stride_qd,
    stride_kg,
    stride_kn,
    stride_kd,
    stride_ng,
    stride_nn,
    stride_vg,
    stride_vn,
    stride_vc,
    stride_lb,
    stride_lg,
    stride_ls,
    stride_ob,
    stride_og,
    stride_os,
    stride_oc,
    BLOCK_C: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Per (query block, key group, key split): partial log-sum-exp statistics.

    Writes, for each query ``b`` of the block, with ``s_i = (q_b·k_i − ‖k_i‖²/2) · scale`` in
    base-2 units (``scale = log2(e) / σ²``, read from ``scale_ptr`` so that float64 runs keep
    its precision) over the split's keys ``i``:
    ``lse = ln 2 · log2 Σ_i 2^{s_i}``, ``out = Σ_i 2^{s_i} v_i / Σ_i 2^{s_i}`` and
    ``sq = Σ_i 2^{2 s_i} / (Σ_i 2^{s_i})²``.
    """
    pid_b = tl.program_id(0)
    group = tl.program_id(1)
    split = tl.program_id(2)

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    start = split * split_len
    stop = tl.minimum(start + split_len, N)

    scale = tl.load(scale_ptr).to(ACC_DTYPE)
    k_base = k_ptr + group * stride_kg
    kn_base = kn_ptr + group * stride_ng
    v_base = v_ptr + group * stride_vg

    run_max = tl.full([BLOCK_B], float("-inf"), ACC_DTYPE)
    run_sum = tl.zeros([BLOCK_B], ACC_DTYPE)
    run_sq = tl.zeros([BLOCK_B], ACC_DTYPE)
    acc = tl.zeros([BLOCK_B, BLOCK_C], ACC_DTYPE)

    # A fixed trip count (split_len is a multiple of BLOCK_N); the last split's surplus
    # blocks are fully masked and leave the running statistics unchanged.
    for it in range(0, split_len // BLOCK_N):
        offs_n = start + it * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < stop
        dots = tl.zeros([BLOCK_B, BLOCK_N], ACC_DTYPE)
        for d0 in range(0, D, BLOCK_D):
            dd = d0 + offs_d
            mask_d = dd < D
            q = tl.load(
                q_ptr + offs_b[:, None] * stride_qb + dd[None, :] * stride_qd,
                mask=mask_b[:, None] & mask_d[None, :],
                other=0.0,
            ).to(DOT_DTYPE)
            k = tl.load(
                k_base + offs_n[None, :] * stride_kn + dd[:, None] * stride_kd,
                mask=mask_n[None, :] & mask_d[:, None],
                other=0.0,
            ).to(DOT_DTYPE)
            dots = tl.dot(q, k, dots, input_precision=DOT_PRECISION, out_dtype=ACC_DTYPE)
        kn = tl.load(kn_base + offs_n * stride_nn, mask=mask_n, other=0.0).to(ACC_DTYPE)
        scores = (dots - 0.5 * kn[None, :]) * scale
        scores = tl.where(mask_n[None, :], scores, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(scores, axis=1))
        rescale = tl.exp2(run_max - new_max)
        p = tl.exp2(scores - new_max[:, None])
        run_sum = run_sum * rescale + tl.sum(p, axis=1)
        run_sq = run_sq * (rescale * rescale) + tl.sum(p * p, axis=1)
        v = tl.load(
            v_base + offs_n[:, None] * stride_vn + offs_c[None, :] * stride_vc,
            mask=mask_n[:, None] & mask_c[None, :],
            other=0.0,
        ).to(ACC_DTYPE)
        acc = acc * rescale[:, None] + tl.dot(p, v, input_precision="ieee", out_dtype=ACC_DTYPE)
        run_max = new_max

    lse = (run_max + tl.log2(run_sum)) * 0.6931471805599453
    out = acc / run_sum[:, None]
    sq = run_sq / (run_sum * run_sum)
    part = group * stride_lg + split * stride_ls
    tl.store(lse_ptr + offs_b * stride_lb + part, lse, mask=mask_b)
    tl.store(sq_ptr + offs_b * stride_lb + part, sq, mask=mask_b)
    tl.store(
        out_ptr
        + offs_b[:, None] * stride_ob
        + group * stride_og
        + split * stride_os
        + offs_c[None, :] * stride_oc,
        out,
        mask=mask_b[:, None] & mask_c[None, :],
    )
