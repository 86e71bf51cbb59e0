"""Reproduce the paper's regression experiments: Tables 3, 4 (Wine, Energy) and 8 (Housing).

``uv run bench/regression.py`` trains, on each of three seeded 90/10 train/test splits of
UCI Wine Quality (red), Energy Efficiency (heating load) and California Housing, the
paper's regression models BL, MIX, NN50 and AT, builds the reactive onPure and offPure
defences on BL, attacks every model white-box with PGD1, PGD, PGD+ and ENT over a grid of
L2 strengths, and writes ``results/regression/<run>/``: ``results.json`` (configuration,
versions, seeds, wall times and every number as tidy rows), ``tables.md``, PNG plots
(RMSE and NLL against strength, one panel per attack, one figure per dataset and metric)
and ``paper_vs_ours.md``.

Profiles: ``quick`` (the default: every dataset, split, model and attack with the paper's
50 attack steps, but fewer epochs and posterior draws, Housing's training set subsampled
to 4,000 rows and its test sets to 500; about five minutes on a 2-core CPU) and ``paper``
(all the data, more epochs and posterior draws, a finer strength grid, adaptive PGD1 too;
not timed end to end: its adaptive attacks on Housing's 2,064-row test sets alone take
about half an hour on a CPU). Finished models and evaluation rows are cached in the run
directory: a rerun resumes and never retrains a finished model.

Data come from ``--data-dir``, then ``$ADVBAYES_DATA``, then the user cache
(:mod:`advbayes_data`); ``--download`` fetches missing files from UCI / StatLib.

Choices (the paper does not state them; each is also in ``paper_vs_ours.md``):

* Data: ``wine`` is the red-wine table (1,599 rows, 11 inputs), ``energy`` predicts Y1
  (heating load, 768 rows, 8 inputs), ``housing`` predicts the median house value
  (20,640 rows, 8 inputs); inputs and targets are standardised with the training split's
  statistics (docs/theory.md), and every metric is in **standardised target units** (the paper's
  Wine numbers look standardised too; ``results.json`` also holds ``rmse_original``,
  ``nll_original``, ``std_original`` in the target's own units).
* Seeds: row ``seed`` = the split index 0..2. Unlike MNIST (one model, three test sets),
  each split has its own trained models; tables show mean (std) over the splits.
* Models: the paper's MLP ``d→16→16→1`` (ReLU) with a learned homoscedastic noise ``s``.
  BL = plain ELBO; MIX = 0.4 identity (Gaussian augmentation ``σ₀``) + 0.6 one-step
  ``mse`` channel with noise ``σ``; NN50 = ½ identity + ½ learned dense generator (two
  hidden layers of 128, budget ``ε``, ``σ_max = σ``); AT = the deterministic twin
  (``regression_mlp(..., bayesian=False)``, a point estimate) trained on ½ clean + ½
  deterministic one-step ``mse`` attacks, its NLL the Gaussian one with its learned ``s``;
  onPure/offPure = ``ReactivePPD`` (online eq. 4 / offline eq. 5) on BL with a one-step
  ``mse`` channel (``reactive_eps``, kernel width ``reactive_sigma``) over a random subset
  of ``reactive_train_size`` training rows (the paper also uses a subsample). Kernel
  width ``σ = 0.5``: about a test row's distance to its nearest training rows (median
  nearest-neighbour distance 0.94 on Wine, 0.65 on Energy, 0.28 on Housing), so the
  purification averages over a handful of neighbours rather than one or all of them.
  Training budget ``train_eps = 1.0`` and ``σ = σ₀ = 0.1`` (per standardised feature).
  Epochs: enough for the training loss to flatten (tripling them changed the clean RMSE
  by < 0.02); one CPU thread (``--threads``), since the 16-unit MLPs gain nothing from more.
* Attacks: L2 balls on standardised inputs, no clamping. The label objective of PGD1, PGD
  and the first half of PGD+ is the squared error ``mse`` of the predictive mean (the
  attack on the RMSE the tables report, and the objective the MIX and AT channels train
  against; on BL the Gaussian ``nll`` objective gives the same RMSE within 0.02 at
  ``ε = 1``, since BL's predictive variance hardly moves); ENT and the second half of PGD+
  raise the log predictive std. A point estimate's predictive std is the
  constant ``s``, so ENT leaves AT at PGD's random start. Strength grid
  ``(0.5, 1, 2, 3)``; the tables use ``ε = 1`` (one standard deviation of one feature
  spent in any direction: BL's RMSE grows 2-fold on Wine, 5-fold on Housing and 16-fold
  on Energy, and it is the training budget of MIX, NN50 and AT). White box: every attack aims at
  the predictive it is scored on (for BNNs with the same fixed ``M`` posterior draws used
  for scoring), except the plain onPure/offPure rows, which see BL's attacked inputs (the
  model they wrap; transfer); the "(adaptive)" rows attack the reactive PPD itself
  (``adaptive_attacks``).
* Metrics: RMSE of the predictive mean; NLL of the exact Gaussian mixture of the PPD
  (per-draw means of the fixed draws), of the reactive mixture for onPure/offPure, and the
  Gaussian NLL for AT; and the mean predictive std (``std``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))


from adv_channels import OneStepChannel  # noqa: E402
from adv_reactive import ReactivePPD  # noqa: E402
from benchlib import paper  # noqa: E402
from benchlib.cli import (  # noqa: E402
    parse_setting,
)
from benchlib.evaluate import ATTACK_FUNCTIONS, ATTACKS, AttackSettings, attack  # noqa: E402
from benchlib.experiment import (  # noqa: E402
    RunDirectory,
    TrainSpec,
    train_or_load,
)
from benchlib.harness import Session, run_grid, script_parser  # noqa: E402
from benchlib.regression_eval import (  # noqa: E402
    RegressionScores,
    draw_scores,
    reactive_scores,
    stable_generator,
)
from benchlib.report import (  # noqa: E402
    plot_metric_panels,
    summarise,
    table_column_groups,
)
from benchlib.results import RowStore, row_key  # noqa: E402
from bnn_core import PosteriorPredictive, regression_mlp  # noqa: E402
from robust_vi import Recipe, recipe  # noqa: E402

DATASETS = ("wine", "energy", "housing")
"""The datasets, by their names in :func:`advbayes_data.load_uci`."""
TITLES = {"wine": "Wine", "energy": "Energy", "housing": "California Housing"}
PROACTIVE = ("BL", "MIX", "NN50", "AT")
REACTIVE = ("onPure", "offPure")
MODELS = ("BL", "MIX", "NN50", "onPure", "offPure", "AT")
"""Every model, in the paper's table order."""
POINT_ESTIMATES = ("AT",)
ADAPTIVE_SUFFIX = " (adaptive)"
METRICS = (("rmse", "RMSE"), ("nll", "NLL"), ("std", "predictive std"))


@dataclass(frozen=True)
class DataSettings:
    """How the models of one dataset are trained, and on how much data.

    Attributes:
        epochs: Training epochs of every proactive model.
        batch_size: Minibatch size.
        lr: Adam's learning rate (decayed by the profile's ``lr_decay`` per epoch).
        train_size: Training rows used per split (a seeded random subset; ``None``: all).
        test_size: Test rows scored per split (a seeded random subset; ``None``: all).
    """

    epochs: int
    batch_size: int
    lr: float
    train_size: int | None = None
    test_size: int | None = None


@dataclass(frozen=True)
class Profile:
    """Every setting of a run.

    Attributes:
        name: ``quick`` or ``paper``.
        data: Per-dataset training settings (``wine``, ``energy``, ``housing``).
        num_splits: Train/test splits per dataset (each with its own models).
        lr_decay: Per-epoch exponential decay of the learning rate.
        train_eps: L2 budget of the training channels (MIX, NN50, AT), standardised inputs.
        sigma: Noise of MIX's one-step component; ``σ_max`` of NN50's generator.
        sigma0: Gaussian augmentation of MIX's identity component.
        eval_samples: Posterior draws ``M`` of every BNN predictive at test time.
        eps_grid: Attack strengths (L2, standardised inputs).
        attack_steps: Steps of PGD and ENT (PGD+ uses half on each objective).
        table_eps: Strength of the Table-3/4/8-style tables (the paper does not state it).
        reactive_eps: Budget of the one-step channel whose density purifies (onPure/offPure).
        reactive_sigma: Its noise ``σ``: the kernel width of the purification weights.
        reactive_samples: Posterior draws ``M`` of the reactive defences.
        reactive_train_size: Training rows the reactive PPD weights (``None``: all).
        adaptive_attacks: Attacks also run through the reactive PPD itself (adaptive).
        seed: Seed of the splits, training (plus the split index) and the subsets.
    """

    name: str
    data: dict[str, DataSettings]
    num_splits: int
    lr_decay: float
    train_eps: float
    sigma: float
    sigma0: float
    eval_samples: int
    eps_grid: tuple[float, ...]
    attack_steps: int
    table_eps: float
    reactive_eps: float
    reactive_sigma: float
    reactive_samples: int
    reactive_train_size: int | None
    adaptive_attacks: tuple[str, ...]
    seed: int = 0


PROFILES = {
    "quick": Profile(
        name="quick",
        data={
            "wine": DataSettings(epochs=100, batch_size=64, lr=3e-3),
            "energy": DataSettings(epochs=200, batch_size=64, lr=3e-3),
            "housing": DataSettings(
                epochs=40, batch_size=128, lr=3e-3, train_size=4000, test_size=500
            ),
        },
        num_splits=3,
        lr_decay=0.99,
        train_eps=1.0,
        sigma=0.1,
        sigma0=0.1,
        eval_samples=10,
        eps_grid=(0.5, 1.0, 2.0, 3.0),
        attack_steps=50,
        table_eps=1.0,
        reactive_eps=1.0,
        reactive_sigma=0.5,
        reactive_samples=10,
        reactive_train_size=1000,
        adaptive_attacks=("PGD",),
    ),
    "paper": Profile(
        name="paper",
        data={
            "wine": DataSettings(epochs=400, batch_size=64, lr=3e-3),
            "energy": DataSettings(epochs=800, batch_size=64, lr=3e-3),
            "housing": DataSettings(epochs=100, batch_size=128, lr=3e-3),
        },
        num_splits=3,
        lr_decay=0.995,
        train_eps=1.0,
        sigma=0.1,
        sigma0=0.1,
        eval_samples=20,
        eps_grid=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
        attack_steps=50,
        table_eps=1.0,
        reactive_eps=1.0,
        reactive_sigma=0.5,
        reactive_samples=10,
        reactive_train_size=2000,
        adaptive_attacks=("PGD1", "PGD"),
    ),
}

# What cached models and rows depend on: changing any of these needs --fresh or a new --run.
GUARDED = (
    "data",
    "num_splits",
    "lr_decay",
    "train_eps",
    "sigma",
    "sigma0",
    "eval_samples",
    "attack_steps",
    "reactive_eps",
    "reactive_sigma",
    "reactive_samples",
    "reactive_train_size",
    "seed",
)
_OPTIONAL_INTS = ("train_size", "test_size", "reactive_train_size")


# ---------------------------------------------------------------------------------------
# data


def load_splits(
    profile: Profile, datasets: list[str], data_dir: Path | None, download: bool, verify: bool
) -> dict[str, list]:
    """Every dataset's seeded splits, standardised; exits with the loader's message if absent."""
    from advbayes_data import ChecksumError, DatasetNotFoundError, uci_splits

    out = {}
    for name in datasets:
        try:
            out[name] = uci_splits(
                name,
                data_dir,
                num_splits=profile.num_splits,
                seed=profile.seed,
                download=download,
                verify=verify,
            )
        except (DatasetNotFoundError, ChecksumError) as err:
            raise SystemExit(f"{name}: {err}") from None
    return out


def _subset(n: int, size: int | None, *parts: object) -> Tensor | None:
    """Seeded indices of ``size`` of ``n`` rows, or ``None`` when all are kept."""
    if size is None or size >= n:
        return None
    g = stable_generator(torch.device("cpu"), *parts)
    return torch.randperm(n, generator=g)[:size].sort().values


def split_tensors(profile: Profile, dataset: str, data) -> dict[str, Tensor]:
    """Training and test tensors of one split, subsampled as the profile says."""
    settings = profile.data[dataset]
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    keep = _subset(len(x_train), settings.train_size, profile.seed, dataset, data.split, "train")
    if keep is not None:
        x_train, y_train = x_train[keep], y_train[keep]
    keep = _subset(len(x_test), settings.test_size, profile.seed, dataset, data.split, "test")
    if keep is not None:
        x_test, y_test = x_test[keep], y_test[keep]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


# ---------------------------------------------------------------------------------------
# training


def model_id(dataset: str, split: int, name: str) -> str:
    """The cache name of a trained model."""
    return f"{dataset}-split{split}-{name}"


RECIPES: dict[str, Callable[[Profile, int], Recipe]] = {
    "BL": lambda p, d: recipe("BL", task="regression"),
    "MIX": lambda p, d: recipe(
        "MIX", eps=p.train_eps, sigma=p.sigma, sigma0=p.sigma0, task="regression"
    ),
    "NN50": lambda p, d: recipe(
        "NN50", eps=p.train_eps, sigma=p.sigma, task="regression", input_shape=(d,)
    ),
    "AT": lambda p, d: recipe("AT", eps=p.train_eps, task="regression"),
}
"""The trained regression models: ``recipe(profile, in_features)`` by name (adding a model is
one entry here plus its place in :data:`MODELS`)."""


def _recipe(profile: Profile, name: str, in_features: int) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"no recipe for {name!r}")
    return RECIPES[name](profile, in_features)


def train_specs(
    profile: Profile, dataset: str, split: int, in_features: int, names: list[str]
) -> list[TrainSpec]:
    """The recipes of the proactive models of one split (:data:`RECIPES`)."""
    settings = profile.data[dataset]
    specs = []
    for name in names:
        bayesian = name not in POINT_ESTIMATES
        specs.append(
            TrainSpec(
                name=model_id(dataset, split, name),
                build=lambda bayesian=bayesian: regression_mlp(in_features, bayesian=bayesian),
                recipe=_recipe(profile, name, in_features),
                epochs=settings.epochs,
                lr=settings.lr,
                lr_decay=profile.lr_decay,
                batch_size=settings.batch_size,
                seed=profile.seed + split,
            )
        )
    return specs


# ---------------------------------------------------------------------------------------
# evaluation


class SplitEvaluation:
    """The models and test set of one split, their predictives and the attacked inputs.

    BNN predictives keep the same ``M`` posterior draws for every attack and score of the
    split (white box: the attacker aims at exactly the predictive that is scored).
    """

    def __init__(
        self,
        profile: Profile,
        dataset: str,
        split: int,
        tensors: dict[str, Tensor],
        models: dict[str, torch.nn.Module],
        settings: AttackSettings,
        device: torch.device,
    ) -> None:
        self.profile = profile
        self.dataset = dataset
        self.split = split
        self.tensors = tensors
        self.models = models
        self.settings = settings
        self.device = device
        self.x = tensors["x_test"].to(device)
        self.y = tensors["y_test"].to(device)
        self._predictives: dict[str, PosteriorPredictive] = {}
        self._reactive: ReactivePPD | None = None
        self.reactive_fit_s = 0.0

    def reactive(self) -> ReactivePPD:
        """The reactive PPD on BL, fitted on first use."""
        if self._reactive is None:
            t0 = time.perf_counter()
            p = self.profile
            channel = OneStepChannel(
                eps=p.reactive_eps, sigma=p.reactive_sigma, objective="mse", clamp=None
            )
            x, y = self.tensors["x_train"], self.tensors["y_train"]
            keep = _subset(len(x), p.reactive_train_size, p.seed, self.dataset, self.split, "r")
            if keep is not None:
                x, y = x[keep], y[keep]
            self._reactive = ReactivePPD(
                self.models["BL"],
                channel,
                task="regression",
                num_samples=p.reactive_samples,
                generator=stable_generator(self.device, "reactive", self.dataset, self.split),
            ).fit(x.to(self.device), y.to(self.device))
            self.reactive_fit_s = time.perf_counter() - t0
        return self._reactive

    def predictive(self, name: str) -> torch.nn.Module:
        """The predictive a model is scored (and, white box, attacked) with."""
        base = name.removesuffix(ADAPTIVE_SUFFIX)
        if base in REACTIVE:
            reactive = self.reactive()
            reactive.mode = "online" if base == "onPure" else "offline"
            return reactive
        if base not in self._predictives:
            self._predictives[base] = PosteriorPredictive(
                self.models[base],
                num_samples=1 if base in POINT_ESTIMATES else self.profile.eval_samples,
                task="regression",
                generator=stable_generator(self.device, "draws", self.dataset, base, self.split),
            )
        return self._predictives[base]

    def adversarial(self, target: str, name: str, eps: float) -> Tensor:
        """The test set attacked by ``name`` at ``eps``, aiming at ``target``'s predictive."""
        predictive = self.predictive(target)
        g = stable_generator(self.device, "attack", self.dataset, target, self.split, name, eps)
        return attack(predictive, self.x, self.y, name, eps, self.settings, generator=g)

    def score(self, name: str, x_adv: Tensor) -> RegressionScores:
        """RMSE, NLL and mean predictive std of model ``name`` at ``x_adv``."""
        predictive = self.predictive(name)
        if isinstance(predictive, ReactivePPD):
            return reactive_scores(predictive, x_adv, self.y)
        assert isinstance(predictive, PosteriorPredictive)
        with torch.no_grad():
            draws = predictive.draws(x_adv)
            noise_var = predictive.likelihood.variance.detach()
        return draw_scores(draws, noise_var, self.y)


def evaluation_tasks(
    profile: Profile, models: list[str], attacks: list[str], split: int
) -> list[tuple]:
    """Every (model, attack, eps, split) to score; reactive defences also adaptively."""
    tasks = []
    for model in models:
        variants = [model]
        if model in REACTIVE:
            variants.append(model + ADAPTIVE_SUFFIX)
        for variant in variants:
            adaptive = variant.endswith(ADAPTIVE_SUFFIX)
            for name in attacks:
                if adaptive and (name == "Clean" or name not in profile.adaptive_attacks):
                    continue
                grid = [0.0] if name == "Clean" else list(profile.eps_grid)
                for eps in grid:
                    tasks.append((variant, name, eps, split))
    return tasks


def run_evaluation(
    ev: SplitEvaluation, tasks: list[tuple], store: RowStore, y_scale: float, progress: bool
) -> float:
    """Score every task not yet in the row store; return the wall time spent."""
    bl_cache: dict[tuple, Tensor] = {}

    def score(task: tuple) -> dict:
        variant, name, eps, _ = task
        base = variant.removesuffix(ADAPTIVE_SUFFIX)
        adaptive = variant != base
        if base in REACTIVE and not adaptive:
            # Transfer: the attacker aims at BL's posterior predictive (the model the reactive
            # defence wraps); the defence sees the same attacked inputs as BL.
            if (name, eps) not in bl_cache:
                bl_cache[(name, eps)] = ev.adversarial("BL", name, eps)
            x_adv = bl_cache[(name, eps)]
            target = "BL posterior predictive (transfer)"
        else:
            x_adv = ev.adversarial(variant, name, eps)
            target = "reactive PPD (adaptive)" if adaptive else "own predictive"
            if base == "BL":
                bl_cache[(name, eps)] = x_adv
        scores = ev.score(variant, x_adv)
        return {**scores.as_dict(y_scale), "n": len(ev.y), "attack_target": target}

    return run_grid(
        tasks,
        score,
        store,
        progress=progress,
        desc=f"{ev.dataset} split {ev.split}",
        prefix={"dataset": ev.dataset},
        leave=False,
    )


# ---------------------------------------------------------------------------------------
# report


def shown_models(models: list[str]) -> list[str]:
    """Table rows: the models in the paper's order, then the adaptive reactive rows."""
    shown = [m for m in MODELS if m in models]
    return shown + [m + ADAPTIVE_SUFFIX for m in REACTIVE if m in models]


def table_strength(profile: Profile) -> float:
    """``table_eps``, or the nearest strength of the grid when the grid lacks it."""
    return min(profile.eps_grid, key=lambda e: (abs(e - profile.table_eps), e))


def write_report(
    run: RunDirectory,
    profile: Profile,
    rows: dict[str, list[dict]],
    models: list[str],
    attacks: list[str],
) -> str:
    """Write ``tables.md``, the plots and ``paper_vs_ours.md``; return the tables' text."""
    shown = shown_models(models)
    eps = table_strength(profile)
    datasets = [d for d in DATASETS if rows.get(d)]
    parts = [
        f"# Regression results ({profile.name} profile)",
        "",
        f"Mean (std) over {profile.num_splits} seeded 90/10 train/test splits, each with its "
        "own trained models; inputs and targets standardised with the training split's "
        "statistics, all numbers in standardised target units. Attacks in L2 at strength "
        f"ε = {eps:g} (standardised inputs, no clamping); label objective `mse`; "
        f"{profile.eval_samples} posterior draws; PGD and ENT {profile.attack_steps} steps, "
        f"PGD+ {profile.attack_steps // 2} + {profile.attack_steps // 2}. Every attack aims "
        "at the predictive of the model it is scored on (white box), except the plain onPure/"
        "offPure rows, which see the inputs crafted against BL's posterior predictive (the "
        "model they wrap); the '(adaptive)' rows attack the reactive PPD itself. Best mean "
        "per column in bold (lowest).",
        "",
    ]
    pair = [d for d in ("wine", "energy") if d in datasets]
    if pair:
        for number, metric, label in ((3, "rmse", "RMSE"), (4, "nll", "NLL")):
            parts += [
                f"## Table {number}: {label} ({' and '.join(TITLES[d] for d in pair)})",
                "",
                table_column_groups(
                    [(TITLES[d], rows[d], metric) for d in pair],
                    eps=eps,
                    models=shown,
                    attacks=attacks,
                    best="min",
                ),
                "",
            ]
    if "housing" in datasets:
        parts += [
            "## Table 8: California Housing (RMSE and NLL)",
            "",
            table_column_groups(
                [("RMSE", rows["housing"], "rmse"), ("NLL", rows["housing"], "nll")],
                eps=eps,
                models=shown,
                attacks=attacks,
                best="min",
            ),
            "",
        ]
    parts += ["## Mean predictive std", ""]
    parts += [
        table_column_groups(
            [(TITLES[d], rows[d], "std") for d in datasets],
            eps=eps,
            models=shown,
            attacks=attacks,
        ),
        "",
    ]
    attacked = [a for a in attacks if a != "Clean"]
    for d in datasets:
        for metric, label in METRICS[:2]:
            parts += [f"## Every strength: {TITLES[d]}, {label}", ""]
            for name in attacked:
                parts += [f"### {name}", "", _grid_table(rows[d], metric, name, shown, profile)]
                parts.append("")
    text = "\n".join(parts)
    (run.root / "tables.md").write_text(text)

    for d in datasets:
        for metric, label in METRICS[:2]:
            plot_metric_panels(
                rows[d],
                metric=metric,
                attacks=attacked,
                models=shown,
                strengths=profile.eps_grid,
                path=run.root / f"{d}_{metric}_vs_strength.png",
                title=f"{TITLES[d]}: {label} against attack strength ({profile.name} profile)",
                ylabel=f"{label} (standardised)",
                y_scale="symlog" if metric == "nll" else "linear",
            )
    (run.root / "paper_vs_ours.md").write_text(
        paper_comparison(rows, profile, shown, attacks, datasets)
    )
    return text


def _grid_table(rows, metric, name, models, profile) -> str:
    summary = summarise(rows, metric)
    grid = profile.eps_grid
    head = "| Model | Clean | " + " | ".join(f"{e:g}" for e in grid) + " |"
    lines = [head, "|---" * (len(grid) + 2) + "|"]
    for m in models:
        cells = []
        for attack_name, eps in [("Clean", 0.0)] + [(name, e) for e in grid]:
            k = (m, attack_name, round(float(eps), 6))
            cells.append(f"{summary[k][0]:.2f}" if k in summary else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_comparison(
    rows: dict[str, list[dict]],
    profile: Profile,
    models: list[str],
    attacks: list[str],
    datasets: list[str],
) -> str:
    """Our Tables 3, 4 and 8 beside the paper's, with an honest list of differences."""
    eps = table_strength(profile)
    sizes = ", ".join(
        f"{d} {s.epochs} epochs"
        + (f" on {s.train_size} training rows" if s.train_size else "")
        + (f", {s.test_size} test rows per split" if s.test_size else "")
        for d, s in profile.data.items()
        if d in datasets
    )
    out = [
        f"# Regression: the paper's Tables 3, 4 and 8 and ours ({profile.name} profile)",
        "",
        "Cells are `paper / ours (ours − paper)`, mean over three splits. Read the "
        "differences with these in mind:",
        "",
        f"- Strength: the paper does not state the budget of its Tables 3, 4 and 8; ours is "
        f"L2 ε = {eps:g} on standardised inputs (the training budget of MIX, NN50 and AT). "
        "The paper's BL RMSE on Wine grows 20–30-fold under attack (0.75 → 15–22), which "
        "needs either a much larger budget or a much steeper BL than ours; our grid "
        f"{', '.join(f'{e:g}' for e in profile.eps_grid)} is in tables.md and the plots.",
        "- Units: ours are standardised targets (training-split mean and std). The paper's "
        "Wine numbers are consistent with that (clean RMSE 0.75, NLL 1.16); its Energy "
        "numbers (clean RMSE 2.32 ± 1.34 with NLL 0.64) are not consistent with one "
        "Gaussian in any single unit, so compare Energy qualitatively. results.json also "
        "has every metric in the original units (`*_original`).",
        "- Data: Wine = red wine (1,599 rows), Energy = heating load (Y1), Housing = the "
        "median house value; three seeded 90/10 splits, each with its own models. The "
        "paper's splits, hyperparameters (epochs, learning rates, channel noise, budgets, "
        "reactive subset and kernel width) are unpublished in its text; ours: "
        f"{sizes}; train ε = {profile.train_eps:g}, σ = {profile.sigma:g}, σ₀ = "
        f"{profile.sigma0:g}; onPure/offPure: one-step `mse` channel ε = "
        f"{profile.reactive_eps:g}, σ = {profile.reactive_sigma:g}, "
        f"{profile.reactive_train_size or 'all'} training rows, "
        f"{profile.reactive_samples} draws.",
        f"- Attacks: label objective `mse` (squared error of the predictive mean); "
        f"{profile.attack_steps} PGD/ENT steps (the paper: 50), {profile.eval_samples} "
        "posterior draws; ENT raises the log predictive std, which a point estimate (AT) "
        "keeps constant, so ENT only moves AT to PGD's random start.",
        "- NLL: the exact Gaussian-mixture NLL of the PPD for BNNs, the reactive mixture for "
        "onPure/offPure, the Gaussian NLL with the learned noise for AT.",
        "",
    ]
    for d in datasets:
        ref_rmse, ref_nll = paper.TABLE3_RMSE.get(d, {}), paper.TABLE4_NLL.get(d, {})
        table = {"wine": "Tables 3, 4", "energy": "Tables 3, 4", "housing": "Table 8"}[d]
        for title, ref, metric in (("RMSE", ref_rmse, "rmse"), ("NLL", ref_nll, "nll")):
            summary = summarise(rows[d], metric)
            out += [f"## {TITLES[d]}: {title} ({table})", ""]
            out += ["| Model | " + " | ".join(attacks) + " |", "|---" * (len(attacks) + 1) + "|"]
            for m in models:
                base = m.removesuffix(ADAPTIVE_SUFFIX)
                cells = []
                for a in attacks:
                    ours = summary.get((m, a, 0.0 if a == "Clean" else round(float(eps), 6)))
                    theirs = ref.get(base, {}).get(a) if m == base or a != "Clean" else None
                    cells.append(_pair_cell(theirs, ours))
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out.append("")
        out += [f"### {TITLES[d]}: what agrees and what does not", ""]
        out += _verdicts(rows[d], d, eps, attacks)
        out.append("")
    return "\n".join(out) + "\n"


def _pair_cell(theirs, ours) -> str:
    if theirs is None and ours is None:
        return "—"
    if theirs is None:
        return f"— / {ours[0]:.2f}"
    if ours is None:
        return f"{theirs[0]:.2f} / —"
    return f"{theirs[0]:.2f} / {ours[0]:.2f} ({ours[0] - theirs[0]:+.2f})"


def _verdicts(rows: list[dict], dataset: str, eps: float, attacks: list[str]) -> list[str]:
    rm, nl = summarise(rows, "rmse"), summarise(rows, "nll")
    ref_rm, ref_nl = paper.TABLE3_RMSE[dataset], paper.TABLE4_NLL[dataset]
    attacked = [a for a in attacks if a != "Clean"]

    def get(summary, m, a):
        k = (m, a, 0.0 if a == "Clean" else round(float(eps), 6))
        return summary[k][0] if k in summary else None

    def worst(summary, m):
        values = [v for a in attacked if (v := get(summary, m, a)) is not None]
        return max(values) if values else None

    def paper_worst(ref, m):
        return max(ref[m][a][0] for a in attacked) if m in ref and attacked else None

    def fmt(v):
        return "—" if v is None else f"{v:.2f}"

    lines = []
    bl_c, bl_w = get(rm, "BL", "Clean"), worst(rm, "BL")
    if bl_c and bl_w is not None:
        ratio = bl_w / bl_c
        p_ratio = paper_worst(ref_rm, "BL") / ref_rm["BL"]["Clean"][0]
        verdict = "blows up, as in the paper" if ratio >= 2 else "does NOT blow up as in the paper"
        lines.append(
            f"- BL under attack: clean RMSE {bl_c:.2f} → worst attack {bl_w:.2f} "
            f"({ratio:.1f}×; paper {p_ratio:.1f}×): BL {verdict}; its worst NLL "
            f"{fmt(worst(nl, 'BL'))} (paper {fmt(paper_worst(ref_nl, 'BL'))})."
        )
    robust = {m: (worst(rm, m), worst(nl, m)) for m in ("MIX", "NN50") if worst(rm, m)}
    if robust and bl_w is not None:
        stable = all(r < bl_w for r, _ in robust.values())
        nll_bl = worst(nl, "BL")
        calm = nll_bl is not None and all(n < nll_bl for _, n in robust.values())
        described = ", ".join(
            f"{m} {fmt(r)} RMSE / {fmt(n)} NLL (paper {fmt(paper_worst(ref_rm, m))} / "
            f"{fmt(paper_worst(ref_nl, m))})"
            for m, (r, n) in robust.items()
        )
        lines.append(
            f"- Worst-attack {described}: RMSE below BL's {'yes' if stable else 'NO'}, NLL "
            f"below BL's {'yes' if calm else 'NO'} (the paper: yes and yes)."
        )
    at_w, at_nll = worst(rm, "AT"), worst(nl, "AT")
    if at_w is not None and robust:
        best_rm = min(r for r, _ in robust.values())
        best_nl = min(n for _, n in robust.values())
        lines.append(
            f"- AT's worst-attack RMSE {at_w:.2f} / NLL {fmt(at_nll)} (paper "
            f"{fmt(paper_worst(ref_rm, 'AT'))} / {fmt(paper_worst(ref_nl, 'AT'))}): worse than "
            f"the best of MIX/NN50 ({best_rm:.2f} / {best_nl:.2f}): "
            f"{'yes' if at_w > best_rm and (at_nll or 0) > best_nl else 'NO'} "
            "(the paper: yes)."
        )
    for m in REACTIVE:
        c, w = get(rm, m, "Clean"), worst(rm, m)
        if c is None or w is None:
            continue
        lines.append(
            f"- {m} (transfer from BL): RMSE clean {c:.2f}, worst {w:.2f} (paper "
            f"{ref_rm[m]['Clean'][0]:.2f}, {paper_worst(ref_rm, m):.2f}); NLL clean "
            f"{fmt(get(nl, m, 'Clean'))}, worst {fmt(worst(nl, m))} (paper "
            f"{ref_nl[m]['Clean'][0]:.2f}, {paper_worst(ref_nl, m):.2f}). Adaptive PGD: RMSE "
            f"{fmt(get(rm, m + ADAPTIVE_SUFFIX, 'PGD'))}, NLL "
            f"{fmt(get(nl, m + ADAPTIVE_SUFFIX, 'PGD'))}."
        )
    on, off = get(nl, "onPure", "Clean"), get(nl, "offPure", "Clean")
    if on is not None and off is not None:
        verdict = "as in the paper" if off > on else "unlike the paper"
        lines.append(
            f"- Calibration of the reactive defences: offPure's clean NLL {off:.2f} vs onPure's "
            f"{on:.2f} ({verdict}, where offPure is the poorly calibrated one: "
            f"{ref_nl['offPure']['Clean'][0]:.2f} vs {ref_nl['onPure']['Clean'][0]:.2f})."
        )
    clean = {m: get(rm, m, "Clean") for m in PROACTIVE}
    if any(v is not None for v in clean.values()):
        lines.append(
            "- Clean RMSE: "
            + ", ".join(
                f"{m} {fmt(v)} (paper {ref_rm[m]['Clean'][0]:.2f})"
                for m, v in clean.items()
                if v is not None
            )
            + "."
        )
    return lines


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None):
    """The command line (``--help`` lists it)."""
    p = script_parser(
        __doc__,
        script="regression",
        profiles=PROFILES,
        threads=1,
        threads_help="torch intra-op CPU threads (default 1: the 16-unit MLPs gain nothing from "
        "more, and a second process on a 2-core machine makes more threads 10-30x slower)",
        set_example="--set epochs=2 housing.train_size=500 "
        "attack_steps=5 (a DataSettings key without a dataset sets every dataset)",
    )
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument(
        "--attacks", nargs="+", choices=["Clean", *ATTACK_FUNCTIONS], default=list(ATTACKS)
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the sha256 check of the data files (modified or synthetic copies)",
    )
    return p.parse_args(argv)


def _override(profile: Profile, items: list[str]) -> Profile:
    top = {f.name for f in dataclasses.fields(Profile)} - {"data"}
    per_data = {f.name for f in dataclasses.fields(DataSettings)}
    data = dict(profile.data)
    changes: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected KEY=VALUE; got {item!r}")
        dataset, dot, field = key.rpartition(".")
        try:
            if dot:
                if dataset not in data or field not in per_data:
                    raise SystemExit(
                        f"--set: unknown setting {key!r}; per dataset: "
                        f"<{'|'.join(data)}>.<{'|'.join(sorted(per_data))}>"
                    )
                new = parse_setting(
                    getattr(data[dataset], field), value, optional_int=field in _OPTIONAL_INTS
                )
                data[dataset] = dataclasses.replace(data[dataset], **{field: new})
            elif key in per_data:
                for name, settings in data.items():
                    new = parse_setting(
                        getattr(settings, key), value, optional_int=key in _OPTIONAL_INTS
                    )
                    data[name] = dataclasses.replace(settings, **{key: new})
            elif key in top:
                changes[key] = parse_setting(
                    getattr(profile, key), value, optional_int=key in _OPTIONAL_INTS
                )
            else:
                known = ", ".join(sorted(top | per_data))
                raise SystemExit(f"--set: unknown setting {key!r}; known: {known}")
        except ValueError as err:
            raise SystemExit(f"--set {item}: {err}") from None
    return dataclasses.replace(profile, data=data, **changes)


def main(argv: list[str] | None = None) -> int:
    """Train, attack, evaluate and report; see the module docstring."""
    args = parse_args(argv)
    profile = _override(PROFILES[args.profile], args.set)
    if args.eps is not None:
        profile = dataclasses.replace(profile, eps_grid=tuple(args.eps))
    # ascending, each once (from --eps or --set): the tables, the bar and the plots read it
    # in order
    profile = dataclasses.replace(profile, eps_grid=tuple(sorted(set(profile.eps_grid))))
    if not profile.eps_grid or any(not (e > 0 and math.isfinite(e)) for e in profile.eps_grid):
        raise SystemExit(f"--eps: strengths must be finite and > 0; got {profile.eps_grid}")
    datasets = [d for d in DATASETS if d in args.datasets]
    models = list(args.models)
    attacks = [a for a in ["Clean", *ATTACK_FUNCTIONS] if a in args.attacks]
    t_data = time.perf_counter()
    splits = load_splits(profile, datasets, args.data_dir, args.download, not args.no_verify)
    t_data = time.perf_counter() - t_data
    session = Session.start(args, profile, guarded=GUARDED)
    session.wall["data"] = t_data
    run, device, progress, wall = session.run, session.device, session.progress, session.wall
    print(f"advbayes regression benchmark: profile {profile.name}, device {device}, run {run.root}")

    proactive = [m for m in PROACTIVE if m in models]
    if any(m in REACTIVE for m in models) and "BL" not in proactive:
        proactive.insert(0, "BL")
    settings = AttackSettings(steps=profile.attack_steps, clamp=None, objective="mse")
    rows: dict[str, list[dict]] = {}
    final_epochs: dict[str, dict] = {}
    data_sizes: dict[str, dict] = {}
    for dataset in datasets:
        store = RowStore(run.root / "rows" / f"{dataset}.jsonl")
        keys: set = set()
        for data in splits[dataset]:
            s = data.split
            tensors = split_tensors(profile, dataset, data)
            data_sizes[f"{dataset}/split{s}"] = {
                "train": len(tensors["x_train"]),
                "test": len(tensors["x_test"]),
                "features": data.num_features,
            }
            trained: dict[str, torch.nn.Module] = {}
            for spec in train_specs(profile, dataset, s, data.num_features, proactive):
                model, meta = train_or_load(
                    spec, (tensors["x_train"], tensors["y_train"]), run, device, progress=progress
                )
                session.train_meta[spec.name] = meta
                name = spec.name.rsplit("-", 1)[1]
                trained[name] = model
                final_epochs[spec.name] = {
                    "train_time_s": meta["train_time_s"],
                    **(meta["history"][-1] if meta["history"] else {}),
                }
                key = f"train/{dataset}/{name}"
                wall[key] = wall.get(key, 0.0) + meta["train_time_s"]
            ev = SplitEvaluation(profile, dataset, s, tensors, trained, settings, device)
            tasks = evaluation_tasks(profile, models, attacks, s)
            keys |= {row_key(*t) for t in tasks}
            y_scale = float(data.y_scaler.std)
            spent = run_evaluation(ev, tasks, store, y_scale, progress)
            wall[f"evaluate/{dataset}"] = wall.get(f"evaluate/{dataset}", 0.0) + spent
            if ev.reactive_fit_s:
                key = f"reactive_fit/{dataset}"
                wall[key] = wall.get(key, 0.0) + ev.reactive_fit_s
            print(
                f"  {dataset} split {s}: {len(tensors['x_train'])} training / "
                f"{len(tensors['x_test'])} test rows, {len(trained)} models, "
                f"{len(tasks)} rows ({spent:.0f} s evaluating)"
            )
        rows[dataset] = [
            r for r in store.rows() if row_key(r["model"], r["attack"], r["eps"], r["seed"]) in keys
        ]
        # Attack + scoring time of every row, whichever invocation produced it.
        wall[f"rows/{dataset}"] = sum(float(r.get("time_s", 0.0)) for r in rows[dataset])

    text = write_report(run, profile, rows, models, attacks)
    session.finish(
        [r for d in datasets for r in rows[d]],
        config_extra={"datasets": datasets, "models": models, "attacks": attacks},
        extra={
            "seeds": {
                "profile": profile.seed,
                "splits": list(range(profile.num_splits)),
                "training": "profile seed + split index",
                "note": "row 'seed' = index of the train/test split; each split has its own "
                "trained models",
            },
            "units": "rmse, nll, std in standardised target units; *_original in the "
            "target's own units (rmse·τ, nll + log τ, std·τ with τ the training targets' std)",
            "data_sizes": data_sizes,
            "training_final_epoch": final_epochs,
        },
        history=False,
    )
    print()
    print(text.split("## Every strength")[0])
    print(f"wrote {run.root}/results.json, tables.md, paper_vs_ours.md and plots")
    print(session.wall_summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
