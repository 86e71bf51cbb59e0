"""Runs kernel cases under Triton's interpreter, in a fresh process (see test_kernels.py).

Triton picks compiled vs interpreted execution when ``@triton.jit`` decorates a kernel, so
``TRITON_INTERPRET=1`` must be set before :mod:`adv_reactive._kernels` is imported: a
subprocess started with it set is the robust way, whatever the test process imported.

Usage: ``python interpreter_worker.py CASES.pt RESULTS.pt``.
"""

from __future__ import annotations

import os
import sys
import traceback

import torch

from adv_reactive import ops


def _run(case: dict) -> dict:
    q, k, v = case["queries"], case["keys"], case["values"]
    if case["kind"] == "group_stats":
        lse, out, sumsq = ops.triton_group_stats(
            q, k, ops.squared_norms(k), v, case["inv_var"], num_splits=case["num_splits"]
        )
        return {"lse": lse, "out": out, "sumsq": sumsq}
    x = q.clone().requires_grad_(case["grad"])
    res = ops.reactive_aggregate(
        x,
        k,
        v,
        sigma=case["sigma"],
        mode=case["mode"],
        top_k=case["top_k"],
        backend="triton",
        simulations=case.get("simulations", 1),
    )
    got = {name: val for name, val in res._asdict().items() if val is not None}
    if case["grad"]:
        (got["grad"],) = torch.autograd.grad(res.output[:, 0].sum(), x)
    return {name: val.detach() for name, val in got.items()}


def main(cases_path: str, results_path: str) -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("set TRITON_INTERPRET=1")
    results = {}
    for name, case in torch.load(cases_path).items():
        try:
            results[name] = _run(case)
        except Exception:  # reported per case by the test that reads it
            results[name] = {"error": traceback.format_exc()}
    torch.save(results, results_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
