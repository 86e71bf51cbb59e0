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
import hashlib
import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqdm.auto import tqdm  # noqa: E402

from advbayes_data import load_cifar10  # noqa: E402
from benchlib.cli import add_run_arguments, apply_allocator, apply_threads  # noqa: E402
from benchlib.evaluate import ATTACKS, AttackSettings, attack  # noqa: E402
from benchlib.experiment import REPO, RunDirectory, config_dict, resolve_device  # noqa: E402
from benchlib.meta import provenance  # noqa: E402
from benchlib.report import plot_metric_vs_strength, table_at_strength  # noqa: E402
from benchlib.results import RowStore, row_key, write_results  # noqa: E402
from bnn_core import (  # noqa: E402
    PosteriorPredictive,
    accuracy,
    cifar_cnn,
    load_model,
    nll,
    predictive_entropy,
    resnet18,
    save_model,
)
from robust_vi import Trainer, recipe  # noqa: E402
from robust_vi import distributed as rdist  # noqa: E402

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


def amp_context(device: torch.device, enabled: bool) -> Any:
    """bfloat16 autocast on GPUs (a no-op elsewhere or when disabled)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_model(
    arch: str,
    name: str,
    profile: Profile,
    data: dict[str, Any],
    run: RunDirectory,
    device: torch.device,
    info: rdist.DistInfo,
    *,
    amp: bool,
    progress: bool,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train (or load the finished) ``arch/name``; rank 0 saves it, every rank returns it."""
    key = f"{arch}-{name}"
    final, meta_path = run.models / f"{key}.pt", run.models / f"{key}.json"
    if final.exists() and meta_path.exists():
        return load_model(final, map_location=device).eval(), json.loads(meta_path.read_text())
    train: Any = (data["x_train"], data["y_train"])
    if profile.augment:
        train = Augmented(data["x_train"], data["y_train"], profile.seed)
    trainer = Trainer(
        build(arch, name, profile).to(device),
        recipes(profile)[name],
        dataset_size=len(data["x_train"]),
        epochs=profile.epochs,
        lr=profile.lr,
        lr_decay=profile.lr_decay,
        batch_size=profile.batch_size,
        seed=profile.seed,
        device=device,
        checkpoint_dir=run.checkpoints / key,
        progress=progress,
    )
    with amp_context(trainer.device, amp):
        history = trainer.fit(train)
    meta = {"history": history, "train_time_s": sum(h["time_s"] for h in history)}
    if info.is_main:
        run.models.mkdir(parents=True, exist_ok=True)
        save_model(trainer.model, final)
        part = meta_path.with_suffix(".json.part")
        part.write_text(json.dumps(meta, indent=2, default=float))
        os.replace(part, meta_path)
    rdist.barrier(info)
    return trainer.model.eval(), meta


# ---------------------------------------------------------------------------------------
# evaluation


def _generator(device: torch.device, *parts: object) -> torch.Generator:
    text = "/".join(str(p) for p in parts)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return torch.Generator(device=device).manual_seed(seed)


def evaluate(
    key: str,
    model: torch.nn.Module,
    profile: Profile,
    data: dict[str, Any],
    store: RowStore,
    device: torch.device,
    *,
    attacks: list[str],
    amp: bool,
    chunk: int,
    progress: bool,
) -> None:
    """Score ``model`` on every test set, clean and attacked at both strengths."""
    settings = AttackSettings(steps=profile.attack_steps)
    tasks = [
        (key, name, eps, s)
        for s in range(profile.num_test_sets)
        for name in attacks
        for eps in ([0.0] if name == "Clean" else [profile.train_eps, profile.test_eps])
    ]
    todo = [t for t in tasks if row_key(*t) not in store]
    for _, name, eps, s in tqdm(todo, desc=f"evaluating {key}", disable=not progress):
        t0 = time.perf_counter()
        predictive = PosteriorPredictive(
            model, num_samples=profile.eval_samples, generator=_generator(device, "draws", key, s)
        )
        g = _generator(device, "attack", key, s, name, eps)
        log_probs = []
        with amp_context(device, amp):
            for i in range(0, profile.test_size, chunk):
                x = data["x_test"][s, i : i + chunk].to(device)
                y = data["y_test"][s, i : i + chunk].to(device)
                x_adv = attack(predictive, x, y, name, eps, settings, generator=g)
                with torch.no_grad():
                    log_probs.append(predictive(x_adv).float())
        lp, y = torch.cat(log_probs), data["y_test"][s].to(device)
        store.add(
            {
                "model": key,
                "attack": name,
                "eps": eps,
                "seed": s,
                "accuracy": float(accuracy(lp, y)),
                "nll": float(nll(lp, y)),
                "entropy": float(predictive_entropy(lp)),
                "n": len(y),
                "time_s": round(time.perf_counter() - t0, 3),
            }
        )


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--arch", nargs="+", choices=ARCHS, default=None)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override profile settings, e.g. epochs=2 augment=false",
    )
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
    add_run_arguments(
        parser,
        out=REPO / "results" / "cifar10",
        threads=None,
        threads_help="torch CPU threads (default: torch's)",
    )
    return parser.parse_args(argv)


def _override(profile: Profile, items: list[str]) -> Profile:
    fields = {f.name: f for f in dataclasses.fields(Profile)}
    changes: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields or key == "name":
            raise SystemExit(f"--set: unknown setting {key!r}")
        current = getattr(profile, key)
        if isinstance(current, bool):
            changes[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(current, tuple):
            changes[key] = tuple(v for v in value.split(",") if v)
        elif key == "train_size":
            changes[key] = None if value.lower() == "none" else int(value)
        else:
            changes[key] = type(current)(value)
    return dataclasses.replace(profile, **changes)


def main(argv: list[str] | None = None) -> int:
    """Train, attack, evaluate and report; see the module docstring."""
    args = parse_args(argv)
    profile = _override(PROFILES[args.profile], args.set)
    if args.arch:
        profile = dataclasses.replace(profile, archs=tuple(args.arch))
    if not profile.test_eps > profile.train_eps:
        raise SystemExit("test_eps must be strictly larger than train_eps (Tables 9 and 10)")
    device = resolve_device(args.device)
    info = rdist.current(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    apply_threads(args.threads)
    apply_allocator(args.allocator)
    torch.manual_seed(profile.seed)
    progress = not args.no_progress and info.is_main
    amp = not args.no_amp
    if args.time_epoch:
        print(f"advbayes CIFAR-10 timing on {device}: {args.time_epoch} steps per model")
        timing = time_epochs(profile, args.time_epoch, device, list(args.models))
        out = args.out / (args.run or "timing")
        out.mkdir(parents=True, exist_ok=True)
        (out / "timing.json").write_text(json.dumps(timing, indent=2))
        return 0

    run = RunDirectory(args.out / (args.run or profile.name))
    config = {**config_dict(profile), "synthetic": args.synthetic}
    if info.is_main:
        run.prepare(config, fresh=args.fresh, guarded=(*GUARDED, "synthetic"))
    rdist.barrier(info)
    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    if info.is_main:
        print(
            f"advbayes CIFAR-10 benchmark: profile {profile.name}, device {device}, "
            f"{info.world_size} process(es), run {run.root}"
        )
    data = load_data(profile, args)
    store = RowStore(run.rows) if info.is_main else None
    keys, histories = [], {}
    for arch in profile.archs:
        for name in args.models:
            key = f"{arch}-{name}"
            keys.append(key)
            model, meta = train_model(
                arch, name, profile, data, run, device, info, amp=amp, progress=progress
            )
            wall[f"train/{key}"] = meta["train_time_s"]
            histories[key] = meta["history"]
            if store is not None:  # rank 0 evaluates; the others are done
                t0 = time.perf_counter()
                evaluate(
                    key,
                    model,
                    profile,
                    data,
                    store,
                    device,
                    attacks=list(args.attacks),
                    amp=amp,
                    chunk=args.eval_chunk,
                    progress=progress,
                )
                wall[f"evaluate/{key}"] = time.perf_counter() - t0
    if store is None:
        return 0
    rows = [r for r in store.rows() if r["model"] in keys]
    text = write_report(run, profile, rows, keys, list(args.attacks))
    wall["total_this_invocation"] = time.perf_counter() - t_all
    write_results(
        run.root / "results.json",
        config={
            **config,
            "models": list(args.models),
            "attacks": list(args.attacks),
            "world_size": info.world_size,
            "amp_bf16": amp and device.type == "cuda",
        },
        provenance=provenance(device),
        wall_times=wall,
        rows=rows,
        extra={
            "training_history": histories,
            "seeds": {"training": profile.seed, "test_sets": list(range(profile.num_test_sets))},
        },
    )
    print(text)
    print(f"wrote {run.root}/results.json, tables.md and accuracy_pgd.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
