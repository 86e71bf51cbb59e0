"""Copy the reproduction scripts' results into the documentation site (docs/results/).

``uv run bench/publish.py`` takes, for every script of :data:`SCRIPTS`, the run
``results/<script>/<run>/`` (``--run``, default ``quick``: the quick profiles) and writes
``docs/results/<script>.md`` (its tables -- ``tables.md``, or the file :data:`TABLES` names
-- its PNG figures and its ``paper_vs_ours.md``)
with the figures copied to ``docs/results/<script>/``, then ``docs/results/index.md``
linking the pages and saying when and with which commit each run was made. A script without
such a run is listed as missing; with no results at all the index says how to make them,
and the site still builds (``uv run mkdocs build --strict``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.experiment import REPO  # noqa: E402

SCRIPTS = {
    "mnist": "Tables 1, 2, 7; Figures 3, 4, 6–9",
    "regression": "Tables 3, 4, 8",
    "selective": "Figure 5 (selective prediction)",
    "bounds": "Table 5 (surrogate ELBO vs IWAE)",
    "costs": "Table 6 (training and inference costs)",
    "channels": "beyond the paper: robustness against training cost (its future work, §7)",
}
"""Every reproduction script and what of the paper it makes (the page order)."""

TABLES = {"channels": "pareto.md"}
"""The tables file of the scripts that do not write ``tables.md``."""


def _demote(markdown: str) -> str:
    """Headings one level down (``#`` → ``##``), so a file fits under a page's title."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.M)


def _provenance(run: Path) -> str:
    path = run / "results.json"
    if not path.exists():
        return "no results.json"
    payload = json.loads(path.read_text())
    prov = payload.get("provenance", {})
    return (
        f"{prov.get('date', '?')}, commit {prov.get('git', '?')}, "
        f"{prov.get('device_name', prov.get('device', '?'))}"
    )


def _command(script: str, run_name: str, run: Path) -> str:
    """The command that made ``run``, with the attacks it recorded (``--attacks``)."""
    command = f"uv run bench/{script}.py --profile {run_name}"
    path = run / "results.json"
    attacks = (
        json.loads(path.read_text()).get("config", {}).get("attacks") if path.exists() else None
    )
    if attacks:
        command += " --attacks " + " ".join(attacks)
    return command


def publish(results: Path, docs: Path, run_name: str) -> dict[str, Path | None]:
    """Write the results pages; return each script's run directory (``None``: missing)."""
    out = docs / "results"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    found: dict[str, Path | None] = {}
    for script, what in SCRIPTS.items():
        run = results / script / run_name
        tables = run / TABLES.get(script, "tables.md")
        if not tables.exists():
            found[script] = None
            continue
        found[script] = run
        pngs = sorted(run.glob("*.png"))
        if pngs:
            (out / script).mkdir()
        parts = [
            f"# {script}: {what}",
            "",
            f"`{_command(script, run_name, run)}` ({_provenance(run)}).",
            "",
            _demote(tables.read_text()),
            "",
        ]
        if pngs:
            parts += ["## Figures", ""]
            for png in pngs:
                shutil.copy2(png, out / script / png.name)
                parts += [f"![{png.stem}]({script}/{png.name})", ""]
        if (run / "paper_vs_ours.md").exists():
            parts += [_demote((run / "paper_vs_ours.md").read_text()), ""]
        (out / f"{script}.md").write_text("\n".join(parts))
    lines = [
        "# Results",
        "",
        f"The tables and figures of the `{run_name}` runs of the reproduction scripts, "
        "copied here by `uv run bench/publish.py` from `results/<script>/<run>/` (see "
        "[Reproducing the paper](../reproducing.md) for the commands and what each profile "
        "does). The quick profiles run on a laptop CPU with small data and few draws: they "
        "show that the pipeline works and the direction of the effects, not the paper's "
        "numbers.",
        "",
        "| script | reproduces | run |",
        "|---|---|---|",
    ]
    for script, what in SCRIPTS.items():
        run = found[script]
        if run is None:
            cell = f"not run yet: `uv run bench/{script}.py`"
            lines.append(f"| `bench/{script}.py` | {what} | {cell} |")
        else:
            link = f"[{script}]({script}.md)"
            lines.append(f"| {link} | {what} | {_provenance(run)} |")
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return found


def main(argv: list[str] | None = None) -> int:
    """Publish the results pages; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default="quick", help="the run name of every script (default quick)")
    p.add_argument("--results", type=Path, default=REPO / "results")
    p.add_argument("--docs", type=Path, default=REPO / "docs")
    args = p.parse_args(argv)
    found = publish(args.results, args.docs, args.run)
    for script, run in found.items():
        print(f"{script}: {run if run is not None else 'missing'}")
    print(f"wrote {args.docs / 'results'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
