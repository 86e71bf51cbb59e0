"""Run directories, configuration guards and cached, resumable training for bench scripts.

A run lives in ``results/<task>/<run>/``: ``config.json`` (what the run was started with),
``models/<name>.pt`` (finished models, never retrained on rerun), ``checkpoints/<name>/``
(per-epoch checkpoints of the model being trained: an interrupted run resumes there),
``rows.jsonl`` (every evaluation row as soon as it exists), and at the end
``results.json``, ``tables.md``, the PNG plots and ``paper_vs_ours.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnn_core import load_model, save_model
from robust_vi import Objective, Recipe, Trainer
from robust_vi import distributed as rdist

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunDirectory:
    """The files of one run (see the module docstring)."""

    root: Path

    @property
    def models(self) -> Path:
        """Folder of the finished models."""
        return self.root / "models"

    @property
    def checkpoints(self) -> Path:
        """Folder of per-epoch training checkpoints."""
        return self.root / "checkpoints"

    @property
    def rows(self) -> Path:
        """The append-only evaluation rows."""
        return self.root / "rows.jsonl"

    def prepare(
        self,
        config: dict[str, Any],
        *,
        fresh: bool,
        guarded: tuple[str, ...],
        defaults: dict[str, Any] | None = None,
    ) -> None:
        """Create the run directory, or check that a rerun uses the same settings.

        Args:
            config: The run's configuration (JSON-serialisable).
            fresh: Delete whatever an earlier run left here first.
            guarded: Keys of ``config`` that cached models and rows depend on; a rerun with
                other values must use ``--fresh`` or another ``--run``.
            defaults: Values of guarded settings added after a run was made: a run whose
                saved configuration lacks such a key was made with this value (the
                behaviour before the setting existed), so a rerun with it may resume.

        Raises:
            SystemExit: When a rerun changes a guarded setting.
        """
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "config.json"
        if path.exists():
            old = json.loads(path.read_text())
            before = {**(defaults or {}), **old}
            changed = [k for k in guarded if before.get(k) != config.get(k)]
            if changed:
                raise SystemExit(
                    f"{self.root} holds a run with other settings ({', '.join(changed)}); "
                    "use --fresh to start it again or --run NAME for a new run"
                )
        path.write_text(json.dumps(config, indent=2, default=str))


@dataclass
class TrainSpec:
    """What to train: a named model, how to build it and the recipe to fit it with.

    ``init_seed``, when set, seeds torch right before ``build`` so that the initial weights
    depend on it alone (not on what was built before it in the process): a study that trains
    the same model with several seeds names each seed here. ``recipe`` may also be a bare
    objective with its ``channel`` (e.g. plain training: ``AdversarialTraining()`` with an
    ``IdentityChannel()``); ``options`` are further :class:`robust_vi.Trainer` options
    (``rho_lr_scale``, ``temperature``, ...); ``amp`` trains in bfloat16 autocast on GPUs
    (:func:`amp_context`).
    """

    name: str
    build: Callable[[], nn.Module]
    recipe: Recipe | Objective
    epochs: int
    lr: float
    lr_decay: float
    batch_size: int
    seed: int
    kl_warmup_epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    init_seed: int | None = None
    channel: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    amp: bool = False


def training_settings(profile: Any) -> dict[str, Any]:
    """The training fields of a script's profile that a :class:`TrainSpec` takes: ``epochs``,
    ``lr``, ``lr_decay``, ``batch_size`` and ``seed``."""
    keys = ("epochs", "lr", "lr_decay", "batch_size", "seed")
    return {k: getattr(profile, k) for k in keys}


def amp_context(device: torch.device, enabled: bool) -> Any:
    """bfloat16 autocast on GPUs (a no-op elsewhere or when disabled)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_or_load(
    spec: TrainSpec,
    train: tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset,
    run: RunDirectory,
    device: torch.device,
    *,
    progress: bool = True,
    callbacks: Sequence[Callable[..., Any]] = (),
) -> tuple[nn.Module, dict[str, Any]]:
    """Return the trained model ``spec.name``, training it only if no finished copy exists.

    Training checkpoints every epoch under ``run.checkpoints/<name>`` and resumes from there
    after an interruption. The finished model is saved to ``run.models/<name>.pt`` with its
    training history and wall time beside it (``<name>.json``). ``callbacks`` are passed to
    :class:`robust_vi.Trainer` (``callback(trainer, record)`` after each epoch, e.g. a
    :class:`robust_vi.OverfittingMonitor`); what they add to an epoch's record is saved in
    the history, and their time is not counted in the training time. ``train`` is a pair of
    tensors or a dataset (e.g. one that augments). Under ``torchrun`` every rank trains its
    shard (:mod:`robust_vi.distributed`), rank 0 alone writes the files and the others wait
    for it.

    Returns:
        The model (on ``device``, in eval mode) and ``{"history", "train_time_s"}``.
    """
    final = run.models / f"{spec.name}.pt"
    meta_path = run.models / f"{spec.name}.json"
    if final.exists() and meta_path.exists():
        return _load(spec, final, device).eval(), json.loads(meta_path.read_text())
    if spec.init_seed is not None:
        torch.manual_seed(spec.init_seed)
    model = spec.build().to(device)
    trainer = Trainer(
        model,
        spec.recipe,
        spec.channel,
        dataset_size=len(train[0]) if isinstance(train, tuple) else len(train),
        epochs=spec.epochs,
        lr=spec.lr,
        lr_decay=spec.lr_decay,
        kl_warmup_epochs=spec.kl_warmup_epochs,
        batch_size=spec.batch_size,
        seed=spec.seed,
        device=device,
        checkpoint_dir=run.checkpoints / spec.name,
        resume=True,
        progress=progress,
        callbacks=callbacks,
        **spec.options,
    )
    start = time.perf_counter()
    with amp_context(trainer.device, spec.amp):
        history = trainer.fit(train)
    elapsed = time.perf_counter() - start
    # A resumed run only timed its last epochs: the per-epoch times in the history are whole.
    train_time = sum(float(h.get("time_s", 0.0)) for h in history) or elapsed
    meta = {"history": history, "train_time_s": train_time, **spec.extra}
    info = rdist.current(device, init=False)
    if info.is_main:
        run.models.mkdir(parents=True, exist_ok=True)
        save_model(model, final)
        # written last and atomically: a model counts as finished only once its .json exists
        partial = meta_path.with_suffix(".json.part")
        partial.write_text(json.dumps(meta, indent=2, default=float))
        os.replace(partial, meta_path)
        shutil.rmtree(run.checkpoints / spec.name, ignore_errors=True)
    rdist.barrier(info)
    return model.eval(), meta


def _load(spec: TrainSpec, path: Path, device: torch.device) -> nn.Module:
    """A finished model: rebuilt from its file, or loaded into ``spec.build()`` when no bnn_core
    builder made it (e.g. a network given MC-dropout layers)."""
    try:
        return load_model(path, map_location=device)
    except ValueError:  # the file holds no architecture configuration
        return load_model(path, model=spec.build().to(device))


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; anything else is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def config_dict(obj: object) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(asdict(obj), default=str))  # type: ignore[arg-type]
