"""Channels study: robustness against training cost, the Pareto front of the proactive defences.

``uv run bench/channels.py`` trains, on the MNIST quick profile of ``bench/mnist.py`` (its
data, test sets and training settings), every recipe of the study -- BL, AT, AT-PGD, OS, OS50,
MIX, NN, NN50, the random-start one-step variants OS50-RS and MIX-RS, and the amortised
adversary AMO and AMO50 with their one-pass variants AMO-J and AMO50-J (docs/theory.md) --
with several training seeds, attacks each model
white box at ε = 2 (L2; PGD with the bench's 50 steps and random start), and writes
``results/channels/<run>/``: ``results.json`` (configuration, provenance, every row, each
model's training history), ``pareto.md`` (mean (std) over training seeds of accuracy under
attack, NLL under attack, clean accuracy, clean NLL and training time relative to BL in the
same seed; the Pareto front on robust accuracy against time), ``pareto.png`` (robust accuracy
against relative training time) and ``overfitting.md`` (catastrophic-overfitting check).

The bar: does some Bayesian channel recipe match or beat AT-PGD's accuracy under attack with
a lower NLL under attack, at no more than AT-PGD's training time in the same run? It is
judged under AA when AA is among the attacks (else under the first attack), and reported
under the others for comparison.

Catastrophic overfitting: every model but BL is trained with
:class:`robust_vi.OverfittingMonitor` on 100 held-out test images (not in the test sets):
one-step and 10-step PGD accuracy after every epoch, flagged in the history when the
multi-step accuracy collapses while the one-step accuracy rises (its time is not counted in
the training time).

Attacks are entries of the shared registry :data:`benchlib.evaluate.ATTACK_FUNCTIONS`
(``--attacks``, e.g. ``PGD AA``: AA is the ensemble of Croce & Hein 2020 with the profile's
effort) and the recipes entries of :data:`benchlib.zoo.CHANNEL_MODELS`. Finished models and
rows are cached in the run directory: rerunning resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqdm.auto import tqdm  # noqa: E402

import mnist  # noqa: E402
from benchlib.evaluate import (  # noqa: E402
    ATTACK_FUNCTIONS,
    AttackSettings,
    attack,
    attack_settings,
    classification_metrics,
)
from benchlib.experiment import TrainSpec, config_dict  # noqa: E402
from benchlib.harness import Session, run_grid, script_parser, select_profile  # noqa: E402
from benchlib.regression_eval import stable_generator  # noqa: E402
from benchlib.zoo import CHANNEL_MODELS, mnist_train_specs  # noqa: E402
from bnn_core import PosteriorPredictive  # noqa: E402
from robust_vi import OverfittingMonitor, collapsed  # noqa: E402

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
    "AMO-J",
    "AMO50-J",
)
"""Every recipe of the study; ``-RS``: one-step components with a random start; ``-J``: the
amortised generator trained jointly from the model step's backward pass, its refinement on a
quarter-resolution grid (``generator_stride=4``)."""


def recipe_choices() -> tuple[str, ...]:
    """What ``--recipes`` accepts: the study's recipes, then the registry's other trained
    models (e.g. the half-resolution amortised variants AMO-J2 and AMO50-J2, or what
    ``bench/amortised_ablation.py`` registers), in that order."""
    others = (k for k, v in CHANNEL_MODELS.items() if k not in RECIPES and not v.reactive)
    return (*RECIPES, *others)


def point_estimate(name: str) -> bool:
    """Whether the registry's model ``name`` is a point estimate (AT, AT-PGD)."""
    decl = CHANNEL_MODELS.get(name)
    return decl is not None and decl.point_estimate


REFERENCE = "AT-PGD"
"""The bar's reference: multi-step adversarial training."""
DEFAULT_ATTACKS = ("PGD",)
"""The attacks scored at the study strength by default (clean accuracy is always scored)."""


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


def train_spec(name: str, seed: int, profile: mnist.Profile) -> TrainSpec:
    """Recipe ``name`` of :data:`CHANNEL_MODELS` with training seed ``seed``: ``<name>-s<seed>``."""
    (spec,) = mnist_train_specs(
        dataclasses.replace(profile, seed=seed), [name], registry=CHANNEL_MODELS
    )
    return dataclasses.replace(spec, name=f"{name}-s{seed}", init_seed=seed)


def evaluate(
    name: str,
    seed: int,
    model: torch.nn.Module,
    profile: mnist.Profile,
    study: StudySettings,
    data: dict[str, Tensor],
    session: Session,
    attacks: list[str],
    settings: AttackSettings,
) -> None:
    """Score ``model`` clean and under every attack on every test set (cached rows)."""
    device = session.device
    tasks = [
        (name, a, 0.0 if a == "Clean" else study.eps, seed * 100 + s)
        for s in range(profile.num_test_sets)
        for a in ["Clean", *attacks]
    ]

    def score(task: tuple) -> dict:
        _, attack_name, eps, row_seed = task
        s = row_seed - seed * 100
        x = data["x_test"][s].to(device)
        y = data["y_test"][s].to(device)
        predictive = PosteriorPredictive(
            model,
            num_samples=1 if point_estimate(name) else profile.eval_samples,
            generator=stable_generator(device, "draws", name, seed, s),
        )
        g = stable_generator(device, "attack", name, seed, s, attack_name, eps)
        x_adv = attack(predictive, x, y, attack_name, eps, settings, generator=g)
        with torch.no_grad():
            scores = classification_metrics(predictive(x_adv), y)
        return {"train_seed": seed, "test_set": s, **scores, "n": len(y)}

    run_grid(
        tasks, score, session.store, progress=session.progress, desc=f"{name}-s{seed}", leave=False
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
        if point_estimate(name) or name == "BL" or acc not in s or "time" not in s:
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
    p = script_parser(
        __doc__,
        script="channels",
        profiles=mnist.PROFILES,
        threads_help="torch intra-op CPU threads (use 1 on a shared 2-core machine)",
        set_example="--set epochs=2 test_size=20 (the MNIST profile's settings)",
    )
    p.add_argument(
        "--recipes",
        nargs="+",
        choices=recipe_choices(),
        default=list(RECIPES),
        help="default: the study's recipes; the registry's other models may be added",
    )
    p.add_argument(
        "--attacks", nargs="+", choices=sorted(ATTACK_FUNCTIONS), default=list(DEFAULT_ATTACKS)
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--study-eps", type=float, default=2.0, help="attack strength of the table")
    p.add_argument("--monitor-size", type=int, default=100, help="0 turns the monitor off")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="train and attack nothing: summarise the finished models and rows of the run",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, attack, summarise; see the module docstring."""
    args = parse_args(argv)
    profile = select_profile(mnist.PROFILES, args, optional_ints=mnist.OPTIONAL_INTS)
    study = StudySettings(
        seeds=tuple(args.seeds), eps=args.study_eps, monitor_size=args.monitor_size
    )
    # the seeds are not guarded: a rerun with more seeds reuses the models of the others
    settings = {k: v for k, v in config_dict(study).items() if k != "seeds"}
    config = {**config_dict(profile), "study": settings, "seeds": list(study.seeds)}
    guarded = tuple(k for k in mnist.GUARDED if k != "seed") + ("study",)
    session = Session.start(
        args, profile, guarded=guarded, defaults=mnist.ADDED_SETTINGS, config=config
    )
    run = session.run
    names = [n for n in recipe_choices() if n in args.recipes]
    if "BL" not in names:
        names.insert(0, "BL")  # times are relative to BL
    print(
        f"advbayes channels study: profile {profile.name}, device {session.device}, run {run.root}"
    )
    data = mnist.load_data(profile, args.data_dir, args.download)
    monitor = []
    if study.monitor_size > 0:
        xm, ym = held_out(profile, study.monitor_size)
        monitor.append(
            OverfittingMonitor(
                xm,
                ym,
                eps=profile.train_eps,
                steps=study.monitor_steps,
                num_samples=study.monitor_draws,
                drop=study.monitor_drop,
            )
        )
    effort = attack_settings(profile)
    metas: dict[tuple[str, int], dict] = {}
    jobs = [(seed, name) for seed in study.seeds for name in names]
    bar = tqdm(jobs, desc="models", disable=not session.progress, dynamic_ncols=True)
    for seed, name in bar:
        bar.set_postfix_str(f"{name} seed {seed}")
        spec = train_spec(name, seed, profile)
        if args.report_only:
            meta = session.finished(spec.name)
            if meta is not None:
                metas[(name, seed)] = meta
            continue
        with session.timed("train"):
            model = session.train(
                spec,
                (data["x_train"], data["y_train"]),
                callbacks=[] if name == "BL" else monitor,
            )
        metas[(name, seed)] = session.train_meta[spec.name]
        with session.timed("evaluate"):
            evaluate(name, seed, model, profile, study, data, session, list(args.attacks), effort)

    rows = [
        r
        for r in session.store.rows()
        if r["model"] in names
        and r["train_seed"] in study.seeds
        and (r["model"], r["train_seed"]) in metas
        and r["attack"] in ("Clean", *args.attacks)
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
    # the bar is judged under AA (the attack ensemble) when it ran, else the first attack
    bar_attack = "AA" if "AA" in args.attacks else headline
    passing, bar_lines = bar_check(stats, bar_attack)
    other_bars = [
        line
        for a in args.attacks
        if a != bar_attack
        for line in (
            f"Under {a}, for comparison: met by {', '.join(bar_check(stats, a)[0]) or 'none'}",
            "",
        )
    ]
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
            f"## The bar (against {REFERENCE}, {bar_attack} at ε = {study.eps:g})",
            "",
            *bar_lines,
            "",
            f"Bar met by: {', '.join(passing) if passing else 'none'}",
            "",
            *other_bars,
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
    session.finish(
        rows,
        config_extra={"recipes": names, "attacks": list(args.attacks)},
        extra={
            "summary": {n: {k: list(v) for k, v in s.items()} for n, s in stats.items()},
            "pareto_front": front,
            "bar_attack": bar_attack,
            "bar_met_by": passing,
            "catastrophic_overfitting": [
                {"recipe": n, "seed": s, "epochs": e} for n, s, e in flagged
            ],
        },
    )
    session.announce(text, ("results.json", "pareto.md", "pareto.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
