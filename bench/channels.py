"""Channels study: robustness against training cost, the Pareto front of the proactive defences.

``uv run bench/channels.py`` trains, on the MNIST quick profile of ``bench/mnist.py`` (its
data, test sets and training settings), every recipe of the study -- BL, AT, AT-PGD, OS, OS50,
MIX, NN, NN50, the random-start one-step variants OS50-RS and MIX-RS, and the amortised
adversary AMO and AMO50 (docs/theory.md) -- with several training seeds, attacks each model
white box at ε = 2 (L2; PGD with the bench's 50 steps and random start), and writes
``results/channels/<run>/``: ``results.json`` (configuration, provenance, every row, each
model's training history), ``pareto.md`` (mean (std) over training seeds of accuracy under
attack, NLL under attack, clean accuracy, clean NLL and training time relative to BL in the
same seed; the Pareto front on robust accuracy against time), ``pareto.png`` (robust accuracy
against relative training time) and ``overfitting.md`` (catastrophic-overfitting check).

The bar: does some Bayesian channel recipe match or beat AT-PGD's accuracy under attack with
a lower NLL under attack, at no more than AT-PGD's training time in the same run?

Catastrophic overfitting: every model but BL is trained with
:class:`robust_vi.OverfittingMonitor` on 100 held-out test images (not in the test sets):
one-step and 10-step PGD accuracy after every epoch, flagged in the history when the
multi-step accuracy collapses while the one-step accuracy rises (its time is not counted in
the training time).

Attacks are entries of :data:`ATTACKS` (name -> function); a new one (e.g. an ensemble)
is one more entry there and in ``--attacks``. Finished models and rows are cached in the
run directory: rerunning resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqdm.auto import tqdm  # noqa: E402

import mnist  # noqa: E402
from benchlib.cli import add_run_arguments, apply_allocator, apply_threads  # noqa: E402
from benchlib.evaluate import AttackSettings, attack  # noqa: E402
from benchlib.experiment import REPO, RunDirectory, config_dict, resolve_device  # noqa: E402
from benchlib.meta import provenance  # noqa: E402
from benchlib.results import RowStore, row_key, write_results  # noqa: E402
from bnn_core import PosteriorPredictive, load_model, mnist_cnn, save_model  # noqa: E402
from robust_vi import OverfittingMonitor, Recipe, Trainer, collapsed, recipe  # noqa: E402

RECIPES = (
    "BL",
    "AT",
    "AT-PGD",
    "OS",
    "OS50",
    "MIX",
    "NN",
    "NN50",
    "OS50-RS",
    "MIX-RS",
    "AMO",
    "AMO50",
)
"""Every recipe of the study; ``-RS``: one-step components with a random start."""
POINT_ESTIMATES = ("AT", "AT-PGD")
REFERENCE = "AT-PGD"
"""The bar's reference: multi-step adversarial training."""

StudyAttack = Callable[
    [torch.nn.Module, Tensor, Tensor, float, AttackSettings, torch.Generator], Tensor
]


def _benchlib_attack(name: str) -> StudyAttack:
    def run(predictive, x, y, eps, settings, generator):  # type: ignore[no-untyped-def]
        return attack(predictive, x, y, name, eps, settings, generator=generator)

    return run


ATTACKS: dict[str, StudyAttack] = {"PGD": _benchlib_attack("PGD")}
"""The attacks scored at the study strength (clean accuracy is always scored)."""


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What the study adds to the MNIST profile.

    Attributes:
        seeds: Training seeds (data and test sets stay those of the profile's seed).
        eps: The attack strength of the table (L2).
        monitor_size: Held-out images of the catastrophic-overfitting monitor (0: off).
        monitor_steps: Its PGD steps; ``monitor_draws`` its posterior draws.
        monitor_drop: Multi-step accuracy drop counted as a collapse.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    eps: float = 2.0
    monitor_size: int = 100
    monitor_steps: int = 10
    monitor_draws: int = 2
    monitor_drop: float = 0.2


def study_recipe(name: str, profile: mnist.Profile) -> Recipe:
    """The study's recipe ``name`` with the profile's budgets and noise levels."""
    eps, sigma = profile.train_eps, profile.sigma
    learned = {"input_shape": (1, 28, 28), "adversary_lr": profile.adversary_lr}
    table: dict[str, Callable[[], Recipe]] = {
        "BL": lambda: recipe("BL"),
        "AT": lambda: recipe("AT", eps=eps),
        "AT-PGD": lambda: recipe("AT-PGD", eps=eps, pgd_steps=profile.at_pgd_steps),
        "OS": lambda: recipe("OS", eps=eps, sigma=sigma),
        "OS50": lambda: recipe("OS50", eps=eps, sigma=sigma),
        "MIX": lambda: recipe("MIX", eps=eps, sigma=sigma, sigma0=profile.sigma0),
        "NN": lambda: recipe("NN", eps=eps, sigma=sigma, **learned),
        "NN50": lambda: recipe("NN50", eps=eps, sigma=sigma, **learned),
        "OS50-RS": lambda: recipe("OS50", eps=eps, sigma=sigma, random_start=True),
        "MIX-RS": lambda: recipe(
            "MIX", eps=eps, sigma=sigma, sigma0=profile.sigma0, random_start=True
        ),
        "AMO": lambda: recipe("AMO", eps=eps, sigma=sigma, **learned),
        "AMO50": lambda: recipe("AMO50", eps=eps, sigma=sigma, **learned),
    }
    return table[name]()


def held_out(profile: mnist.Profile, size: int) -> tuple[Tensor, Tensor]:
    """``size`` test images of the data that none of the profile's test sets uses."""
    from advbayes_data import load_mnist, load_mnist_sample

    data = load_mnist_sample(seed=profile.seed) if profile.data == "sample" else load_mnist(None)
    need = profile.test_size * profile.num_test_sets
    g = torch.Generator().manual_seed(profile.seed + 1)  # mnist.load_data's selection
    order = torch.randperm(len(data.x_test), generator=g)
    keep = order[need : need + size]
    if len(keep) < size:
        raise SystemExit(f"only {len(keep)} test images are left for the monitor")
    return data.x_test[keep], data.y_test[keep]


def train(
    name: str,
    seed: int,
    profile: mnist.Profile,
    data: dict[str, Tensor],
    run: RunDirectory,
    device: torch.device,
    monitor: OverfittingMonitor | None,
    progress: bool,
) -> tuple[torch.nn.Module, dict]:
    """Train (or load) recipe ``name`` with training seed ``seed``; resumable per epoch."""
    key = f"{name}-s{seed}"
    final, meta_path = run.models / f"{key}.pt", run.models / f"{key}.json"
    if final.exists() and meta_path.exists():
        return load_model(final, map_location=device).eval(), json.loads(meta_path.read_text())
    torch.manual_seed(seed)
    model = mnist_cnn(bayesian=name not in POINT_ESTIMATES).to(device)
    trainer = Trainer(
        model,
        study_recipe(name, profile),
        dataset_size=len(data["x_train"]),
        epochs=profile.epochs,
        lr=profile.lr,
        lr_decay=profile.lr_decay,
        batch_size=profile.batch_size,
        seed=seed,
        device=device,
        checkpoint_dir=run.checkpoints / key,
        progress=progress,
        callbacks=[] if monitor is None or name == "BL" else [monitor],
    )
    history = trainer.fit((data["x_train"], data["y_train"]))
    # the per-epoch times exclude the monitor's attacks (callbacks run after the epoch)
    meta = {"history": history, "train_time_s": sum(float(h["time_s"]) for h in history)}
    run.models.mkdir(parents=True, exist_ok=True)
    save_model(model, final)
    partial = meta_path.with_suffix(".json.part")
    partial.write_text(json.dumps(meta, indent=2, default=float))
    os.replace(partial, meta_path)
    shutil.rmtree(run.checkpoints / key, ignore_errors=True)
    return model.eval(), meta


def evaluate(
    name: str,
    seed: int,
    model: torch.nn.Module,
    profile: mnist.Profile,
    study: StudySettings,
    data: dict[str, Tensor],
    store: RowStore,
    attacks: list[str],
    device: torch.device,
) -> None:
    """Score ``model`` clean and under every attack on every test set (cached rows)."""
    settings = AttackSettings(steps=profile.attack_steps)
    for s in range(profile.num_test_sets):
        x = data["x_test"][s].to(device)
        y = data["y_test"][s].to(device)
        for attack_name in ["Clean", *attacks]:
            eps = 0.0 if attack_name == "Clean" else study.eps
            row_seed = seed * 100 + s
            if row_key(name, attack_name, eps, row_seed) in store:
                continue
            t0 = time.perf_counter()
            predictive = PosteriorPredictive(
                model,
                num_samples=1 if name in POINT_ESTIMATES else profile.eval_samples,
                generator=mnist._generator(device, "draws", name, seed, s),
            )
            x_adv = x
            if attack_name != "Clean":
                g = mnist._generator(device, "attack", name, seed, s, attack_name, eps)
                x_adv = ATTACKS[attack_name](predictive, x, y, eps, settings, g)
            with torch.no_grad():
                scores = mnist.metrics(predictive(x_adv), y)
            store.add(
                {
                    "model": name,
                    "attack": attack_name,
                    "eps": eps,
                    "seed": row_seed,
                    "train_seed": seed,
                    "test_set": s,
                    **scores,
                    "n": len(y),
                    "time_s": round(time.perf_counter() - t0, 3),
                }
            )


# ---------------------------------------------------------------------------------------
# summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary(
    rows: list[dict], times: dict[tuple[str, int], float], names: list[str], attacks: list[str]
) -> dict[str, dict[str, tuple[float, float]]]:
    """Per recipe: mean (std) over training seeds of each metric (test sets pooled first)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    seeds = sorted({int(r["train_seed"]) for r in rows})
    for name in names:
        metrics: dict[str, list[float]] = {}
        for seed in seeds:
            for attack_name in ["Clean", *attacks]:
                mine = [
                    r
                    for r in rows
                    if r["model"] == name and r["attack"] == attack_name and r["train_seed"] == seed
                ]
                if not mine:
                    continue
                total = sum(r["n"] for r in mine)
                for metric in ("accuracy", "nll"):
                    value = sum(r[metric] * r["n"] for r in mine) / total
                    metrics.setdefault(f"{attack_name}/{metric}", []).append(value)
            if any(r["model"] == name and r["train_seed"] == seed for r in rows):
                metrics.setdefault("seeds", []).append(1.0)
            if (name, seed) in times and ("BL", seed) in times:
                rel = times[(name, seed)] / times[("BL", seed)]
                metrics.setdefault("time", []).append(rel)
                metrics.setdefault("time_s", []).append(times[(name, seed)])
        out[name] = {k: _mean_std(v) for k, v in metrics.items() if k != "seeds"}
        out[name]["seeds"] = (float(len(metrics.get("seeds", []))), 0.0)
    return out


def pareto_front(stats: dict[str, dict[str, tuple[float, float]]], attack_name: str) -> list[str]:
    """Recipes no other recipe beats in robust accuracy at no more training time."""
    key = f"{attack_name}/accuracy"
    have = [n for n in stats if key in stats[n] and "time" in stats[n]]
    front = []
    for n in have:
        acc, t = stats[n][key][0], stats[n]["time"][0]
        dominated = any(
            stats[o][key][0] >= acc
            and stats[o]["time"][0] <= t
            and (stats[o][key][0] > acc or stats[o]["time"][0] < t)
            for o in have
            if o != n
        )
        if not dominated:
            front.append(n)
    return front


def bar_check(
    stats: dict[str, dict[str, tuple[float, float]]], attack_name: str
) -> tuple[list[str], list[str]]:
    """Bayesian channel recipes that meet the bar against AT-PGD, and a line per recipe."""
    acc, nll = f"{attack_name}/accuracy", f"{attack_name}/nll"
    ref = stats.get(REFERENCE, {})
    if acc not in ref or "time" not in ref:
        return [], [f"{REFERENCE} was not run: no bar"]
    passing, lines = [], []
    for name, s in stats.items():
        if name in POINT_ESTIMATES or name == "BL" or acc not in s or "time" not in s:
            continue
        ok_acc = s[acc][0] >= ref[acc][0]
        ok_nll = s[nll][0] < ref[nll][0]
        ok_time = s["time"][0] <= ref["time"][0]
        verdict = "MEETS" if ok_acc and ok_nll and ok_time else "misses"
        lines.append(
            f"- {name}: {verdict} (accuracy {s[acc][0]:.3f} vs {ref[acc][0]:.3f} "
            f"{'ok' if ok_acc else 'x'}; NLL {s[nll][0]:.3f} vs {ref[nll][0]:.3f} "
            f"{'ok' if ok_nll else 'x'}; time {s['time'][0]:.2f} vs {ref['time'][0]:.2f} x BL "
            f"{'ok' if ok_time else 'x'})"
        )
        if verdict == "MEETS":
            passing.append(name)
    return passing, lines


def _cell(stat: tuple[float, float] | None, digits: int = 3) -> str:
    if stat is None:
        return "—"
    return f"{stat[0]:.{digits}f} ({stat[1]:.{digits}f})"


def pareto_table(
    stats: dict[str, dict[str, tuple[float, float]]],
    names: list[str],
    attacks: list[str],
    front: list[str],
    eps: float,
) -> str:
    """The markdown table: one row per recipe, ``*`` on the Pareto front."""
    head = ["Recipe"]
    for a in attacks:
        head += [f"{a} acc (ε={eps:g})", f"{a} NLL"]
    head += ["clean acc", "clean NLL", "train time / BL", "train time (s)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in names:
        s = stats.get(name, {})
        cells = [name + (" *" if name in front else "")]
        for a in attacks:
            cells += [_cell(s.get(f"{a}/accuracy")), _cell(s.get(f"{a}/nll"))]
        cells += [
            _cell(s.get("Clean/accuracy")),
            _cell(s.get("Clean/nll")),
            _cell(s.get("time"), 2),
            _cell(s.get("time_s"), 1),
            str(int(s.get("seeds", (0, 0))[0])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_plot(
    stats: dict[str, dict[str, tuple[float, float]]],
    names: list[str],
    attack_name: str,
    front: list[str],
    path: Path,
    title: str,
) -> None:
    """Robust accuracy (mean ± std) against relative training time, the front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = f"{attack_name}/accuracy"
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    palette = matplotlib.colormaps["tab20"]
    for i, name in enumerate(names):
        s = stats.get(name, {})
        if key not in s or "time" not in s:
            continue
        (t, te), (a, ae) = s["time"], s[key]
        ax.errorbar(t, a, xerr=te, yerr=ae, fmt="o", ms=5, capsize=2, color=palette(i % 20))
        ax.annotate(name, (t, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    pts = sorted((stats[n]["time"][0], stats[n][key][0]) for n in front)
    if pts:
        ax.plot(*zip(*pts, strict=True), "--", color="grey", lw=1, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel("training time relative to BL (same seed)")
    ax.set_ylabel(f"accuracy under {attack_name}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def overfitting_report(metas: dict[tuple[str, int], dict], drop: float) -> tuple[str, list]:
    """Per model: final one-/multi-step monitor accuracies and the flagged epochs."""
    lines = [
        "| Recipe | seed | one-step acc (last) | 10-step PGD acc (last) | best PGD acc | "
        "flagged epochs |",
        "|---|---|---|---|---|---|",
    ]
    flagged = []
    for (name, seed), meta in sorted(metas.items()):
        h = [r for r in meta["history"] if "co_multi_step_accuracy" in r]
        if not h:
            continue
        epochs = collapsed(h, drop=drop)
        if epochs:
            flagged.append((name, seed, epochs))
        best = max(r["co_multi_step_accuracy"] for r in h)
        lines.append(
            f"| {name} | {seed} | {h[-1]['co_one_step_accuracy']:.2f} | "
            f"{h[-1]['co_multi_step_accuracy']:.2f} | {best:.2f} | "
            f"{', '.join(map(str, epochs)) or '—'} |"
        )
    return "\n".join(lines), flagged


# ---------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", choices=sorted(mnist.PROFILES), default="quick")
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    p.add_argument("--attacks", nargs="+", choices=sorted(ATTACKS), default=list(ATTACKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--study-eps", type=float, default=2.0, help="attack strength of the table")
    p.add_argument("--monitor-size", type=int, default=100, help="0 turns the monitor off")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train and attack nothing: summarise the finished models and rows of the run",
    )
    add_run_arguments(
        p,
        out=REPO / "results" / "channels",
        threads=None,
        threads_help="torch intra-op CPU threads (use 1 on a shared 2-core machine)",
    )
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, attack, summarise; see the module docstring."""
    args = parse_args(argv)
    profile = mnist._override(mnist.PROFILES[args.profile], args.set)
    study = StudySettings(
        seeds=tuple(args.seeds), eps=args.study_eps, monitor_size=args.monitor_size
    )
    device = resolve_device(args.device)
    apply_threads(args.threads)
    apply_allocator(args.allocator)
    run = RunDirectory(args.out / (args.run or profile.name))
    # the seeds are not guarded: a rerun with more seeds reuses the models of the others
    settings = {k: v for k, v in config_dict(study).items() if k != "seeds"}
    config = {**config_dict(profile), "study": settings, "seeds": list(study.seeds)}
    guarded = tuple(k for k in mnist.GUARDED if k != "seed") + ("study",)
    run.prepare(config, fresh=args.fresh, guarded=guarded, defaults=mnist.ADDED_SETTINGS)
    progress = not args.no_progress
    names = [n for n in RECIPES if n in args.recipes]
    if "BL" not in names:
        names.insert(0, "BL")  # times are relative to BL
    t_all = time.perf_counter()
    print(f"advbayes channels study: profile {profile.name}, device {device}, run {run.root}")
    data = mnist.load_data(profile, args.data_dir, args.download)
    monitor = None
    if study.monitor_size > 0:
        xm, ym = held_out(profile, study.monitor_size)
        monitor = OverfittingMonitor(
            xm,
            ym,
            eps=profile.train_eps,
            steps=study.monitor_steps,
            num_samples=study.monitor_draws,
            drop=study.monitor_drop,
        )
    store = RowStore(run.rows)
    metas: dict[tuple[str, int], dict] = {}
    jobs = [(seed, name) for seed in study.seeds for name in names]
    bar = tqdm(jobs, desc="models", disable=not progress, dynamic_ncols=True)
    for seed, name in bar:
        bar.set_postfix_str(f"{name} seed {seed}")
        if args.report_only:
            meta_path = run.models / f"{name}-s{seed}.json"
            if meta_path.exists():
                metas[(name, seed)] = json.loads(meta_path.read_text())
            continue
        model, meta = train(name, seed, profile, data, run, device, monitor, progress)
        metas[(name, seed)] = meta
        evaluate(name, seed, model, profile, study, data, store, list(args.attacks), device)
        print(f"  {name} seed {seed}: trained in {meta['train_time_s']:.1f} s")

    rows = [
        r
        for r in store.rows()
        if r["model"] in names
        and r["train_seed"] in study.seeds
        and (r["model"], r["train_seed"]) in metas
    ]
    if args.report_only:  # a model counts once all its rows exist
        want = profile.num_test_sets * (1 + len(args.attacks))
        count = Counter((r["model"], r["train_seed"]) for r in rows)
        rows = [r for r in rows if count[(r["model"], r["train_seed"])] == want]
    times = {k: float(m["train_time_s"]) for k, m in metas.items()}
    stats = summary(rows, times, names, list(args.attacks))
    headline = args.attacks[0]
    front = pareto_front(stats, headline)
    table = pareto_table(stats, names, list(args.attacks), front, study.eps)
    passing, bar_lines = bar_check(stats, headline)
    co_table, flagged = overfitting_report(metas, study.monitor_drop)
    text = "\n".join(
        [
            f"# Channels study ({profile.name} profile)",
            "",
            f"Mean (std) over training seeds {list(study.seeds)}; each seed's metrics pool "
            f"{profile.num_test_sets} test sets of {profile.test_size} images. Attacks white "
            f"box at L2 ε = {study.eps:g}: PGD {profile.attack_steps} steps, random start; "
            f"{profile.eval_samples} posterior draws (point estimates: 1). Training: "
            f"{profile.epochs} epochs, batch {profile.batch_size}, ε_train = "
            f"{profile.train_eps:g}, σ = {profile.sigma:g}; time = training wall time "
            "(epochs only) relative to BL with the same seed. `*`: on the Pareto front "
            f"(accuracy under {headline} against time).",
            "",
            table,
            "",
            f"## The bar (against {REFERENCE}, {headline} at ε = {study.eps:g})",
            "",
            *bar_lines,
            "",
            f"Bar met by: {', '.join(passing) if passing else 'none'}",
            "",
            "## Catastrophic overfitting (held-out monitor)",
            "",
            co_table,
            "",
            "Flagged: "
            + (", ".join(f"{n} seed {s} epochs {e}" for n, s, e in flagged) if flagged else "none"),
            "",
        ]
    )
    (run.root / "pareto.md").write_text(text)
    pareto_plot(
        stats,
        names,
        headline,
        front,
        run.root / "pareto.png",
        f"MNIST {profile.name}: accuracy under {headline} (ε = {study.eps:g}) vs training time",
    )
    write_results(
        run.root / "results.json",
        config={**config, "recipes": names, "attacks": list(args.attacks)},
        provenance=provenance(device),
        wall_times={"total_this_invocation": time.perf_counter() - t_all},
        rows=rows,
        extra={
            "summary": {n: {k: list(v) for k, v in s.items()} for n, s in stats.items()},
            "pareto_front": front,
            "bar_met_by": passing,
            "catastrophic_overfitting": [
                {"recipe": n, "seed": s, "epochs": e} for n, s, e in flagged
            ],
            "training_history": {f"{n}-s{s}": m["history"] for (n, s), m in metas.items()},
        },
    )
    print()
    print(text)
    print(f"wrote {run.root}/results.json, pareto.md and pareto.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
