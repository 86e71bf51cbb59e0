"""Check and time the GPU paths in one command: ``uv run bench/gpu_check.py``.

On a CUDA machine it

1. verifies the fused Triton reactive kernel (:func:`adv_reactive.reactive_aggregate`,
   ``backend="triton"``) against the PyTorch path and a float64 reference, online and
   offline, shared and per-draw keys;
2. times the kernel and reports its throughput as a fraction of this GPU's measured matmul
   peak (float32 with TF32 off and on, and bfloat16);
3. times the batched (``vmap``) posterior draws of :func:`bnn_core.forward_samples` against
   the loop over draws;
4. times a training step of the CIFAR networks in both memory layouts (contiguous and
   channels-last), in float32 and under bfloat16 autocast: what ``memory_format="auto"``
   should pick on this device;
5. runs the quick MNIST profile (``bench/mnist.py --device cuda``) as a subprocess,

and writes everything to ``results/gpu_check/<run>/gpu_check.json``. On a machine without
CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.experiment import REPO  # noqa: E402
from benchlib.meta import provenance  # noqa: E402


def cuda_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def matmul_peak(repeats: int, size: int) -> dict[str, float]:
    """Measured TFLOP/s of a square matmul: float32 (TF32 off, on) and bfloat16."""
    out = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, dtype, allow in (
            ("float32", torch.float32, False),
            ("tf32", torch.float32, True),
            ("bfloat16", torch.bfloat16, False),
        ):
            torch.backends.cuda.matmul.allow_tf32 = allow
            a = torch.randn(size, size, device="cuda", dtype=dtype)
            b = torch.randn(size, size, device="cuda", dtype=dtype)
            t = cuda_time(lambda a=a, b=b: a @ b, repeats)
            out[name] = 2 * size**3 / t / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return out


def check_kernel(repeats: int, peak: dict[str, float]) -> dict[str, Any]:
    """The Triton kernel against the PyTorch path and float64, and its throughput."""
    from adv_reactive import reactive_aggregate
    from adv_reactive._triton import kernel_can_run

    if not kernel_can_run(torch.device("cuda")):
        return {"skipped": "Triton is not installed or cannot run on this device"}
    g = torch.Generator(device="cuda").manual_seed(0)
    results: dict[str, Any] = {"cases": []}
    ok = True
    for mode in ("online", "offline"):
        for per_draw in (False, True):
            b, n, d, m, c = 256, 4096, 784, 8, 10
            q = torch.rand(b, d, device="cuda", generator=g)
            keys = torch.rand(*((m,) if per_draw else ()), n, d, device="cuda", generator=g)
            v = torch.rand(m, n, c, device="cuda", generator=g).softmax(-1)
            kw = {"sigma": 4.0, "mode": mode}
            tri = reactive_aggregate(q, keys, v, backend="triton", **kw).output
            ref = reactive_aggregate(q, keys, v, backend="torch", **kw).output
            f64 = reactive_aggregate(
                q.double(), keys.double(), v.double(), backend="torch", **kw
            ).output
            err_tri = float((tri.double() - f64).abs().max())
            err_torch = float((ref.double() - f64).abs().max())
            passed = err_tri <= max(10 * err_torch, 1e-5)
            ok &= passed
            t, t_torch = (
                cuda_time(partial(reactive_aggregate, q, keys, v, backend=be, **kw), repeats)
                for be in ("triton", "torch")
            )
            groups = m if per_draw else 1
            flops = 2 * b * n * d * groups  # the q·k products dominate
            results["cases"].append(
                {
                    "mode": mode,
                    "per_draw_keys": per_draw,
                    "shape": {"B": b, "N": n, "D": d, "M": m, "C": c},
                    "max_abs_err_triton_vs_float64": err_tri,
                    "max_abs_err_torch_vs_float64": err_torch,
                    "passed": passed,
                    "triton_ms": round(t * 1e3, 3),
                    "torch_ms": round(t_torch * 1e3, 3),
                    "triton_tflops": flops / t / 1e12,
                    "fraction_of_tf32_peak": flops / t / 1e12 / peak["tf32"],
                    "fraction_of_float32_peak": flops / t / 1e12 / peak["float32"],
                }
            )
    results["passed"] = ok
    return results


def draws_vmap_vs_loop(repeats: int) -> dict[str, Any]:
    """Ten posterior draws (forward + backward) batched with vmap against the loop."""
    import bnn_core as bc

    out = {}
    for name, build, shape in (
        ("mnist_cnn", bc.mnist_cnn, (128, 1, 28, 28)),
        ("cifar_cnn", bc.cifar_cnn, (128, 3, 32, 32)),
    ):
        model = build(init_sigma=1e-2).cuda()
        x = torch.rand(shape, device="cuda")
        y = torch.randint(0, 10, (shape[0],), device="cuda")

        def step(method: str, model=model, x=x, y=y) -> None:
            logits = bc.forward_samples(model, x, 10, method=method)
            bc.nll(bc.ppd_log_probs(logits), y).backward()

        t = {m: cuda_time(lambda m=m: step(m), repeats) for m in ("vmap", "loop")}
        out[name] = {
            "vmap_ms": round(t["vmap"] * 1e3, 3),
            "loop_ms": round(t["loop"] * 1e3, 3),
            "loop_over_vmap": t["loop"] / t["vmap"],
            "auto_picks": str(bc.sampling.resolve_method("auto", model, x.device)),
        }
    return out


def layouts(repeats: int) -> dict[str, Any]:
    """A training step (one draw, fwd + bwd) of the CIFAR networks in both layouts."""
    import bnn_core as bc
    from bnn_core.models import fastest_memory_format

    out: dict[str, Any] = {"auto_picks": fastest_memory_format("cuda")}
    x = torch.rand(128, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (128,), device="cuda")
    for name, build in (("cifar_cnn", bc.cifar_cnn), ("resnet18", bc.resnet18)):
        row = {}
        for fmt in ("contiguous", "channels_last"):
            model = build(memory_format=fmt).cuda()
            xf = x.contiguous(memory_format=bc.models._config.MEMORY_FORMATS[fmt])
            for amp in (False, True):

                def step(model=model, xf=xf, amp=amp) -> None:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                        loss = torch.nn.functional.cross_entropy(model(xf).float(), y)
                    loss.backward()

                row[f"{fmt}{'_bf16' if amp else ''}_ms"] = round(cuda_time(step, repeats) * 1e3, 3)
        row["channels_last_speedup"] = row["contiguous_ms"] / row["channels_last_ms"]
        row["channels_last_speedup_bf16"] = row["contiguous_bf16_ms"] / row["channels_last_bf16_ms"]
        out[name] = row
    return out


def mnist_quick(timeout: int) -> dict[str, Any]:
    """The quick MNIST profile on the GPU, as a subprocess."""
    cmd = [sys.executable, str(REPO / "bench" / "mnist.py"), "--device", "cuda"]
    cmd += ["--run", "gpu_check", "--no-progress"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(cmd), "timed_out_after_s": timeout}
    return {
        "command": " ".join(cmd),
        "returncode": done.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "tail": done.stdout[-3000:] + done.stderr[-1500:],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check")
    parser.add_argument("--run", default="default", help="run name (a folder under --out)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--skip-mnist", action="store_true", help="do not run bench/mnist.py")
    parser.add_argument("--mnist-timeout", type=int, default=1800, help="seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every check (see the module docstring); exit 0 without CUDA."""
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); ")
        print("nothing to check. Run it on a GPU machine: uv run bench/gpu_check.py")
        return 0
    device = torch.device("cuda")
    report: dict[str, Any] = {"provenance": provenance(device)}
    report["matmul_peak_tflops"] = matmul_peak(args.repeats, args.matmul_size)
    steps = [
        ("reactive_kernel", lambda: check_kernel(args.repeats, report["matmul_peak_tflops"])),
        ("posterior_draws_vmap_vs_loop", lambda: draws_vmap_vs_loop(args.repeats)),
        ("memory_layouts", lambda: layouts(args.repeats)),
    ]
    if not args.skip_mnist:
        steps.append(("mnist_quick", lambda: mnist_quick(args.mnist_timeout)))
    for name, fn in steps:
        print(f"gpu_check: {name} ...", flush=True)
        try:
            report[name] = fn()
        except Exception as err:  # one failing check must not lose the others' numbers
            report[name] = {"error": f"{type(err).__name__}: {err}"}
    out = args.out / args.run
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    summary = {k: v for k, v in report.items() if k != "provenance"}
    print(json.dumps(summary, indent=2, default=str)[:6000])
    print(f"wrote {path}")
    kernel = report.get("reactive_kernel", {})
    return 1 if kernel.get("passed") is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
