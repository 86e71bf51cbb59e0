"""The fused Triton kernel against the PyTorch path and float64 brute forces.

On the CPU the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``, about 1 ms
per program instance, so the grids are tiny) in one subprocess for all cases; the GPU tests
(``@pytest.mark.gpu``) run it compiled on realistic sizes.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from adv_reactive import ops, reactive_aggregate
from adv_reactive._triton import TRITON_AVAILABLE

pytestmark = pytest.mark.skipif(not TRITON_AVAILABLE, reason="needs Triton")

# Triton 3.6's interpreter cannot loop up to a runtime bound (its scalar arguments are 1-D
# arrays); 3.9, the version this workspace pins, can. The compiled kernel is not affected.
_INTERPRETER_OK = TRITON_AVAILABLE and tuple(
    int(p) for p in importlib.metadata.version("triton").split(".")[:2]
) >= (3, 9)
needs_interpreter = pytest.mark.skipif(
    not _INTERPRETER_OK, reason="Triton's interpreter before 3.9 cannot run this kernel"
)

WORKER = Path(__file__).with_name("interpreter_worker.py")


@dataclass(frozen=True)
class Shape:
    num_q: int
    num_keys: int
    dim: int
    num_values: int
    num_draws: int
    per_draw: bool


SHAPES = [
    pytest.param(Shape(5, 63, 20, 3, 3, per_draw=False), id="shared-N63-D20"),
    pytest.param(Shape(17, 500, 37, 10, 2, per_draw=True), id="per_draw-N500-D37-B17"),
    pytest.param(Shape(3, 1000, 8, 4, 2, per_draw=False), id="shared-N1000-D8"),
]
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-4, id="float32"),
    pytest.param(torch.float64, 1e-12, 1e-10, id="float64"),
    pytest.param(torch.float16, 1e-4, 1e-3, id="float16"),
]
MODES = ["online", "offline"]
SIGMA = 0.5


def _case_name(shape: Shape, dtype: torch.dtype, mode: str) -> str:
    return f"{shape}-{dtype}-{mode}"


def _problem(problem, shape: Shape, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(shape.num_keys + shape.dim)
    return problem(
        shape.num_q,
        shape.num_keys,
        shape.dim,
        shape.num_values,
        shape.num_draws,
        per_draw=shape.per_draw,
        generator=gen,
        dtype=dtype,
    )


def _all_cases(problem) -> dict[str, dict]:
    cases: dict[str, dict] = {}
    for shape_param in SHAPES:
        shape = shape_param.values[0]
        for dtype_param in DTYPES:
            dtype = dtype_param.values[0]
            q, k, v = _problem(problem, shape, dtype)
            for mode in MODES:
                cases[_case_name(shape, dtype, mode)] = {
                    "kind": "aggregate",
                    "queries": q,
                    "keys": k,
                    "values": v,
                    "sigma": SIGMA,
                    "mode": mode,
                    "top_k": 3,
                    "grad": dtype == torch.float64,
                }
    # Several key splits per group, merged by the launcher.
    q, k, v = _problem(problem, Shape(4, 200, 12, 3, 3, per_draw=True), torch.float64)
    for splits in (1, 3, 13):
        cases[f"splits_{splits}"] = {
            "kind": "group_stats",
            "queries": q,
            "keys": k,
            "values": v,
            "inv_var": 1 / SIGMA**2,
            "num_splits": splits,
        }
    # Tiny σ: scores around -1e5 in float32, far below where exp underflows.
    q, k, v = _problem(problem, Shape(6, 100, 16, 3, 2, per_draw=True), torch.float32)
    for mode in MODES:
        cases[f"tiny_sigma-{mode}"] = {
            "kind": "aggregate",
            "queries": q,
            "keys": k,
            "values": v,
            "sigma": 2e-3,
            "mode": mode,
            "top_k": 0,
            "grad": False,
        }
    # ABC: S = 3 simulations per (draw, input) pair, per draw and shared by the draws.
    gen = torch.Generator().manual_seed(7)
    for shared in (False, True):
        keys = torch.rand(3 if shared else 6, 50, 9, generator=gen, dtype=torch.float64)
        values = torch.softmax(torch.randn(2, 50, 4, generator=gen, dtype=torch.float64), -1)
        queries = keys[0, :5] + 0.2 * torch.randn(5, 9, generator=gen, dtype=torch.float64)
        for mode in MODES:
            cases[f"simulations-{'shared' if shared else 'per_draw'}-{mode}"] = {
                "kind": "aggregate",
                "queries": queries,
                "keys": keys,
                "values": values,
                "sigma": SIGMA,
                "mode": mode,
                "top_k": 3,
                "grad": True,
                "simulations": 3,
            }
    return cases


@pytest.fixture(scope="module")
def interpreted(problem, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every case's inputs and its kernel results, from one interpreter subprocess."""
    cases = _all_cases(problem)
    folder = tmp_path_factory.mktemp("interpreter")
    cases_path, results_path = folder / "cases.pt", folder / "results.pt"
    torch.save(cases, cases_path)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(cases_path), str(results_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = torch.load(results_path)
    return {name: {"case": cases[name], **results[name]} for name in cases}


def _get(interpreted: dict[str, dict], name: str) -> dict:
    got = interpreted[name]
    assert "error" not in got, got.get("error")
    return got


@needs_interpreter
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_interpreter_matches_torch_and_brute_force(
    interpreted, reference, shape: Shape, dtype: torch.dtype, atol: float, rtol: float, mode: str
) -> None:
    got = _get(interpreted, _case_name(shape, dtype, mode))
    case = got["case"]
    q, k, v = case["queries"], case["keys"], case["values"]
    want = reactive_aggregate(q, k, v, sigma=SIGMA, mode=mode, top_k=3, backend="torch")
    ref = reference(q, k, v, SIGMA, mode)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    for name in ("output", "log_normalizer", "ess"):
        assert got[name].dtype == out_dtype
        torch.testing.assert_close(got[name], getattr(want, name), atol=atol, rtol=rtol)
        torch.testing.assert_close(got[name], ref[name].to(out_dtype), atol=atol, rtol=rtol)
    assert torch.equal(got["top_k_indices"], want.top_k_indices)
    torch.testing.assert_close(got["top_k_weights"], want.top_k_weights, atol=atol, rtol=rtol)
    if case["grad"]:  # the kernel's forward under the PyTorch backward
        x = q.clone().requires_grad_()
        out = reactive_aggregate(x, k, v, sigma=SIGMA, mode=mode, backend="torch").output
        (want_grad,) = torch.autograd.grad(out[:, 0].sum(), x)
        torch.testing.assert_close(got["grad"], want_grad, atol=atol, rtol=rtol)


@needs_interpreter
@pytest.mark.parametrize("splits", [pytest.param(s, id=f"splits_{s}") for s in (1, 3, 13)])
def test_interpreter_merges_key_splits(interpreted, splits: int) -> None:
    got = _get(interpreted, f"splits_{splits}")
    case = got["case"]
    q, k, v = case["queries"], case["keys"], case["values"]
    lse, out, sumsq = ops._reference.group_stats(q, k, ops.squared_norms(k), v, case["inv_var"], 64)
    torch.testing.assert_close(got["lse"], lse, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(got["out"], out, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(got["sumsq"], sumsq, atol=1e-12, rtol=1e-10)


@needs_interpreter
@pytest.mark.parametrize("mode", MODES)
def test_interpreter_tiny_sigma(interpreted, reference, mode: str) -> None:
    got = _get(interpreted, f"tiny_sigma-{mode}")
    case = got["case"]
    ref = reference(case["queries"], case["keys"], case["values"], case["sigma"], mode)
    assert ref["log_normalizer"].max() < -1e3  # exp would underflow in float32
    torch.testing.assert_close(got["output"], ref["output"].float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        got["log_normalizer"], ref["log_normalizer"].float(), rtol=1e-5, atol=0
    )


# --- On a GPU: the compiled kernel on realistic sizes. ---------------------------------------


def _cuda_problem(num_q: int, num_keys: int, dim: int, num_draws: int, per_draw: bool, dtype):
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (num_draws, num_keys, dim) if per_draw else (num_keys, dim)
    keys = torch.rand(shape, generator=gen, device="cuda")
    base = keys if not per_draw else keys[0]
    pick = torch.randint(0, num_keys, (num_q,), generator=gen, device="cuda")
    queries = base[pick] + 0.3 * torch.randn(num_q, dim, generator=gen, device="cuda")
    logits = 2 * torch.randn(num_draws, num_keys, 10, generator=gen, device="cuda")
    return queries.to(dtype), keys.to(dtype), torch.softmax(logits, dim=-1)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_draw", [False, True], ids=["shared", "per_draw"])
def test_gpu_kernel_matches_torch_on_mnist_sizes(per_draw: bool, mode: str) -> None:
    q, k, v = _cuda_problem(256, 60_000, 784, 10, per_draw, torch.float32)
    norms = ops.squared_norms(k)
    got = reactive_aggregate(q, k, v, sigma=2.0, mode=mode, key_sq_norms=norms, backend="triton")
    want = reactive_aggregate(q, k, v, sigma=2.0, mode=mode, key_sq_norms=norms, backend="torch")
    torch.testing.assert_close(got.output, want.output, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(got.log_normalizer, want.log_normalizer, atol=1e-2, rtol=1e-5)
    torch.testing.assert_close(got.ess, want.ess, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "atol", "rtol"), DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_gpu_kernel_matches_brute_force(reference, mode: str, dtype, atol: float, rtol: float):
    q, k, v = _cuda_problem(70, 3000, 50, 3, True, dtype)
    got = reactive_aggregate(q, k, v, sigma=1.0, mode=mode, backend="triton")
    ref = reference(q.cpu(), k.cpu(), v.cpu(), 1.0, mode)
    for name in ("output", "log_normalizer", "ess"):
        want = ref[name].to(getattr(got, name).dtype)
        torch.testing.assert_close(getattr(got, name).cpu(), want, atol=atol * 10, rtol=rtol * 10)


@pytest.mark.gpu
def test_gpu_memory_stays_bounded() -> None:
    q, k, v = _cuda_problem(256, 60_000, 784, 10, True, torch.float32)
    norms = ops.squared_norms(k)
    for backend in ("triton", "torch"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        reactive_aggregate(q, k, v, sigma=2.0, key_sq_norms=norms, backend=backend)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        assert extra < 256 * 2**20, (backend, extra)  # keys alone are 1.9 GB


@needs_interpreter
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["per_draw", "shared"])
def test_interpreter_with_simulations_matches_torch(interpreted, layout: str, mode: str) -> None:
    """The likelihood-free (ABC) keys run through the same kernel: S keys per pair."""
    got = _get(interpreted, f"simulations-{layout}-{mode}")
    case = got["case"]
    q, k, v = case["queries"], case["keys"], case["values"]
    kwargs = {"sigma": SIGMA, "mode": mode, "simulations": 3}
    want = reactive_aggregate(q, k, v, top_k=3, backend="torch", **kwargs)
    for name in ("output", "log_normalizer", "ess", "top_k_weights"):
        torch.testing.assert_close(got[name], getattr(want, name), atol=1e-12, rtol=1e-10)
    assert torch.equal(got["top_k_indices"], want.top_k_indices)
    x = q.clone().requires_grad_()
    out = reactive_aggregate(x, k, v, backend="torch", **kwargs).output
    (want_grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    torch.testing.assert_close(got["grad"], want_grad, atol=1e-12, rtol=1e-10)
