"""Perf section of adv_reactive (issue 6): the streaming log-weight aggregation.

On random data shaped like MNIST (B = 256 test inputs, D = 784, N = 60,000 training inputs,
M = 10 posterior draws, C = 10 classes; smaller with ``--quick``):

* the fraction of the device's measured fp32 matmul throughput, a plain ``(B×D)·(D×N)``
  product timed in the same run, that the log-weight computation reaches (the aggregation
  with shared keys, counting its ``2·B·N·D`` matmul flops), with ``cdist`` for reference;
* time per test input of online and offline aggregation with shared keys (identity channel,
  N keys) and per-draw keys (one-step channel, M·N keys), and of a gradient w.r.t. the
  inputs (what an adaptive attack pays);
* on CUDA, the fused Triton kernel through ``triton.testing.do_bench``: time, TFLOP/s, speedup
  over the PyTorch path, and the op's peak memory beyond its inputs.

The overhead against standard BNN inference with the same M (goals: identity <= 3x, one-step
<= 20x) needs ``bnn_core``; :func:`_standard_inference` is the hook where it plugs in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adv_reactive import reactive_aggregate, squared_norms
from adv_reactive._triton import TRITON_AVAILABLE
from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure

_PREFIX = "reactive"


def _sizes(ctx: Context) -> dict[str, int]:
    if ctx.quick:
        return {"B": 64, "D": 784, "N": 4096, "M": 4, "C": 10}
    return {"B": 256, "D": 784, "N": 60_000, "M": 10, "C": 10}


def _data(ctx: Context, s: dict[str, int]) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    dev = ctx.device
    keys = torch.rand(s["N"], s["D"], generator=gen, device=dev)
    # One-step channel: each training input moved by a per-draw perturbation.
    per_draw = keys + 0.1 * torch.randn(s["M"], s["N"], s["D"], generator=gen, device=dev)
    pick = torch.randint(0, s["N"], (s["B"],), generator=gen, device=dev)
    queries = keys[pick] + 0.3 * torch.randn(s["B"], s["D"], generator=gen, device=dev)
    logits = 2 * torch.randn(s["M"], s["N"], s["C"], generator=gen, device=dev)
    values = torch.softmax(logits, dim=-1)
    return {
        "queries": queries,
        "keys": keys,
        "key_norms": squared_norms(keys),
        "per_draw": per_draw,
        "per_draw_norms": squared_norms(per_draw),
        "values": values,
        "mean_values": values.mean(0),
    }


def _standard_inference(ctx: Context, s: dict[str, int]) -> Callable[[], object] | None:
    """Standard BNN inference with M draws on B MNIST inputs, for the overhead ratios.

    Returns ``None`` until the comparison is wired to ``bnn_core`` (``mnist_cnn`` and
    ``forward_samples`` with ``num_samples=M``); the overhead figures are then skipped.
    """
    return None


def run(ctx: Context) -> list[Figure]:
    s = _sizes(ctx)
    d = _data(ctx, s)
    sigma = 2.0
    size = f"B={s['B']}, D={s['D']}, N={s['N']}, M={s['M']}"
    figs: list[Figure] = []
    q, keys = d["queries"], d["keys"]
    backend = "torch"

    def agg(keys_: torch.Tensor, norms: torch.Tensor, values: torch.Tensor, mode: str) -> object:
        return reactive_aggregate(
            q, keys_, values, sigma=sigma, mode=mode, key_sq_norms=norms, backend=backend
        )

    def grad_shared() -> object:
        x = q.clone().requires_grad_()
        out = reactive_aggregate(
            x, keys, d["mean_values"], sigma=sigma, key_sq_norms=d["key_norms"], backend=backend
        ).output
        return torch.autograd.grad(out[:, 0].sum(), x)

    fns: dict[str, Callable[[], object]] = {
        "matmul": lambda: q @ keys.T,
        "cdist": lambda: torch.cdist(q, keys),
        "shared.online": lambda: agg(keys, d["key_norms"], d["mean_values"], "online"),
        "shared.offline": lambda: agg(keys, d["key_norms"], d["values"], "offline"),
        "shared.grad": grad_shared,
        "per_draw.online": lambda: agg(d["per_draw"], d["per_draw_norms"], d["values"], "online"),
        "per_draw.offline": lambda: agg(d["per_draw"], d["per_draw_norms"], d["values"], "offline"),
    }
    standard = _standard_inference(ctx, s)
    if standard is not None:
        fns["standard"] = standard
    t = interleaved_times(fns, repeats=ctx.repeats, device=ctx.device)

    flops = 2 * s["B"] * s["N"] * s["D"]
    figs.append(
        Figure(
            f"{_PREFIX}.matmul.gflops",
            flops / t["matmul"] / 1e9,
            "GFLOP/s",
            note=f"fp32 (B×D)·(D×N) matmul on {ctx.device}, {size}",
        )
    )
    figs.append(
        Figure(
            f"{_PREFIX}.logweights.matmul_fraction",
            100 * t["matmul"] / t["shared.online"],
            "%",
            goal=">= 70",
            note="streaming log-sum-exp aggregation (torch path, cached key norms, shared keys) "
            "vs the plain matmul, counting 2·B·N·D flops",
        )
    )
    figs.append(
        Figure(
            f"{_PREFIX}.cdist.matmul_fraction",
            100 * t["matmul"] / t["cdist"],
            "%",
            note="torch.cdist(queries, keys) vs the plain matmul (reference)",
        )
    )
    for key in ("shared.online", "shared.offline", "per_draw.online", "per_draw.offline"):
        keys_n = s["N"] if key.startswith("shared") else s["M"] * s["N"]
        figs.append(
            Figure(
                f"{_PREFIX}.{key}.ms_per_query",
                1e3 * t[key] / s["B"],
                "ms",
                note=f"{key.replace('.', ' ')} aggregation over {keys_n} keys, torch path, {size}",
            )
        )
    figs.append(
        Figure(
            f"{_PREFIX}.per_draw.relative_to_shared",
            t["per_draw.online"] / t["shared.online"],
            "x",
            note=f"per-draw keys (M·N) vs shared keys (N), online; M = {s['M']}",
        )
    )
    figs.append(
        Figure(
            f"{_PREFIX}.shared.grad.relative_to_forward",
            t["shared.grad"] / t["shared.online"],
            "x",
            note="forward + backward w.r.t. the inputs vs forward (adaptive attacks)",
        )
    )
    if standard is not None:
        for key, goal, name in (
            ("shared.online", "<= 3", "identity"),
            ("per_draw.online", "<= 20", "one_step"),
        ):
            figs.append(
                Figure(
                    f"{_PREFIX}.{name}.overhead_vs_bnn",
                    t[key] / t["standard"],
                    "x",
                    goal=goal,
                    note=f"reactive inference ({name} channel) vs standard BNN inference, M = "
                    f"{s['M']}",
                )
            )
    if ctx.device.type == "cuda" and TRITON_AVAILABLE:
        figs.extend(_cuda_figures(ctx, s, d, sigma))
    return figs


def _cuda_figures(
    ctx: Context, s: dict[str, int], d: dict[str, torch.Tensor], sigma: float
) -> list[Figure]:
    from triton.testing import do_bench

    q = d["queries"]
    figs: list[Figure] = []
    cases = {
        "shared": (d["keys"], d["key_norms"], d["mean_values"], s["N"]),
        "per_draw": (d["per_draw"], d["per_draw_norms"], d["values"], s["M"] * s["N"]),
    }
    matmul_ms = do_bench(lambda: q @ d["keys"].T)
    flops = 2 * s["B"] * s["N"] * s["D"]
    figs.append(
        Figure(
            f"{_PREFIX}.cuda.matmul.tflops",
            flops / matmul_ms / 1e9,
            "TFLOP/s",
            note="fp32 (B×D)·(D×N) matmul (torch defaults, no TF32)",
        )
    )
    for name, (keys, norms, values, num_keys) in cases.items():
        ms = {}
        for backend in ("triton", "torch"):

            def call(
                backend: str = backend,
                keys: torch.Tensor = keys,
                norms: torch.Tensor = norms,
                values: torch.Tensor = values,
            ) -> object:
                return reactive_aggregate(
                    q, keys, values, sigma=sigma, key_sq_norms=norms, backend=backend
                )

            call()  # autotune / warm up
            ms[backend] = do_bench(call)
        kflops = 2 * s["B"] * num_keys * s["D"]
        figs += [
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.ms",
                ms["triton"],
                "ms",
                note=f"fused kernel, online, {num_keys} keys, B={s['B']}",
            ),
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.tflops",
                kflops / ms["triton"] / 1e9,
                "TFLOP/s",
                note="kernel throughput counting 2·B·keys·D flops",
            ),
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.speedup_vs_torch",
                ms["torch"] / ms["triton"],
                "x",
                note="PyTorch path time / kernel time, same call",
            ),
        ]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        reactive_aggregate(q, keys, values, sigma=sigma, key_sq_norms=norms, backend="triton")
        torch.cuda.synchronize()
        figs.append(
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.peak_extra_mb",
                (torch.cuda.max_memory_allocated() - base) / 2**20,
                "MB",
                note="peak memory of the op beyond its inputs",
            )
        )
    return figs
