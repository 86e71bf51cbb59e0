"""Data-parallel training across processes and machines (``torchrun``) for :class:`Trainer`.

Launched with ``torchrun --nproc_per_node=N script.py`` (or across machines with
``--nnodes``), every process (*rank*) runs the same script; the :class:`~robust_vi.Trainer`
notices the launch (``WORLD_SIZE > 1`` in the environment, or a process group already
initialised) and then

* initialises ``torch.distributed`` (``nccl`` on GPUs, ``gloo`` on CPUs) and puts each rank
  on its own GPU (``LOCAL_RANK``);
* broadcasts rank 0's model, likelihood and channel parameters and buffers, so that all
  ranks start from the same network;
* splits every *global* minibatch (``batch_size`` examples, drawn from the same shuffled
  order as a single process would use) into one contiguous shard per rank;
* averages the gradients of every optimised parameter across ranks after each backward pass,
  with each rank's loss weighted by its share of the global batch (:func:`shard_weight`),
  so the step equals the single-process step on the global batch: the data term is the
  mean over the global batch and the KL (scaled by the global ``N``) is counted once;
* averages a learned channel's generator gradients the same way inside its adversary step;
* draws each rank's posterior and channel noise from its own stream (:func:`rank_seed`);
* writes checkpoints from rank 0 only (atomically), holding every rank's random streams,
  and resumes every rank from them; shows progress on rank 0 only.

The gradient average is DistributedDataParallel's all-reduce done explicitly after the
backward pass rather than through a wrapped module: the channels' attacks differentiate the
network with respect to its *inputs* several times per step, which the DDP reducer does not
allow, and every rank draws its own weights ``β ~ q`` (the average of the ranks' pathwise
gradients is then an unbiased estimate with ``R`` draws). Parameters that no rank used keep
``grad = None`` (as without DDP, Adam skips them); batch-norm buffers are taken from rank 0
after every step, as DDP's ``broadcast_buffers`` does.

Examples:
    >>> info = current()  # doctest: +SKIP
    >>> info.world_size, info.rank  # (1, 0) in a plain process  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

__all__ = [
    "DataParallel",
    "DistInfo",
    "ShardBatchSampler",
    "all_reduce_grads",
    "all_reduce_sum",
    "broadcast_buffers",
    "broadcast_module",
    "check_loader",
    "current",
    "rank_seed",
    "rank_streams",
    "shard",
    "shard_weight",
    "sync_optimizer",
]

_RANK_STRIDE = 1 << 32
"""Rank ``r``'s streams are seeded ``seed + r * 2**32``: distinct for every seed below 2**32."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        world_size: Number of processes ``R`` (1 without ``torchrun``).
        rank: This process's rank ``r`` in ``0 … R-1``.
        local_rank: Its rank on its machine (which GPU it uses).
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for one process.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the run has more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and shows progress)."""
        return self.rank == 0


def current(device: torch.device | None = None, *, init: bool = True) -> DistInfo:
    """The run's :class:`DistInfo`, initialising the process group under ``torchrun``.

    Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) and
    without an initialised process group this is ``DistInfo()`` and nothing happens.

    Args:
        device: The device the trainer will use: a CUDA device selects ``nccl``, anything
            else ``gloo`` (when the group is initialised here).
        init: Initialise the process group from ``torchrun``'s environment if it is not.

    Returns:
        The process's :class:`DistInfo`.
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_world_size(), dist.get_rank(), local, dist.get_backend())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not init:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device is not None and torch.device(device).type == "cuda"
    backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_world_size(), dist.get_rank(), local, backend)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s stream: ``seed + rank * 2**32`` (rank 0 keeps ``seed``)."""
    return seed + rank * _RANK_STRIDE


def shard(n: int, world_size: int, rank: int) -> slice:
    """The rows of a global minibatch of ``n`` examples that rank ``rank`` trains on.

    Contiguous shards whose sizes differ by at most one (``torch.tensor_split``'s rule).
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def shard_weight(local: int, total: int, world_size: int) -> float:
    """The weight ``c_r = R B_r / B`` of a rank's per-example-mean data term.

    With the rank's loss ``c_r · mean_r(data) + KL/N``, the average over ranks of the
    gradients is ``(1/B) Σ_global grad(data) + grad(KL)/N``: the single-process gradient on
    the global batch of ``B = Σ_r B_r`` examples, with the KL counted once.
    """
    return world_size * local / total


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers of ``module`` to every rank (in place)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s floating-point buffers (batch-norm statistics) to every rank.

    One flat broadcast; integer buffers (``num_batches_tracked``) agree on every rank anyway.
    """
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    with torch.no_grad():
        flat = torch.cat([b.reshape(-1).to(torch.float64) for b in bufs])
        dist.broadcast(flat, src)
        offset = 0
        for b in bufs:
            b.copy_(flat[offset : offset + b.numel()].view(b.shape))
            offset += b.numel()


def all_reduce_sum(values: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Sum scalar tensors over ranks (one all-reduce); keys must match on every rank."""
    keys = sorted(values)
    flat = torch.stack([values[k].detach().to(device, torch.float64).reshape(()) for k in keys])
    dist.all_reduce(flat)
    return {k: flat[i].cpu() for i, k in enumerate(keys)}


def all_reduce_grads(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Average ``.grad`` of ``params`` over ranks in one flat all-reduce (in place).

    A parameter without a gradient on some rank contributes zeros; one without a gradient
    on every rank keeps ``grad = None``. All ranks must pass the same parameters in the
    same order.
    """
    params = list(params)
    if not params:
        return
    device = params[0].device
    pieces = [
        (
            torch.zeros(p.numel(), dtype=torch.float32, device=device)
            if p.grad is None
            else p.grad.detach().reshape(-1).to(device, torch.float32)
        )
        for p in params
    ]
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    flat = torch.cat([*pieces, used])
    dist.all_reduce(flat)
    flat[: -len(params)] /= world_size
    offset = 0
    for i, p in enumerate(params):
        k = p.numel()
        if flat[-len(params) + i] > 0:
            grad = flat[offset : offset + k].view(p.shape).to(p.dtype)
            if p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
        else:
            p.grad = None
        offset += k


def sync_optimizer(optimizer: torch.optim.Optimizer, world_size: int) -> object:
    """Average the gradients of ``optimizer``'s parameters over ranks before each step.

    Registered as a step pre-hook, so it also covers optimisers stepped by code the trainer
    does not own (a learned channel's generator, stepped inside its adversary step). Returns
    the hook handle (``.remove()`` undoes it).
    """

    def hook(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        all_reduce_grads((p for group in opt.param_groups for p in group["params"]), world_size)

    return optimizer.register_step_pre_hook(hook)


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj`` (a list in rank order) on every rank."""
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (a no-op for one process)."""
    if info.enabled:
        dist.barrier()


def check_loader(loader: DataLoader) -> None:
    """A user's ``DataLoader`` in a multi-process run must shard with a ``DistributedSampler``.

    Raises:
        ValueError: Its sampler is not a ``DistributedSampler`` (every rank would train on
            the whole dataset).
    """
    sampler = getattr(loader.batch_sampler, "sampler", None)
    if not isinstance(loader.sampler, DistributedSampler) and not isinstance(
        sampler, DistributedSampler
    ):
        raise ValueError(
            "under torchrun a DataLoader passed to fit must use a DistributedSampler (call "
            "its set_epoch yourself), or pass a Dataset or tensors (x, y) and the trainer "
            "shards every global minibatch itself"
        )


def rank_streams(state: dict[str, Any], info: DistInfo) -> dict[str, Any] | None:
    """This rank's saved random streams in a checkpoint, for a multi-process resume.

    Returns ``None`` for one process (rank 0's streams are the checkpoint's own), the rank's
    ``{"generator", "global_rng"}`` when the checkpoint was written by as many ranks, and
    ``{"generator": None, "global_rng": None}`` (fresh streams, with a warning) otherwise.
    """
    if not info.enabled:
        return None
    saved = state.get("rank_streams")
    if isinstance(saved, list) and len(saved) == info.world_size:
        return saved[info.rank]
    warnings.warn(
        f"the checkpoint was written by {len(saved) if isinstance(saved, list) else 1} "
        f"process(es), not {info.world_size}: the ranks' random streams are reseeded",
        stacklevel=3,
    )
    return {"generator": None, "global_rng": None}


class ShardBatchSampler(Sampler[list[int]]):
    """This rank's share of every global minibatch of a map-style dataset.

    The global minibatches are those a single process would draw: ``batch_size`` consecutive
    indices of ``randperm(n, generator)`` (or of ``0 … n-1`` without shuffling); each is
    split by :func:`shard`. A last global batch of fewer examples than ranks is dropped (as
    the trainer drops it with tensor data).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        info: DistInfo,
        *,
        shuffle: bool,
        generator: torch.Generator | None,
    ) -> None:
        self.n, self.batch_size, self.info = n, batch_size, info
        self.shuffle, self.generator = shuffle, generator

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = (
            torch.randperm(self.n, generator=self.generator)
            if self.shuffle
            else torch.arange(self.n)
        )
        for i in range(0, self.n, self.batch_size):
            glob = order[i : i + self.batch_size]
            if len(glob) < self.info.world_size:  # too small to give every rank a share
                return
            yield glob[shard(len(glob), self.info.world_size, self.info.rank)].tolist()


class DataParallel:
    """The trainer's side of a multi-process run (see the module docstring).

    Args:
        info: The run's :class:`DistInfo` (``world_size > 1``).
        device: The rank's device (where collectives' tensors live).
    """

    def __init__(self, info: DistInfo, device: torch.device) -> None:
        self.info = info
        self.device = device
        self._handles: list[object] = []

    def start(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]):
        """Give every rank rank 0's modules and average ``optimizers``' gradients."""
        for module in modules:
            broadcast_module(module)
        self.stop()
        self._handles = [sync_optimizer(opt, self.info.world_size) for opt in optimizers]

    def stop(self) -> None:
        """Remove the gradient-averaging hooks."""
        for handle in self._handles:
            handle.remove()  # type: ignore[attr-defined]
        self._handles = []

    def local_rows(self, n: int) -> slice:
        """This rank's rows of a global batch of ``n`` examples."""
        return shard(n, self.info.world_size, self.info.rank)

    def global_size(self, local: int) -> int:
        """``B = Σ_r B_r``, the global minibatch's size (one all-reduce)."""
        t = torch.tensor([local], dtype=torch.int64, device=self.device)
        dist.all_reduce(t)
        return int(t.item())

    def scale_loss(self, loss: Tensor, local: int, total: int, kl_term: Callable[[], Tensor]):
        """The rank's loss ``c_r · loss + (1 - c_r) · w KL/N`` (:func:`shard_weight`).

        ``loss`` is the objective's per-example-mean loss plus ``w KL/N``; ``kl_term``
        recomputes ``w KL/N`` (only called when the shards are unequal, ``c_r != 1``).
        """
        c = shard_weight(local, total, self.info.world_size)
        if c == 1.0:
            return loss
        return c * loss + (1.0 - c) * kl_term()

    def reduce(self, sums: dict[str, Tensor], **counts: int) -> tuple[dict[str, Tensor], dict]:
        """Sum an epoch's running sums and counts over ranks."""
        both = {
            **{f"s:{k}": v for k, v in sums.items()},
            **{f"c:{k}": torch.tensor(float(v)) for k, v in counts.items()},
        }
        out = all_reduce_sum(both, self.device)
        return (
            {k[2:]: v for k, v in out.items() if k.startswith("s:")},
            {k[2:]: int(round(float(v))) for k, v in out.items() if k.startswith("c:")},
        )
