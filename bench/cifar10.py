"""Reproduce the paper's CIFAR-10 experiments (Appendix 7, Tables 9 and 10).

``uv run bench/cifar10.py`` trains the shallow Bayesian CNN (Table 9) and the Bayesian
ResNet-18 (Table 10), every layer Bayesian, as BL, MIX, NN50, AT and AT-PGD at one L2
training strength, attacks every model white-box with PGD1, PGD, PGD+ and ENT at that
strength and at a strictly larger test strength, and writes ``results/cifar10/<run>/``:
``results.json`` (configuration, versions, seeds, wall times, every number as tidy rows),
``tables.md`` and a PNG plot.

Runs on one process or on many with PyTorch's own launcher::

    uv run bench/cifar10.py --arch cnn
    uv run torchrun --nproc_per_node=8 bench/cifar10.py --profile paper
    uv run torchrun --nnodes=2 --nproc_per_node=8 --rdzv-endpoint=HOST:29500 bench/cifar10.py

(data-parallel training, see :mod:`robust_vi.distributed`: ``nccl`` on GPUs, ``gloo`` on
CPUs; ``batch_size`` is the global minibatch; rank 0 writes the files and evaluates). Under
``torchrun`` name the run with ``--run-name NAME``: torchrun reads ``--run`` as an
abbreviation of its own ``--run-path``.
On GPUs the forward passes run in bfloat16 (``torch.autocast``; ``--no-amp`` turns it off).

Profiles: ``quick`` (the shallow CNN, 10,000 training images, 10 epochs, 3 × 200 test
points, 20-step attacks) and ``paper`` (both networks, all 50,000 images, 3 × 1,000 test
points, the paper's 50-step attacks). CIFAR-10 (163 MB) is read from ``--data-dir``,
``$ADVBAYES_DATA`` or the user cache; ``--download`` fetches it, and offline the error says
what to download and where. ``--synthetic N`` trains on ``N`` random images of CIFAR's shape
instead (a smoke run, or timing); ``--time-epoch K`` times ``K`` training steps of every
model on such data and extrapolates one epoch of 50,000 images.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from advbayes_data import load_cifar10  # noqa: E402
from benchlib.cli import apply_allocator, apply_threads  # noqa: E402
from benchlib.evaluate import (  # noqa: E402
    ATTACKS,
    attack,
    attack_settings,
    batched,
    classification_metrics,
)
from benchlib.experiment import (  # noqa: E402
    RunDirectory,
    TrainSpec,
    amp_context,
    config_dict,
    resolve_device,
    training_settings,
)
from benchlib.harness import (  # noqa: E402
    Session,
    apply_overrides,
    run_grid,
    script_parser,
    select_profile,
)
from benchlib.regression_eval import stable_generator  # noqa: E402
from benchlib.report import plot_metric_vs_strength, table_at_strength  # noqa: E402
from bnn_core import PosteriorPredictive, cifar_cnn, resnet18  # noqa: E402
from robust_vi import Trainer, recipe  # noqa: E402

MODELS = ("BL", "MIX", "NN50", "AT", "AT-PGD")
"""The models, in the tables' order (AT-PGD: AT trained with multi-step PGD)."""
POINT_ESTIMATES = ("AT", "AT-PGD")
ARCHS = ("cnn", "resnet18")
IMAGE_SHAPE = (3, 32, 32)
EPOCH_IMAGES = 50_000


@dataclass(frozen=True)
class Profile:
    """Every setting of a run.

    Attributes:
        name: ``quick`` or ``paper``.
        archs: Networks trained: ``cnn`` (Table 9) and/or ``resnet18`` (Table 10).
        train_size: Training images (``None``: all 50,000).
        test_size: Images in each of the ``num_test_sets`` disjoint test sets.
        num_test_sets: Test sets; tables report mean (std) over them, like the paper.
        epochs, batch_size, lr, lr_decay: Training (Adam, exponential decay per epoch);
            ``batch_size`` is the global minibatch under ``torchrun``.
        train_eps: L2 budget of the training channels (the paper's values are lost from its
            text: a choice, ``0.5`` on images in ``[0, 1]``).
        test_eps: The strictly larger test strength of the tables (choice: ``1.0``).
        sigma: Noise of the one-step channel components; ``sigma0`` MIX's augmentation.
        at_pgd_steps: Steps of AT-PGD's PGD channel.
        eval_samples: Posterior draws ``M`` of every predictive at test time.
        attack_steps: Steps of PGD and ENT (PGD+: half on each objective).
        augment: Random crop (4-pixel zero padding) and horizontal flip while training.
        resnet_width: First-stage width of the ResNet-18 (64: the standard network).
        memory_format: Layout of the networks (``auto``: the faster one on the device).
        seed: Seed of training, draws and test-set selection.
    """

    name: str
    archs: tuple[str, ...]
    train_size: int | None
    test_size: int
    num_test_sets: int
    epochs: int
    batch_size: int
    lr: float
    lr_decay: float
    train_eps: float
    test_eps: float
    sigma: float
    sigma0: float
    at_pgd_steps: int
    eval_samples: int
    attack_steps: int
    augment: bool = True
    resnet_width: int = 64
    memory_format: str = "auto"
    seed: int = 0


PROFILES = {
    "quick": Profile(
        name="quick",
        archs=("cnn",),
        train_size=10_000,
        test_size=200,
        num_test_sets=3,
        epochs=10,
        batch_size=128,
        lr=1e-3,
        lr_decay=0.95,
        train_eps=0.5,
        test_eps=1.0,
        sigma=0.1,
        sigma0=0.1,
        at_pgd_steps=5,
        eval_samples=5,
        attack_steps=20,
    ),
    "paper": Profile(
        name="paper",
        archs=ARCHS,
        train_size=None,
        test_size=1000,
        num_test_sets=3,
        epochs=60,
        batch_size=128,
        lr=1e-3,
        lr_decay=0.97,
        train_eps=0.5,
        test_eps=1.0,
        sigma=0.1,
        sigma0=0.1,
        at_pgd_steps=7,
        eval_samples=10,
        attack_steps=50,
    ),
}

GUARDED = tuple(f.name for f in dataclasses.fields(Profile) if f.name not in ("name", "archs"))
"""What cached models and rows depend on: changing any needs ``--fresh`` or a new ``--run``."""


# ---------------------------------------------------------------------------------------
# data


class Augmented(Dataset):
    """``(x, y)`` images with a random 4-pixel-padded 32×32 crop and horizontal flip.

    Each item draws from its own generator seeded by ``(seed, index, visit)``, so a run is
    reproducible (a resumed run restarts the visit counts: its augmentations differ).
    """

    def __init__(self, x: Tensor, y: Tensor, seed: int, pad: int = 4) -> None:
        self.x, self.y, self.seed, self.pad = x, y, seed, pad
        self.visits = torch.zeros(len(x), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.visits[i] += 1
        g = torch.Generator().manual_seed(hash((self.seed, int(i), int(self.visits[i]))))
        dx, dy, flip = torch.randint(0, 2 * self.pad + 1, (3,), generator=g).tolist()
        img = torch.nn.functional.pad(self.x[i], (self.pad,) * 4)
        img = img[:, dy : dy + self.x.shape[-2], dx : dx + self.x.shape[-1]]
        if flip % 2:
            img = img.flip(-1)
        return img, self.y[i]


def synthetic(n_train: int, n_test: int, seed: int) -> dict[str, Tensor]:
    """Random images of CIFAR-10's shape with labels a fixed linear rule of their pixels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test, *IMAGE_SHAPE, generator=g)
    w = torch.randn(10, x[0].numel(), generator=g)
    y = (x.flatten(1) @ w.T).argmax(dim=1)
    return {
        "x_train": x[:n_train],
        "y_train": y[:n_train],
        "x_test": x[n_train:],
        "y_test": y[n_train:],
    }


def load_data(profile: Profile, args: argparse.Namespace) -> dict[str, Any]:
    """Training images and ``num_test_sets`` disjoint test sets (CIFAR-10 or synthetic)."""
    need = profile.test_size * profile.num_test_sets
    if args.synthetic:
        raw = synthetic(args.synthetic, need, profile.seed)
    else:
        data = load_cifar10(args.data_dir, download=args.download)
        raw = {
            "x_train": data.x_train,
            "y_train": data.y_train,
            "x_test": data.x_test,
            "y_test": data.y_test,
        }
    g = torch.Generator().manual_seed(profile.seed)
    if profile.train_size is not None and profile.train_size < len(raw["x_train"]):
        keep = torch.randperm(len(raw["x_train"]), generator=g)[: profile.train_size]
        raw["x_train"], raw["y_train"] = raw["x_train"][keep], raw["y_train"][keep]
    if need > len(raw["x_test"]):
        raise SystemExit(f"{need} test images needed; the test set has {len(raw['x_test'])}")
    order = torch.randperm(len(raw["x_test"]), generator=g)[:need].view(profile.num_test_sets, -1)
    return {**raw, "x_test": raw["x_test"][order], "y_test": raw["y_test"][order]}


# ---------------------------------------------------------------------------------------
# models and training


def recipes(profile: Profile) -> dict[str, Any]:
    """The training recipes (robust_vi's, at the profile's training strength)."""
    eps, sigma = profile.train_eps, profile.sigma
    return {
        "BL": recipe("BL"),
        "MIX": recipe("MIX", eps=eps, sigma=sigma, sigma0=profile.sigma0),
        "NN50": recipe("NN50", eps=eps, sigma=sigma, input_shape=IMAGE_SHAPE),
        "AT": recipe("AT", eps=eps),
        "AT-PGD": recipe("AT-PGD", eps=eps, pgd_steps=profile.at_pgd_steps),
    }


def build(arch: str, name: str, profile: Profile) -> torch.nn.Module:
    """The network of ``arch``: Bayesian for every model but the point-estimate AT ones."""
    bayesian = name not in POINT_ESTIMATES
    fmt = profile.memory_format
    if arch == "cnn":
        return cifar_cnn(bayesian=bayesian, memory_format=fmt)
    return resnet18(bayesian=bayesian, width=profile.resnet_width, memory_format=fmt)


def train_spec(arch: str, name: str, profile: Profile, *, amp: bool) -> TrainSpec:
    """How ``arch/name`` trains (cached as ``<arch>-<name>``)."""
    return TrainSpec(
        name=f"{arch}-{name}",
        build=lambda: build(arch, name, profile),
        recipe=recipes(profile)[name],
        amp=amp,
        **training_settings(profile),
    )


def training_data(profile: Profile, data: dict[str, Any]) -> Any:
    """The training images, augmented (:class:`Augmented`) when the profile says so."""
    if profile.augment:
        return Augmented(data["x_train"], data["y_train"], profile.seed)
    return (data["x_train"], data["y_train"])


# ---------------------------------------------------------------------------------------
# evaluation


def evaluate(
    key: str,
    model: torch.nn.Module,
    profile: Profile,
    data: dict[str, Any],
    session: Session,
    *,
    attacks: list[str],
    amp: bool,
    chunk: int,
) -> None:
    """Score ``model`` on every test set, clean and attacked at both strengths."""
    device = session.device
    settings = attack_settings(profile)
    tasks = [
        (key, name, eps, s)
        for s in range(profile.num_test_sets)
        for name in attacks
        for eps in ([0.0] if name == "Clean" else [profile.train_eps, profile.test_eps])
    ]

    def score(task: tuple) -> dict[str, Any]:
        _, name, eps, s = task
        predictive = PosteriorPredictive(
            model,
            num_samples=profile.eval_samples,
            generator=stable_generator(device, "draws", key, s),
        )
        g = stable_generator(device, "attack", key, s, name, eps)

        def attacked(x: Tensor, y: Tensor) -> Tensor:
            x_adv = attack(predictive, x, y, name, eps, settings, generator=g)
            with torch.no_grad():
                return predictive(x_adv).float()

        x, y = data["x_test"][s].to(device), data["y_test"][s].to(device)
        with amp_context(device, amp):
            lp = batched(attacked, x, y, chunk)
        return {**classification_metrics(lp, y), "n": len(y)}

    run_grid(tasks, score, session.store, progress=session.progress, desc=f"evaluating {key}")


# ---------------------------------------------------------------------------------------
# timing (for scale)


def time_epochs(profile: Profile, steps: int, device: torch.device, models: list[str]) -> dict:
    """Seconds per training epoch of 50,000 images, extrapolated from ``steps`` steps."""
    b = profile.batch_size
    data = synthetic(b * (steps + 1), 0, profile.seed)
    out: dict[str, Any] = {
        "steps_timed": steps,
        "batch_size": b,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for arch in profile.archs:
        for name in models:
            trainer = Trainer(
                build(arch, name, profile).to(device),
                recipes(profile)[name],
                dataset_size=EPOCH_IMAGES,
                epochs=1,
                batch_size=b,
                device=device,
                progress=False,
                shuffle=False,
                distributed=False,
            )
            x, y = data["x_train"], data["y_train"]
            trainer.fit((x[:b], y[:b]))  # warm-up step
            trainer.epochs = 2
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.fit((x[b:], y[b:]))
            per_step = (time.perf_counter() - t0) / steps
            cpu_step = (time.process_time() - c0) / steps
            epoch = EPOCH_IMAGES / b
            out[f"{arch}/{name}"] = {
                "s_per_step": round(per_step, 4),
                "cpu_s_per_step": round(cpu_step, 4),
                "epoch_s_extrapolated": round(per_step * epoch, 1),
                "epoch_cpu_s_extrapolated": round(cpu_step * epoch, 1),
            }
            print(
                f"  {arch} {name}: {per_step:.3f} s/step ({cpu_step:.3f} CPU s), one epoch ≈ "
                f"{per_step * epoch / 60:.1f} min wall, {cpu_step * epoch / 60:.1f} CPU min "
                "(extrapolated)",
                flush=True,
            )
    return out


# ---------------------------------------------------------------------------------------
# report


def write_report(
    run: RunDirectory, profile: Profile, rows: list[dict], keys: list[str], attacks: list[str]
) -> str:
    """``tables.md`` (Tables 9/10 layout at the test strength) and the accuracy plot."""
    parts = [
        f"# CIFAR-10 (profile {profile.name})\n",
        f"Trained at L2 ε = {profile.train_eps:g}; tested at ε = {profile.test_eps:g} "
        f"(strictly larger, as the paper's Tables 9 and 10). Mean (std) over "
        f"{profile.num_test_sets} test sets of {profile.test_size} images.\n",
    ]
    for eps in (profile.test_eps, profile.train_eps):
        for metric, best in (("accuracy", "max"), ("nll", "min")):
            parts.append(f"## {metric} at ε = {eps:g}\n")
            parts.append(
                table_at_strength(
                    rows, metric=metric, eps=eps, models=keys, attacks=attacks, best=best
                )
            )
            parts.append("")
    text = "\n".join(parts)
    (run.root / "tables.md").write_text(text)
    plot_metric_vs_strength(
        rows,
        metric="accuracy",
        attack="PGD",
        models=keys,
        strengths=(profile.train_eps, profile.test_eps),
        path=run.root / "accuracy_pgd.png",
        title="CIFAR-10: PGD accuracy",
        ylabel="accuracy",
    )
    return text


# ---------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    parser = script_parser(
        __doc__.split("\n\n")[0],
        script="cifar10",
        profiles=PROFILES,
        threads_help="torch CPU threads (default: torch's)",
        set_example="--set epochs=2 augment=false",
    )
    parser.add_argument("--arch", nargs="+", choices=ARCHS, default=None)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="train on N random images of CIFAR's shape (no data needed)",
    )
    parser.add_argument(
        "--time-epoch",
        type=int,
        default=0,
        metavar="K",
        help="only time K training steps per model; extrapolate an epoch",
    )
    parser.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on GPUs")
    parser.add_argument("--eval-chunk", type=int, default=100, help="test images per attack")
    parser.add_argument(
        "--run-name",
        dest="run",
        default=None,
        help="the same as --run, which torchrun would take for its own --run-path",
    )
    return parser.parse_args(argv)


OPTIONAL_INTS = ("train_size",)


def _override(profile: Profile, items: list[str]) -> Profile:
    return apply_overrides(profile, items, optional_ints=OPTIONAL_INTS)[0]


def main(argv: list[str] | None = None) -> int:
    """Train, attack, evaluate and report; see the module docstring."""
    args = parse_args(argv)
    profile = select_profile(PROFILES, args, optional_ints=OPTIONAL_INTS, grid_field=None)
    if args.arch:
        profile = dataclasses.replace(profile, archs=tuple(args.arch))
    if not profile.test_eps > profile.train_eps:
        raise SystemExit("test_eps must be strictly larger than train_eps (Tables 9 and 10)")
    amp = not args.no_amp
    if args.time_epoch:
        device = resolve_device(args.device)
        apply_threads(args.threads)
        apply_allocator(args.allocator)
        torch.manual_seed(profile.seed)
        print(f"advbayes CIFAR-10 timing on {device}: {args.time_epoch} steps per model")
        timing = time_epochs(profile, args.time_epoch, device, list(args.models))
        out = args.out / (args.run or "timing")
        out.mkdir(parents=True, exist_ok=True)
        (out / "timing.json").write_text(json.dumps(timing, indent=2))
        return 0

    session = Session.start(
        args,
        profile,
        guarded=(*GUARDED, "synthetic"),
        config={**config_dict(profile), "synthetic": args.synthetic},
    )
    run, device, info = session.run, session.device, session.dist
    if info.is_main:
        print(
            f"advbayes CIFAR-10 benchmark: profile {profile.name}, device {device}, "
            f"{info.world_size} process(es), run {run.root}"
        )
    data = load_data(profile, args)
    keys = []
    for arch in profile.archs:
        for name in args.models:
            spec = train_spec(arch, name, profile, amp=amp)
            keys.append(spec.name)
            # a fresh augmentation per model: every model sees the same augmented images
            train = training_data(profile, data)
            model = session.train(spec, train, say=print if info.is_main else None)
            if info.is_main:  # rank 0 evaluates; the others are done
                with session.timed(f"evaluate/{spec.name}"):
                    evaluate(
                        spec.name,
                        model,
                        profile,
                        data,
                        session,
                        attacks=list(args.attacks),
                        amp=amp,
                        chunk=args.eval_chunk,
                    )
    if not info.is_main:
        return 0
    rows = [r for r in session.store.rows() if r["model"] in keys]
    text = write_report(run, profile, rows, keys, list(args.attacks))
    session.finish(
        rows,
        config_extra={
            "models": list(args.models),
            "attacks": list(args.attacks),
            "world_size": info.world_size,
            "amp_bf16": amp and device.type == "cuda",
        },
        extra={
            "seeds": {"training": profile.seed, "test_sets": list(range(profile.num_test_sets))}
        },
    )
    session.announce(text, ("results.json", "tables.md", "accuracy_pgd.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
