"""The one harness of the reproduction scripts: profiles, runs, cached models, grids, reports.

Every script in ``bench/`` that reproduces a table or figure of the paper is a declaration
on top of this module:

* a **profile**: a frozen dataclass of every setting, with named instances (``quick`` for a
  CPU, ``paper`` for the paper's settings) chosen by ``--profile`` and edited by
  ``--set KEY=VALUE`` (:func:`apply_overrides`, :func:`select_profile`);
* a **session** (:class:`Session`): the run directory ``results/<script>/<run>/`` (resumed on
  a rerun, deleted with ``--fresh``, refused when a guarded setting changed), the device,
  threads and allocator, wall times, and the evaluation rows (:class:`~benchlib.results.RowStore`);
* **cached models**: :meth:`Session.train` trains a :class:`~benchlib.experiment.TrainSpec`
  once (checkpointed, resumable) or loads it, also from another run's directory
  (:meth:`Session.reuse_models`, the ``--from-run`` of ``bench/selective.py``);
* an **evaluation grid**: :func:`run_grid` scores every task (model × attack × strength ×
  test set) not yet stored, with a progress bar, and stores each row as soon as it exists;
* **reports**: :meth:`Session.finish` writes ``results.json`` (configuration, provenance, wall
  times, tidy rows); the script writes ``tables.md``, PNGs and ``paper_vs_ours.md`` with
  :mod:`benchlib.report`.

The models a script can train are declared in :mod:`benchlib.zoo` and the attacks it can run
in :mod:`benchlib.evaluate` (``ATTACK_FUNCTIONS``): adding either is one registry entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from benchlib.cli import add_run_arguments, apply_allocator, apply_threads, parse_setting
from benchlib.experiment import (
    REPO,
    RunDirectory,
    TrainSpec,
    config_dict,
    resolve_device,
    train_or_load,
)
from benchlib.meta import provenance
from benchlib.results import Row, RowStore, row_key, write_results
from robust_vi import distributed as rdist

P = TypeVar("P")

__all__ = [
    "REPO",
    "Session",
    "apply_overrides",
    "results_dir",
    "run_grid",
    "script_parser",
    "select_profile",
]


def results_dir(script: str) -> Path:
    """``results/<script>``: the default parent of a script's run directories."""
    return REPO / "results" / script


def apply_overrides(
    profile: P,
    items: Sequence[str],
    *,
    optional_ints: Sequence[str] = (),
    passthrough: Sequence[str] = (),
) -> tuple[P, list[str]]:
    """Apply ``--set KEY=VALUE`` items to a profile dataclass.

    Args:
        profile: A (frozen) dataclass instance.
        items: ``KEY=VALUE`` strings; the value is parsed into the type of the current value
            (:func:`benchlib.cli.parse_setting`).
        optional_ints: Keys that take an integer or ``none``.
        passthrough: Keys that are not fields of ``profile`` but belong to another profile
            (e.g. the training profile a script borrows): returned untouched.

    Returns:
        The new profile and the passed-through items.

    Raises:
        SystemExit: For a malformed item, an unknown key or a value that does not parse.
    """
    fields = {f.name for f in dataclasses.fields(profile)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    rest: list[str] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected KEY=VALUE; got {item!r}")
        if key not in fields:
            if key in passthrough:
                rest.append(item)
                continue
            known = ", ".join(sorted(fields | set(passthrough)))
            raise SystemExit(f"--set: unknown setting {key!r}; known: {known}")
        try:
            changes[key] = parse_setting(
                getattr(profile, key), value, optional_int=key in optional_ints
            )
        except ValueError as err:
            raise SystemExit(f"--set {item}: {err}") from None
    return dataclasses.replace(profile, **changes), rest  # type: ignore[type-var]


def select_profile(
    profiles: Mapping[str, P],
    args: argparse.Namespace,
    *,
    optional_ints: Sequence[str] = (),
    grid_field: str | None = "eps_grid",
) -> P:
    """The profile ``args.profile`` with ``args.set`` applied (and ``args.eps`` when given).

    The strength grid (``grid_field``) is made ascending with each value once, whether it
    came from ``--eps`` or ``--set``: tables and plots read it in order.
    """
    profile, _ = apply_overrides(profiles[args.profile], args.set, optional_ints=optional_ints)
    if grid_field is not None:
        eps = getattr(args, "eps", None)
        if eps is not None:
            profile = dataclasses.replace(profile, **{grid_field: tuple(eps)})  # type: ignore[type-var]
        grid = tuple(sorted(set(getattr(profile, grid_field))))
        profile = dataclasses.replace(profile, **{grid_field: grid})  # type: ignore[type-var]
    return profile


def script_parser(
    description: str | None,
    *,
    script: str,
    profiles: Mapping[str, object],
    threads: int | None = None,
    threads_help: str = "torch intra-op CPU threads (default: torch's, one per core; use 1 when "
    "another heavy process shares a 2-core machine: contention slows torch 10-30x)",
    set_example: str = "--set epochs=2 test_size=20",
) -> argparse.ArgumentParser:
    """The parser every reproduction script starts from.

    It has ``--profile`` (default ``quick``), ``--set KEY=VALUE ...`` and the run options of
    :func:`benchlib.cli.add_run_arguments` (``--eps``, ``--device``, ``--threads``,
    ``--data-dir``, ``--download``, ``--run``, ``--out`` = ``results/<script>``, ``--fresh``,
    ``--no-progress``, ``--allocator``). Scripts add their own options (``--models``, ...).
    """
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--profile", choices=sorted(profiles), default="quick")
    add_run_arguments(p, out=results_dir(script), threads=threads, threads_help=threads_help)
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=f"override profile settings, e.g. {set_example}",
    )
    return p


@dataclass
class Session:
    """One invocation of a script on its run directory (see the module docstring).

    Create with :meth:`start`; train with :meth:`train`; time phases with :meth:`timed`;
    write ``results.json`` with :meth:`finish`.

    Attributes:
        run: The run directory.
        device: Where models are trained and attacked.
        progress: Show progress bars.
        config: The run's configuration as saved in ``config.json``.
        wall: Wall times by phase (seconds), written to ``results.json``.
        train_meta: Training history and time of every model trained or loaded.
        store: The evaluation rows (``rows.jsonl``).
        dist: This process's place in a ``torchrun`` run (one process: rank 0 of 1).
    """

    run: RunDirectory
    device: torch.device
    progress: bool
    config: dict[str, Any]
    wall: dict[str, float] = field(default_factory=dict)
    train_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    store: RowStore = field(init=False)
    dist: rdist.DistInfo = field(default_factory=rdist.DistInfo)
    _start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.store = RowStore(self.run.rows)

    @classmethod
    def start(
        cls,
        args: argparse.Namespace,
        profile: object,
        *,
        guarded: Sequence[str],
        defaults: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Session:
        """Resolve the device, set threads and allocator, seed torch and open the run.

        Under ``torchrun`` the process joins the process group
        (:func:`robust_vi.distributed.current`; on GPUs each rank takes its local GPU), rank 0
        alone prepares the run directory and shows progress, and the others wait for it.

        Args:
            args: The parsed command line (:func:`script_parser`).
            profile: The profile dataclass (its fields are the saved configuration).
            guarded: Settings that cached models and rows depend on
                (:meth:`RunDirectory.prepare`).
            defaults: Guarded settings added later, with the value earlier runs had.
            config: The configuration to save instead of ``profile``'s fields.
        """
        device = resolve_device(args.device)
        info = rdist.current(device)
        if info.enabled and device.type == "cuda":
            device = torch.device("cuda", info.local_rank)
        apply_threads(args.threads)
        apply_allocator(args.allocator)
        torch.manual_seed(int(getattr(profile, "seed", 0)))
        run = RunDirectory(args.out / (args.run or profile.name))  # type: ignore[attr-defined]
        saved = config if config is not None else config_dict(profile)
        if info.is_main:
            run.prepare(saved, fresh=args.fresh, guarded=tuple(guarded), defaults=defaults)
        rdist.barrier(info)
        progress = not args.no_progress and info.is_main
        return cls(run=run, device=device, progress=progress, config=saved, dist=info)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``wall[phase]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - t0

    def reuse_models(self, source: Path, names: Sequence[str]) -> list[str]:
        """Copy the finished models ``names`` of another run directory into this one.

        Only finished models (``models/<name>.pt`` with its ``.json``) are copied, and never
        over a model this run already has. The caller checks that the two runs trained with
        the same settings.

        Returns:
            The names copied.
        """
        copied = []
        src = RunDirectory(Path(source))
        for name in names:
            pt, meta = src.models / f"{name}.pt", src.models / f"{name}.json"
            if not (pt.exists() and meta.exists()):
                continue
            if (self.run.models / f"{name}.json").exists():
                continue
            self.run.models.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pt, self.run.models / pt.name)
            shutil.copy2(meta, self.run.models / meta.name)  # last: marks it finished
            copied.append(name)
        return copied

    def train(
        self,
        spec: TrainSpec,
        train: tuple[torch.Tensor, torch.Tensor],
        *,
        say: Callable[[str], None] | None = print,
        callbacks: Sequence[Callable[..., Any]] = (),
    ) -> nn.Module:
        """The model of ``spec``, trained once and cached (:func:`train_or_load`).

        Records its training time in ``wall["train/<name>"]`` and its history in
        :attr:`train_meta`. ``callbacks`` run after each training epoch
        (:class:`robust_vi.Trainer`; e.g. a :class:`robust_vi.OverfittingMonitor`).
        """
        t0 = time.perf_counter()
        model, meta = train_or_load(
            spec, train, self.run, self.device, progress=self.progress, callbacks=callbacks
        )
        self.train_meta[spec.name] = meta
        self.wall[f"train/{spec.name}"] = meta["train_time_s"]
        if say is not None:
            say(
                f"  {spec.name}: trained in {meta['train_time_s']:.0f} s "
                f"({time.perf_counter() - t0:.0f} s this time)"
            )
        return model

    def finished(self, name: str) -> dict[str, Any] | None:
        """The saved training record of the finished model ``name``, or ``None``.

        Trains nothing (a ``--report-only`` run summarises what exists); a finished model's
        record is added to :attr:`train_meta` as :meth:`train` would.
        """
        path = self.run.models / f"{name}.json"
        if not (path.exists() and (self.run.models / f"{name}.pt").exists()):
            return None
        meta = json.loads(path.read_text())
        self.train_meta[name] = meta
        return meta

    def rows_of(self, tasks: Sequence[tuple]) -> list[Row]:
        """The stored rows of ``tasks`` (``(model, attack, eps, seed)``), in store order."""
        wanted = {row_key(*t) for t in tasks}
        return [
            r
            for r in self.store.rows()
            if row_key(r["model"], r["attack"], r["eps"], r["seed"]) in wanted
        ]

    def finish(
        self,
        rows: Sequence[Row],
        *,
        config_extra: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        history: bool = True,
    ) -> Path:
        """Write ``results.json``: configuration, provenance, wall times, extras and rows.

        Args:
            rows: The tidy rows of this invocation's grid.
            config_extra: Added to the saved configuration (e.g. the models and attacks run).
            extra: Further top-level entries (seeds, notes, ...).
            history: Add ``training_history`` (per-epoch history of every model).
        """
        self.wall["total_this_invocation"] = time.perf_counter() - self._start
        more = dict(extra or {})
        if history:
            more["training_history"] = {k: v["history"] for k, v in self.train_meta.items()}
        path = self.run.root / "results.json"
        write_results(
            path,
            config={**self.config, **(config_extra or {})},
            provenance=provenance(self.device),
            wall_times=self.wall,
            rows=rows,
            extra=more,
        )
        return path

    def announce(self, text: str, files: Sequence[str]) -> None:
        """Print the report ``text`` and the files written to the run directory."""
        names = ", ".join(files[:-1]) + (" and " if len(files) > 1 else "") + files[-1]
        print()
        print(text)
        print(f"wrote {self.run.root}/{names}")

    def wall_summary(self) -> str:
        """The wall times as one JSON line (seconds, one decimal)."""
        return json.dumps({k: round(v, 1) for k, v in self.wall.items()})


def run_grid(
    tasks: Sequence[tuple],
    score: Callable[[tuple], dict[str, Any]],
    store: RowStore,
    *,
    progress: bool = True,
    desc: str = "evaluating",
    prefix: dict[str, Any] | None = None,
    leave: bool = True,
) -> float:
    """Score every task not yet in ``store`` and store its row as soon as it exists.

    Args:
        tasks: ``(model, attack, eps, seed)`` tuples (the row identity,
            :func:`benchlib.results.row_key`).
        score: ``score(task)`` returns the row's other entries (metrics, ``n``, notes).
        store: Where rows go (resumable: tasks already stored are skipped).
        progress: Show a progress bar.
        desc: Its label.
        prefix: Entries written before the row identity (e.g. ``{"dataset": "wine"}``).
        leave: Keep the finished progress bar on screen.

    Returns:
        The wall time spent (seconds).
    """
    todo = [t for t in tasks if row_key(*t) not in store]
    start = time.perf_counter()
    bar = tqdm(todo, desc=desc, disable=not progress, dynamic_ncols=True, leave=leave)
    for task in bar:
        model, attack, eps, seed = task
        bar.set_postfix_str(f"{model} {attack} ε={eps:g}" + ("" if prefix else f" set {seed}"))
        t0 = time.perf_counter()
        values = score(task)
        store.add(
            {
                **(prefix or {}),
                "model": model,
                "attack": attack,
                "eps": eps,
                "seed": seed,
                **values,
                "time_s": round(time.perf_counter() - t0, 3),
            }
        )
    return time.perf_counter() - start
