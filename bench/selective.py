"""Reproduce the paper's selective-prediction study (Figure 5).

A balanced test set of MNIST and Fashion-MNIST images: the MNIST half attacked white-box with
PGD+ (misclassify, then raise the predictive entropy), the Fashion-MNIST half with ENT-
(PGD *lowering* the entropy, to slip past an entropy filter). Each model's predictive
entropy drops the most uncertain half; the score is the accuracy on what is kept, a kept
Fashion-MNIST image counting as an error (its label is no digit). Also the
MNIST-vs-Fashion-MNIST detection AUROC of the entropy, clean and attacked.

``uv run bench/selective.py`` reuses the models of the ``bench/mnist.py`` run of the same
training profile (``results/mnist/<profile>``, or ``--from-run DIR``) when its settings
match, trains only what is missing, and writes ``results/selective/<run>/``: ``results.json``,
``tables.md``, ``fig5_selective_accuracy.png``, ``fig5_detection_auroc.png`` and
``paper_vs_ours.md``.

Profiles: ``quick`` (the models of ``bench/mnist.py --profile quick``, two test sets of
50 + 50 images, 5 posterior draws, 50-step attacks at L2 strengths 1, 2, 3) and ``paper``
(the models of the paper profile, three test sets of 1000 + 1000, the paper's strengths).
Fashion-MNIST is read from ``--data-dir``, ``$ADVBAYES_DATA`` or the user cache.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mnist as mnist_script  # noqa: E402
from adv_reactive import ReactivePPD  # noqa: E402
from benchlib import paper  # noqa: E402
from benchlib.evaluate import AttackSettings, attack  # noqa: E402
from benchlib.experiment import config_dict  # noqa: E402
from benchlib.harness import (  # noqa: E402
    Session,
    apply_overrides,
    results_dir,
    run_grid,
    script_parser,
)
from benchlib.regression_eval import stable_generator  # noqa: E402
from benchlib.report import grid_table, plot_metric_vs_strength, summarise  # noqa: E402
from benchlib.uncertainty import auroc, selective_accuracy  # noqa: E402
from benchlib.zoo import MNIST_MODELS, mnist_train_specs, proactive  # noqa: E402
from bnn_core import PosteriorPredictive, predictive_entropy  # noqa: E402

SELECTIVE_MODELS = [m for m, d in MNIST_MODELS.items() if d.reactive_channel == "one-step"]
"""The models this study compares (the reactive ones with the one-step channel's density)."""

ADAPTIVE_SUFFIX = " (adaptive)"
ATTACK = "PGD+/ENT-"
"""The row label of an attacked test set: PGD+ on MNIST, entropy-lowering ENT- on Fashion."""
METRICS = ("selective_accuracy", "auroc", "kept_ood_fraction", "accuracy_in")


@dataclass(frozen=True)
class Profile:
    """Every setting of a run (the models' training settings: ``training``).

    Attributes:
        name: ``quick`` or ``paper``.
        training: The ``bench/mnist.py`` profile whose models are used (its settings can be
            changed with ``--set`` too: ``--set epochs=2`` edits the training profile).
        test_size: Images of *each* dataset in a test set (a set has ``2 × test_size``).
        num_test_sets: Disjoint test sets; tables report mean (std) over them.
        eval_samples: Posterior draws ``M`` of every BNN predictive.
        eps_grid: Attack strengths (L2, images in ``[0, 1]``).
        attack_steps: Steps of ENT- and of PGD+ (half on each objective).
        keep: Fraction of the test set the entropy filter keeps (the paper: one half).
        adaptive: Also attack the reactive PPDs themselves (the plain onPure/offPure rows see
            the inputs crafted against BL, the model they wrap).
        seed: Seed of the test-set draws and the attacks.
    """

    name: str
    training: str
    test_size: int
    num_test_sets: int
    eval_samples: int
    eps_grid: tuple[float, ...]
    attack_steps: int
    keep: float = 0.5
    adaptive: bool = True
    seed: int = 0


PROFILES = {
    "quick": Profile(
        name="quick",
        training="quick",
        test_size=50,
        num_test_sets=2,
        eval_samples=5,
        eps_grid=(1.0, 2.0, 3.0),
        attack_steps=50,
    ),
    "paper": Profile(
        name="paper",
        training="paper",
        test_size=1000,
        num_test_sets=3,
        eval_samples=10,
        eps_grid=paper.TABLE7_STRENGTHS,
        attack_steps=50,
    ),
}
GUARDED = (
    "training",
    "training_settings",
    "test_size",
    "num_test_sets",
    "eval_samples",
    "attack_steps",
    "keep",
    "seed",
)


# ---------------------------------------------------------------------------------------
# data


def load_test_sets(
    profile: Profile,
    train: mnist_script.Profile,
    data_dir: Path | None,
    download: bool,
    verify: bool = True,
) -> dict[str, Tensor]:
    """``num_test_sets`` disjoint balanced sets: MNIST test images and Fashion-MNIST ones."""
    from advbayes_data import (
        ChecksumError,
        DatasetNotFoundError,
        load_fashion_mnist,
        load_mnist,
        load_mnist_sample,
    )

    try:
        fashion = load_fashion_mnist(data_dir, download=download, verify=verify)
        digits = (
            load_mnist_sample(seed=train.seed)
            if train.data == "sample"
            else load_mnist(data_dir, download=download)
        )
    except (DatasetNotFoundError, ChecksumError) as err:
        raise SystemExit(str(err)) from None
    need = profile.test_size * profile.num_test_sets
    out: dict[str, Tensor] = {}
    for key, data in (("in", digits), ("out", fashion)):
        if need > len(data.x_test):
            raise SystemExit(
                f"{profile.num_test_sets} test sets of {profile.test_size} images need {need} "
                f"{data.name} test images; the data have {len(data.x_test)}"
            )
        g = torch.Generator().manual_seed(profile.seed + (2 if key == "in" else 3))
        order = torch.randperm(len(data.x_test), generator=g)[:need]
        shape = (profile.num_test_sets, profile.test_size)
        out[f"x_{key}"] = data.x_test[order].reshape(*shape, *data.x_test.shape[1:])
        out[f"y_{key}"] = data.y_test[order].reshape(shape)
    return out


# ---------------------------------------------------------------------------------------
# models


def training_profile(profile: Profile, items: list[str]) -> mnist_script.Profile:
    """The ``bench/mnist.py`` profile of the models, with the passed-through ``--set`` items."""
    train, _ = apply_overrides(
        mnist_script.PROFILES[profile.training], items, optional_ints=("train_size",)
    )
    return train


def matching_run(source: Path, train: mnist_script.Profile) -> tuple[bool, str]:
    """Whether the ``bench/mnist.py`` run in ``source`` trained with ``train``'s settings."""
    path = source / "config.json"
    if not path.exists():
        return False, f"{source} holds no bench/mnist.py run (no config.json)"
    saved = {**mnist_script.ADDED_SETTINGS, **json.loads(path.read_text())}
    mine = config_dict(train)
    changed = [k for k in mnist_script.TRAINING_SETTINGS if saved.get(k) != mine.get(k)]
    if changed:
        return False, f"{source} trained with other settings ({', '.join(changed)})"
    return True, ""


# ---------------------------------------------------------------------------------------
# evaluation


def entropy_and_correct(log_probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-example predictive entropy (nats) and whether the prediction is right."""
    return predictive_entropy(log_probs, reduction="none"), log_probs.argmax(-1) == y


@dataclass
class Selective:
    """The models, the test sets and the attacks of the grid."""

    profile: Profile
    data: dict[str, Tensor]
    models: dict[str, torch.nn.Module]
    reactive_ppd: ReactivePPD | None
    settings: AttackSettings
    device: torch.device

    def predictive(self, name: str, s: int) -> torch.nn.Module:
        """The predictive a model is scored (and, white box, attacked) with."""
        base = name.removesuffix(ADAPTIVE_SUFFIX)
        decl = MNIST_MODELS[base]
        if decl.reactive:
            assert self.reactive_ppd is not None
            self.reactive_ppd.mode = decl.reactive_mode
            return self.reactive_ppd
        return PosteriorPredictive(
            self.models[base],
            num_samples=self.profile.eval_samples,
            generator=stable_generator(self.device, "draws", base, s),
        )

    def attacked(self, target: str, s: int, eps: float) -> tuple[Tensor, Tensor]:
        """Both halves of test set ``s`` attacked at ``eps``, aiming at ``target``."""
        x_in, y_in = self.data["x_in"][s].to(self.device), self.data["y_in"][s].to(self.device)
        x_out = self.data["x_out"][s].to(self.device)
        y_out = self.data["y_out"][s].to(self.device)
        if eps == 0:
            return x_in, x_out
        predictive = self.predictive(target, s)
        g_in = stable_generator(self.device, "selective", target, s, "PGD+", eps)
        g_out = stable_generator(self.device, "selective", target, s, "ENT-", eps)
        x_in = attack(predictive, x_in, y_in, "PGD+", eps, self.settings, generator=g_in)
        x_out = attack(predictive, x_out, y_out, "ENT-", eps, self.settings, generator=g_out)
        return x_in, x_out

    def score(self, task: tuple, transfer: dict[tuple, tuple[Tensor, Tensor]]) -> dict:
        """One row: selective accuracy, AUROC, ... of model ``task[0]`` on its test set."""
        variant, _, eps, s = task
        base = variant.removesuffix(ADAPTIVE_SUFFIX)
        if MNIST_MODELS[base].reactive and variant == base:
            # not adaptive: the inputs crafted against BL, the model the defence wraps
            if (eps, s) not in transfer:
                transfer[(eps, s)] = self.attacked("BL", s, eps)
            x_in, x_out = transfer[(eps, s)]
            target = "BL posterior predictive (transfer)"
        else:
            x_in, x_out = self.attacked(variant, s, eps)
            target = "reactive PPD (adaptive)" if variant != base else "own posterior predictive"
            if base == "BL":
                transfer[(eps, s)] = (x_in, x_out)
        predictive = self.predictive(variant, s)
        y_in = self.data["y_in"][s].to(self.device)
        with torch.no_grad():
            h_in, right = entropy_and_correct(predictive(x_in), y_in)
            h_out, _ = entropy_and_correct(predictive(x_out), torch.full_like(y_in, -1))
        h = torch.cat([h_in, h_out]).cpu()
        ood = torch.cat([torch.zeros_like(h_in), torch.ones_like(h_out)]).bool().cpu()
        correct = torch.cat([right, torch.zeros_like(right)]).cpu()
        kept = selective_accuracy(h, correct, ood, keep=self.profile.keep)
        return {
            "selective_accuracy": kept["selective_accuracy"],
            "kept_ood_fraction": kept["kept_ood_fraction"],
            "auroc": auroc(h, ood),
            "accuracy_in": float(right.float().mean()),
            "entropy_in": float(h_in.mean()),
            "entropy_out": float(h_out.mean()),
            "n": len(h),
            "attack_target": target,
        }


def evaluation_tasks(profile: Profile, models: list[str]) -> list[tuple]:
    """Every (model, attack, eps, test set); reactive defences also adaptively."""
    variants = list(models)
    if profile.adaptive:
        variants += [m + ADAPTIVE_SUFFIX for m in models if MNIST_MODELS[m].reactive]
    tasks = []
    for s in range(profile.num_test_sets):
        for variant in variants:
            if not variant.endswith(ADAPTIVE_SUFFIX):
                tasks.append((variant, "Clean", 0.0, s))
            tasks += [(variant, ATTACK, float(eps), s) for eps in profile.eps_grid]
    return tasks


# ---------------------------------------------------------------------------------------
# report


def shown_models(models: list[str], profile: Profile) -> list[str]:
    """Row order of the tables: the registry's, then the adaptive rows."""
    shown = [m for m in MNIST_MODELS if m in models]
    if profile.adaptive:
        shown += [m + ADAPTIVE_SUFFIX for m in shown if MNIST_MODELS[m].reactive]
    return shown


def write_report(session: Session, profile: Profile, rows: list[dict], shown: list[str]) -> str:
    """Write ``tables.md``, the figures and ``paper_vs_ours.md``; return the tables."""
    root = session.run.root
    n = profile.test_size
    parts = [
        f"# Selective prediction, MNIST + Fashion-MNIST ({profile.name} profile)",
        "",
        f"Mean (std) over {profile.num_test_sets} disjoint test sets of {n} MNIST + {n} "
        f"Fashion-MNIST images. At strength ε (L2) the MNIST half is attacked with PGD+ "
        f"({profile.attack_steps // 2} + {profile.attack_steps // 2} steps) and the "
        f"Fashion-MNIST half with ENT- ({profile.attack_steps} steps lowering the entropy), "
        f"both white box on the model's predictive ({profile.eval_samples} posterior draws); "
        "the plain onPure/offPure rows see the inputs crafted against BL, the '(adaptive)' "
        "rows attack the reactive PPD itself. The entropy filter keeps the "
        f"{profile.keep:g} of each set with the lowest predictive entropy; a kept "
        "Fashion-MNIST image counts as an error.",
        "",
        "## Figure 5: selective accuracy",
        "",
        grid_table(rows, metric="selective_accuracy", attack=ATTACK, models=shown,
                   strengths=profile.eps_grid, std=True),
        "",
        "## Detection AUROC of Fashion-MNIST from the entropy (1 = perfect, 0.5 = chance)",
        "",
        grid_table(rows, metric="auroc", attack=ATTACK, models=shown,
                   strengths=profile.eps_grid, std=True),
        "",
        "## Fraction of the kept images that are Fashion-MNIST",
        "",
        grid_table(rows, metric="kept_ood_fraction", attack=ATTACK, models=shown,
                   strengths=profile.eps_grid),
        "",
        "## Accuracy on the MNIST half (all of it, before filtering)",
        "",
        grid_table(rows, metric="accuracy_in", attack=ATTACK, models=shown,
                   strengths=profile.eps_grid),
        "",
    ]  # fmt: skip
    text = "\n".join(parts)
    (root / "tables.md").write_text(text)
    for metric, label, fig in (
        ("selective_accuracy", "selective accuracy", "fig5_selective_accuracy.png"),
        ("auroc", "detection AUROC", "fig5_detection_auroc.png"),
    ):
        plot_metric_vs_strength(
            rows,
            metric=metric,
            attack=ATTACK,
            models=shown,
            strengths=profile.eps_grid,
            path=root / fig,
            title=f"MNIST + Fashion-MNIST: {label} (PGD+ / ENT-)",
            ylabel=label,
        )
    (root / "paper_vs_ours.md").write_text(paper_comparison(rows, profile))
    return text


def paper_comparison(rows: list[dict], profile: Profile) -> str:
    """The paper's statements about Figure 5 (it gives no numbers), checked on ours."""
    acc = summarise(rows, "selective_accuracy")

    def get(model: str, eps: float) -> float | None:
        key = (model, "Clean" if eps == 0 else ATTACK, round(float(eps), 6))
        return acc[key][0] if key in acc else None

    grid = list(profile.eps_grid)
    out = [
        f"# Selective prediction: the paper's Figure 5 and ours ({profile.name} profile)",
        "",
        "The paper shows Figure 5 as a plot and states no numbers; below, its two written "
        "findings, checked on our selective accuracies (mean over test sets). The paper does "
        "not say how a kept Fashion-MNIST image is scored; ours counts it as an error.",
        "",
    ]
    lines = []
    pure = {m: get(m, 0.0) for m in ("onPure", "offPure", "MIX", "NN50")}
    if None not in pure.values():
        proactive_best = max(pure["MIX"], pure["NN50"])
        lower = pure["onPure"] < proactive_best and pure["offPure"] < proactive_best
        on_better = pure["onPure"] > pure["offPure"]
        verdict = (
            "agrees"
            if lower and on_better
            else "does not agree"
            if not lower
            else "agrees on the loss, not on onPure's advantage"
        )
        lines.append(
            "- Paper: both purification models have a lower clean selective accuracy than the "
            f"proactive ones, onPure marginally less low. Ours (clean): onPure "
            f"{pure['onPure']:.3f}, offPure {pure['offPure']:.3f}, MIX {pure['MIX']:.2f}, "
            f"NN50 {pure['NN50']:.2f}: {verdict}."
        )
    checks = []
    for eps in grid:
        vals = {
            m: get(m, eps)
            for m in ("MIX", "NN50", "onPure", "offPure", "onPure (adaptive)", "offPure (adaptive)")
        }
        if None in (vals["MIX"], vals["NN50"], vals["onPure"], vals["offPure"]):
            continue
        pure_best = max(v for k, v in vals.items() if "Pure" in k and v is not None)
        checks.append((eps, min(vals["MIX"], vals["NN50"]) > pure_best, vals))
    if checks:
        held = sum(ok for _, ok, _ in checks)
        detail = "; ".join(
            f"ε = {eps:g}: MIX {v['MIX']:.2f}, NN50 {v['NN50']:.2f}, best reactive "
            f"{max(x for k, x in v.items() if 'Pure' in k and x is not None):.2f}"
            for eps, _, v in checks
        )
        verdict = "agrees" if held == len(checks) else f"holds at {held} of {len(checks)}"
        lines.append(
            "- Paper: MIX and NN50 beat the reactive defences in selective accuracy at every "
            f"strength. Ours: {detail}: {verdict}."
        )
    if not lines:
        lines.append("- The models the paper's statements compare were not all run.")
    return "\n".join(out + lines) + "\n"


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None):
    """The command line (``--help`` lists it)."""
    p = script_parser(
        __doc__,
        script="selective",
        profiles=PROFILES,
        set_example="--set test_size=50 epochs=2 (training settings go to the mnist profile)",
    )
    p.add_argument("--models", nargs="+", choices=SELECTIVE_MODELS, default=SELECTIVE_MODELS)
    p.add_argument(
        "--from-run",
        type=Path,
        default=None,
        help="a bench/mnist.py run directory whose models to reuse (default: "
        "results/mnist/<training profile> when it exists and its settings match)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the Fashion-MNIST file checks")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Reuse or train the models, attack, filter, score and report; see the docstring."""
    args = parse_args(argv)
    base = PROFILES[args.profile]
    training_keys = [f for f in mnist_script.Profile.__dataclass_fields__ if f != "name"]
    profile, passed = apply_overrides(base, args.set, passthrough=training_keys)
    if args.eps is not None:
        profile = _replace(profile, eps_grid=tuple(args.eps))
    profile = _replace(profile, eps_grid=tuple(sorted(set(profile.eps_grid))))
    train = training_profile(profile, passed)
    config = {**config_dict(profile), "training_settings": config_dict(train)}
    session = Session.start(args, profile, guarded=GUARDED, config=config)
    print(f"advbayes selective prediction: profile {profile.name}, device {session.device}, "
          f"run {session.run.root}")  # fmt: skip

    models = list(args.models)
    needed = [m for m in proactive(MNIST_MODELS) if m in models]
    if any(MNIST_MODELS[m].reactive for m in models) and "BL" not in needed:
        needed.insert(0, "BL")
    source = args.from_run
    if source is None and (results_dir("mnist") / train.name).exists():
        source = results_dir("mnist") / train.name
        ok, why = matching_run(source, train)
        if not ok:
            print(f"not reusing {source}: {why}")
            source = None
    elif source is not None:
        ok, why = matching_run(source, train)
        if not ok:
            raise SystemExit(f"--from-run: {why}; train here instead (leave --from-run out)")
    if source is not None:
        copied = session.reuse_models(source, needed)
        print(f"reused {len(copied)} models of {source}: {', '.join(copied) or 'none new'}")

    with session.timed("data"):
        train_data = mnist_script.load_data(train, args.data_dir, args.download)
        data = load_test_sets(
            profile, train, args.data_dir, args.download, verify=not args.no_verify
        )
    trained = {}
    for spec in mnist_train_specs(train, needed):
        trained[spec.name] = session.train(spec, (train_data["x_train"], train_data["y_train"]))
    reactive_ppd = None
    if any(MNIST_MODELS[m].reactive for m in models):
        with session.timed("reactive_fit"):
            reactive_ppd = mnist_script.fit_reactive(
                trained["BL"], train_data, train, session.device
            )

    ev = Selective(
        profile, data, trained, reactive_ppd, AttackSettings(steps=profile.attack_steps),
        session.device,
    )  # fmt: skip
    tasks = evaluation_tasks(profile, models)
    transfer: dict[tuple, tuple[Tensor, Tensor]] = {}
    with session.timed("evaluation"):
        run_grid(tasks, lambda t: ev.score(t, transfer), session.store, progress=session.progress)
    rows = session.rows_of(tasks)
    text = write_report(session, profile, rows, shown_models(models, profile))
    session.finish(
        rows,
        config_extra={"models": models, "reused_from": str(source) if source else None},
        extra={"seeds": {"test_sets": list(range(profile.num_test_sets))}},
    )
    print()
    print(text)
    print(f"wrote {session.run.root}/results.json, tables.md, paper_vs_ours.md and figures")
    print(session.wall_summary())
    return 0


def _replace(profile: Profile, **changes) -> Profile:
    import dataclasses

    return dataclasses.replace(profile, **changes)


if __name__ == "__main__":
    raise SystemExit(main())
