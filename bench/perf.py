"""Speed and memory benchmarks of every package (``uv run bench/perf.py``).

Each package contributes a section in ``bench/perf_sections/<section>.py``. Figures are
printed as a table (ratios measured within one run) and, with ``--json FILE``, written
under stable keys together with the versions, device and git revision.

Every section runs in a fresh Python process (``--no-isolate``: all in this one), so no
section inherits the heap another one left: on the CPU, what the C library's ``malloc``
has adapted to decides how often a step page-faults its memory back in, which moved
ratios by up to 2x (see ``benchlib/allocator.py``). ``--allocator`` chooses that state:
``default`` (glibc's own, what a plain ``python`` process gets) or ``warm`` (freed memory
is kept, as with jemalloc/tcmalloc).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.cli import add_allocator_argument, apply_allocator  # noqa: E402
from benchlib.meta import provenance  # noqa: E402
from benchlib.timing import STATISTICS  # noqa: E402
from perf_sections import SECTIONS  # noqa: E402
from perf_sections.base import Context, Figure  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--statistic",
        choices=sorted(STATISTICS),
        default="min",
        help="summary of the timed rounds (default min: contention only adds time)",
    )
    add_allocator_argument(p, default="default")
    p.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run every section in this process (default: each in a fresh one)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every figure to FILE")
    return p.parse_args(argv)


def _table(figures: list[Figure]) -> str:
    lines = ["| key | value | unit | goal | met | what |", "|---|---:|---|---|---|---|"]
    for f in figures:
        met = f.meets_goal()
        mark = "" if met is None else ("yes" if met else "NO")
        lines.append(f"| {f.key} | {f.value:.4g} | {f.unit} | {f.goal} | {mark} | {f.note} |")
    return "\n".join(lines)


def _run_isolated(args: argparse.Namespace, name: str) -> list[Figure]:
    """Run one section in a fresh interpreter; return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--no-isolate"]
        cmd += ["--sections", name, "--device", args.device, "--repeats", str(args.repeats)]
        cmd += ["--seed", str(args.seed), "--statistic", args.statistic]
        cmd += ["--allocator", args.allocator, "--json", str(out)]
        cmd += ["--quick"] if args.quick else []
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            raise SystemExit(f"section {name!r} failed (exit {done.returncode})")
        payload = json.loads(out.read_text())
    return [
        Figure(key, f["value"], f["unit"], f["goal"], f["note"], f.get("extra", {}))
        for key, f in payload["figures"].items()
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    allocator = apply_allocator(args.allocator)
    device = torch.device(args.device)
    ctx = Context(
        device=device,
        quick=args.quick,
        repeats=args.repeats,
        seed=args.seed,
        statistic=args.statistic,
    )
    figures: list[Figure] = []
    isolate = args.isolate and len(args.sections) > 1
    if not isolate:
        print(f"allocator: {allocator}", flush=True)
    for name in args.sections:
        if isolate:
            figures.extend(_run_isolated(args, name))
            continue
        module = importlib.import_module(f"perf_sections.{name}")
        print(f"== {name}", flush=True)
        got = module.run(ctx)
        print(_table(got), flush=True)
        figures.extend(got)
    if isolate:
        print(f"\n(each section ran in its own process; allocator: {allocator})")
    print("\n== all figures")
    print(_table(figures))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "provenance": provenance(device),
            "settings": {
                "quick": args.quick,
                "repeats": args.repeats,
                "seed": args.seed,
                "statistic": args.statistic,
                "allocator": allocator,
                "isolated_sections": isolate,
            },
            "figures": {
                f.key: {
                    "value": f.value,
                    "unit": f.unit,
                    "goal": f.goal,
                    "met": f.meets_goal(),
                    "note": f.note,
                    **({"extra": f.extra} if f.extra else {}),
                }
                for f in figures
            },
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
