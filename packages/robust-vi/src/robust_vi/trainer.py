"""Training a model's posterior (or point estimate) against a channel (paper, Sections 2 and 3.1).

:class:`Trainer` runs Adam with an exponential learning-rate decay over minibatches, the
likelihood scaled by ``N/B`` and the KL optionally annealed (both inside the objective,
see :mod:`robust_vi.objective`), one GAN-style adversary step of a learned channel before
every model step (or, for a channel with ``update="joint"``, one ascent step of its
generator on the gradient the model step's own backward pass left in it), per-epoch
validation with the posterior predictive, a checkpoint after every epoch and resumption
after an interruption. All randomness (posterior and channel
draws, shuffling, validation draws) comes from generators the trainer owns and saves, and
whatever the model draws from torch's global generator (dropout) runs on a fork of it
seeded from the trainer's seed and checkpointed too (the caller's global state is left as it
was), so a run is reproducible on the CPU and a resumed run is identical to an
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from adv_channels import Channel, IdentityChannel
from bnn_core import (
    GaussianLikelihood,
    PosteriorPredictive,
    Task,
    bayesian_modules,
    gaussian_mixture_nll,
    kl_divergence,
    nll,
    posterior_summary,
    sample_mode,
)
from robust_vi import distributed as _dist
from robust_vi._checks import (
    check_channel,
    check_float,
    check_module,
    check_nonnegative_int,
    check_positive_int,
    model_device,
)
from robust_vi.checkpoint import load_checkpoint, save_checkpoint
from robust_vi.modes import training_mode
from robust_vi.objective import Objective, ObjectiveResult
from robust_vi.posterior_draw import PosteriorDraw
from robust_vi.recipes import Recipe

__all__ = ["DEFAULT_RHO_LR_SCALE", "DEFAULT_TEMPERATURE", "Callback", "Trainer"]

Callback = Callable[["Trainer", dict[str, Any]], None]
"""Called as ``callback(trainer, record)`` after each epoch (after its checkpoint)."""

TrainData = DataLoader | Dataset | tuple[Tensor, Tensor]
"""A ``DataLoader`` yielding ``(x, y)``, a map-style ``Dataset`` of ``(x, y)`` pairs, or
a pair of tensors ``(x, y)``."""

_FORMAT = 1

DEFAULT_TEMPERATURE = 0.03
"""The default posterior temperature ``T`` (KL weight): chosen by ``bench/posterior.py``, see
docs/theory.md, "Training the posterior" (``1.0`` is the plain ELBO)."""
DEFAULT_RHO_LR_SCALE = 10.0
"""The default learning-rate multiplier of the posterior scales ``ρ`` (same study)."""


class Trainer:
    """Fit a model with a robust-VI objective and channel, with checkpoints and resume.

    Args:
        model: The network: Bayesian (``bnn_core``) for posterior objectives; deterministic
            or Bayesian (trained at its posterior mean) for point-estimate ones.
        objective: A :class:`~robust_vi.Recipe` (bundling objective and channel, e.g.
            ``recipe("MIX", eps=2.0)``) or an :class:`~robust_vi.Objective`.
        channel: The channel, when ``objective`` is an :class:`~robust_vi.Objective`;
            default :class:`adv_channels.IdentityChannel` (clean training). Not allowed
            with a recipe, which holds its own.
        dataset_size: ``N``, the number of training points; default the length of the
            training data passed to :meth:`fit` (for a ``DataLoader`` whose sampler draws
            from a subset, e.g. ``SubsetRandomSampler``, the subset's size).
        epochs: Total number of epochs (a resumed run continues up to it). Default ``10``.
        lr: Adam's learning rate. Default ``1e-3``.
        lr_decay: ``γ`` of the exponential decay, ``lr_e = lr γ^e`` (``0 < γ <= 1``).
            Default ``1.0`` (constant).
        kl_warmup_epochs: ``W >= 0``: KL weight ``T · min(1, (e + 1)/(W + 1))`` in epoch ``e``
            (0-based), a linear warm-up (KL annealing, Bowman et al. 2016; Sønderby et al.
            2016); ``0`` (default) is no annealing.
        temperature: ``T > 0``, a constant factor on the KL weight: the tempered objective
            ``E_q[log p(D | β)] − T · KL(q ‖ p)`` (Wenzel et al. 2020; ``T < 1`` is a "cold"
            posterior). Default :data:`DEFAULT_TEMPERATURE` (``0.03``, chosen by measurement:
            docs/theory.md, "Training the posterior"); ``1.0`` is the ELBO.
        rho_lr_scale: Learning rate of the posterior scales ``ρ`` of the Bayesian layers,
            as a multiple of ``lr`` (their own Adam parameter group, decayed alike).
            Default :data:`DEFAULT_RHO_LR_SCALE` (``10``: with one learning rate for all,
            Adam's capped steps leave every ``σ`` where the schedule puts it; see
            docs/theory.md, "Training the posterior"); ``1.0`` is one group for all.
        batch_size: Minibatch size when the data are tensors or a ``Dataset``. Default 128.
        shuffle: Reshuffle tensors/``Dataset`` data every epoch (with the trainer's own
            generator). Default ``True``. A ``DataLoader`` is used as it is.
        seed: Seeds every generator the trainer owns. Default ``0``.
        device: ``None`` (default): the model's device; ``"auto"``: CUDA when available,
            else the model's device; or a device, to which the model and channel are moved.
        checkpoint_dir: Where to write ``checkpoint.pt`` after every epoch; ``None``: no
            checkpoints.
        resume: Continue from the checkpoint in ``checkpoint_dir`` when :meth:`fit` starts
            (if there is one). Default ``True``.
        progress: Show a ``tqdm`` progress bar with the running loss and accuracy.
        val_samples: Posterior draws ``M`` of the validation PPD. Default ``10``.
        callbacks: Called as ``callback(trainer, record)`` after each epoch.
        distributed: ``"auto"`` (default): data-parallel across the processes of a
            ``torchrun`` launch (or an initialised ``torch.distributed`` group), one process
            otherwise; ``False``: never. Under ``torchrun``, ``batch_size`` is the *global*
            minibatch (split across ranks) and a step equals one process's step on it; see
            :mod:`robust_vi.distributed`.
        seed_ranks: Draw each rank's posterior and channel noise from its own stream
            (default ``True``); ``False`` gives every rank rank 0's stream (for testing).

    Attributes:
        history: One dict per finished epoch: ``epoch``, ``loss``, ``data_term``, ``kl``,
            ``kl_weight``, ``lr``, ``train_accuracy`` (classification, on the channel's
            inputs) or ``train_rmse``, ``penalty`` and ``adversary_loss`` where they apply,
            ``time_s``, and ``val_*`` metrics when validation data are given. Posterior
            objectives add ``expected_log_likelihood`` (``N · data_term``, nats),
            ``elbo`` (that minus ``kl``; epoch averages over the minibatches) and
            ``posterior`` (:func:`bnn_core.posterior_summary` at the end of the epoch).
        epoch: The number of finished epochs.

    Determinism: with tensors or a ``Dataset`` everything is reproducible; with a shuffling
    ``DataLoader`` give it a ``generator=`` so that its order is too (its state is
    checkpointed).

    Examples:
        >>> from robust_vi import recipe
        >>> model = mnist_cnn()
        >>> trainer = Trainer(model, recipe("MIX", eps=2.0), epochs=1, progress=False)
        >>> history = trainer.fit((x, y), val_data=(x, y))  # or a DataLoader of (x, y)
        >>> sorted(history[-1])[:4]
        ['data_term', 'elbo', 'epoch', 'expected_log_likelihood']
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Recipe | Objective,
        channel: Channel | None = None,
        *,
        dataset_size: int | None = None,
        epochs: int = 10,
        lr: float = 1e-3,
        lr_decay: float = 1.0,
        kl_warmup_epochs: int = 0,
        temperature: float = DEFAULT_TEMPERATURE,
        rho_lr_scale: float = DEFAULT_RHO_LR_SCALE,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: bool = True,
        progress: bool = True,
        val_samples: int = 10,
        callbacks: Sequence[Callback] = (),
        distributed: bool | str = "auto",
        seed_ranks: bool = True,
    ) -> None:
        self.model = check_module(model)
        if isinstance(objective, Recipe):
            if channel is not None:
                raise ValueError(
                    "channel must be None when objective is a Recipe (the recipe holds its "
                    "channel); pass an Objective to use another channel"
                )
            self.recipe: Recipe | None = objective
            self.objective: Objective = objective.objective
            channel = objective.channel
        elif isinstance(objective, Objective):
            self.recipe = None
            self.objective = objective
            channel = IdentityChannel() if channel is None else channel
        else:
            raise TypeError(
                "objective must be a robust_vi Recipe (recipe('MIX', eps=2.0)) or an Objective "
                f"(SurrogateELBO(), ...); got {type(objective).__name__}"
            )
        self.channel = check_channel(channel)
        self.dataset_size = (
            None if dataset_size is None else check_positive_int(dataset_size, "dataset_size")
        )
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = check_float(lr, "lr", positive=True)
        self.lr_decay = check_float(lr_decay, "lr_decay", positive=True)
        if self.lr_decay > 1.0:
            raise ValueError(f"lr_decay must be in (0, 1]; got {lr_decay}")
        self.kl_warmup_epochs = check_nonnegative_int(kl_warmup_epochs, "kl_warmup_epochs")
        self.temperature = check_float(temperature, "temperature", positive=True)
        self.rho_lr_scale = check_float(rho_lr_scale, "rho_lr_scale", positive=True)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        self.seed = check_nonnegative_int(seed, "seed")
        # -- data-parallel run (torchrun): one process changes nothing ------------------
        if distributed not in ("auto", True, False):
            raise ValueError(f"distributed must be 'auto', True or False; got {distributed!r}")
        self.device = self._resolve_device(device)
        self.dist = _dist.current(self.device) if distributed else _dist.DistInfo()
        if distributed is True and not self.dist.enabled:
            raise ValueError("distributed=True needs a torchrun launch with WORLD_SIZE > 1")
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.dist.enabled and batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size ({batch_size}) is the global minibatch: it must be divisible by "
                f"the number of processes ({self.dist.world_size})"
            )
        self._dp = _dist.DataParallel(self.dist, self.device) if self.dist.enabled else None
        self._stream_seed = _dist.rank_seed(self.seed, self.dist.rank if seed_ranks else 0)
        # ---------------------------------------------------------------------------------
        self.model.to(self.device)
        self.channel.to(self.device)
        likelihood = self.objective.likelihood
        if likelihood is not None:
            likelihood.to(self.device)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.resume = bool(resume)
        self.progress = bool(progress) and self.dist.is_main
        self.val_samples = check_positive_int(val_samples, "val_samples")
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables; got {type(cb).__name__}")

        params = list(self.model.parameters())
        if likelihood is not None and not any(p is likelihood.noise_rho for p in params):
            params.append(likelihood.noise_rho)
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters")
        groups: list[dict[str, Any]] = [{"params": params}]
        if self.rho_lr_scale != 1.0:  # else one group (as before the option existed)
            ids = {
                id(r) for _, m in bayesian_modules(model) for _, _, r in m.variational_parameters()
            }
            rest = [p for p in params if id(p) not in ids]
            rho = [p for p in params if id(p) in ids]
            groups = [{"params": rest}, {"params": rho, "lr": self.lr * self.rho_lr_scale}]
        self.optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=self.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, self.lr_decay)
        self.generator = torch.Generator(device=self.device).manual_seed(self._stream_seed)
        self.data_generator = torch.Generator().manual_seed(self.seed + 1)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self._loader_generator: torch.Generator | None = None
        # torch's global generator(s) for the model's own randomness (dropout) during fit:
        # None until the first epoch starts (then seeded from seed), restored on resume
        self._global_rng: dict[str, Tensor | None] | None = None

    # -- configuration ------------------------------------------------------------------

    def _resolve_device(self, device: torch.device | str | None) -> torch.device:
        if device is None:
            return model_device(self.model)
        if device == "auto":
            return torch.device("cuda") if torch.cuda.is_available() else model_device(self.model)
        if not isinstance(device, torch.device | str):
            raise TypeError(f"device must be a torch.device, a string or None; got {device!r}")
        return torch.device(device)

    @property
    def task(self) -> Task:
        """The objective's task."""
        return self.objective.task

    def kl_weight(self, epoch: int) -> float:
        """The KL weight of (0-based) ``epoch``: ``T · min(1, (epoch + 1)/(W + 1))``."""
        return self.temperature * min(1.0, (epoch + 1) / (self.kl_warmup_epochs + 1))

    # -- data ---------------------------------------------------------------------------

    def _dataset_size(self, data: TrainData) -> int:
        if self.dataset_size is not None:
            return self.dataset_size
        if isinstance(data, DataLoader):
            # a sampler over a subset (SubsetRandomSampler, or any with ``indices``): the
            # training points are the subset, not the whole dataset the loader indexes
            sampler = getattr(data.batch_sampler, "sampler", None)  # not `or`: bool() = len()
            indices = getattr(data.sampler if sampler is None else sampler, "indices", None)
            try:
                return len(indices if indices is not None else data.dataset)  # type: ignore[arg-type]
            except TypeError:
                pass
            raise ValueError("cannot infer dataset_size from this DataLoader: pass dataset_size=")
        if isinstance(data, tuple):
            return len(data[0])
        return len(data)  # type: ignore[arg-type]

    def _check_data(self, data: object, name: str) -> TrainData:
        if isinstance(data, DataLoader | Dataset):
            return data
        if isinstance(data, tuple | list) and len(data) == 2:
            x, y = data
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise TypeError(f"{name} as a pair must hold two tensors (x, y)")
            if len(x) != len(y):
                raise ValueError(f"{name}: x has {len(x)} examples but y has {len(y)}")
            if len(x) == 0:
                raise ValueError(f"{name} is empty")
            return (x, y)
        raise TypeError(
            f"{name} must be a DataLoader, a Dataset of (x, y) pairs or a tuple (x, y) of "
            f"tensors; got {type(data).__name__}"
        )

    def _batches(
        self, data: TrainData, *, shuffle: bool, train: bool = False
    ) -> tuple[Iterable[tuple[Tensor, Tensor]], int]:
        """An iterable of ``(x, y)`` batches and its length (training: this rank's shards)."""
        if isinstance(data, DataLoader):
            if train and self._dp is not None:
                _dist.check_loader(data)
            return data, len(data)
        if isinstance(data, tuple):
            x, y = data
            n = len(x)
            num = math.ceil(n / self.batch_size)
            dp = self._dp if train else None

            def slices() -> Iterator[tuple[Tensor, Tensor]]:
                if shuffle:
                    order = torch.randperm(n, generator=self.data_generator)
                    for i in range(0, n, self.batch_size):
                        idx = order[i : i + self.batch_size]
                        idx = idx if dp is None else idx[dp.local_rows(len(idx))]  # rank's share
                        idx = idx.to(x.device)
                        yield x.index_select(0, idx), y.index_select(0, idx.to(y.device))
                else:
                    for i in range(0, n, self.batch_size):
                        rows = slice(i, min(n, i + self.batch_size))
                        if dp is not None:
                            part = dp.local_rows(rows.stop - rows.start)
                            rows = slice(rows.start + part.start, rows.start + part.stop)
                        yield x[rows], y[rows]

            return slices(), num
        # Only a shuffling loader reads the trainer's data generator (so validation does not
        # advance the training order's stream).
        if train and self._dp is not None:
            sampler = _dist.ShardBatchSampler(
                len(data),  # type: ignore[arg-type]
                self.batch_size,
                self.dist,
                shuffle=shuffle,
                generator=self.data_generator if shuffle else None,
            )
            loader = DataLoader(data, batch_sampler=sampler)
            return loader, len(loader)
        loader = DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=self.data_generator if shuffle else None,
        )
        return loader, len(loader)

    def _to_device(self, batch: object) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise TypeError(
                "every training batch must be a pair (x, y) (labels are needed by the "
                f"likelihood); got {type(batch).__name__}"
            )
        x, y = batch[0], batch[1]
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("every batch must hold tensors (x, y)")
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    # -- the loop -----------------------------------------------------------------------

    def fit(self, train_data: TrainData, val_data: TrainData | None = None) -> list[dict[str, Any]]:
        """Train up to :attr:`epochs` epochs (resuming from a checkpoint if there is one).

        Args:
            train_data: A ``DataLoader`` of ``(x, y)``, a ``Dataset`` of ``(x, y)`` or a pair
                of tensors ``(x, y)``.
            val_data: Optional validation data of the same kinds: its PPD accuracy and NLL
                (regression: RMSE and NLL) are recorded after every epoch.

        Returns:
            :attr:`history`, one record per finished epoch (also those before a resume).
        """
        train_data = self._check_data(train_data, "train_data")
        if val_data is not None:
            val_data = self._check_data(val_data, "val_data")
        if isinstance(train_data, DataLoader):
            self._loader_generator = train_data.generator
        n = self._dataset_size(train_data)
        if self.checkpoint_dir is not None and self.resume:
            state = load_checkpoint(self.checkpoint_dir, map_location="cpu")
            if state is not None:
                self.load_state_dict(state)
        if self._dp is not None:  # every rank from rank 0's network; gradients averaged
            likelihood = self.objective.likelihood
            modules = [self.model, self.channel, *([] if likelihood is None else [likelihood])]
            # every learned generator's optimiser, also inside a mixture (NN50, AMO50)
            channel_opts = [
                m.optimizer
                for m in self.channel.modules()
                if isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer)
            ]
            opts = [self.optimizer, *channel_opts]
            self._dp.start(modules, opts)
        # a joint generator's step reads the .grad of the model's backward pass only (each
        # step clears them after; this drops any left by the caller before the first)
        self.channel.zero_grad(set_to_none=True)
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the caller's global state is restored
            self._enter_global_rng()
            while self.epoch < self.epochs:
                record = self._train_epoch(train_data, n)
                if val_data is not None:
                    record.update({f"val_{k}": v for k, v in self.evaluate(val_data).items()})
                self.history.append(record)
                self.epoch += 1
                self._global_rng = self._read_global_rng()
                if self.checkpoint_dir is not None:
                    self._save_checkpoint()
                for cb in self.callbacks:
                    cb(self, record)
        if self._dp is not None:
            self._dp.stop()
        return self.history

    def _save_checkpoint(self) -> None:
        """Rank 0 writes (atomically) a state holding every rank's random streams."""
        state = self.state_dict()
        if self._dp is not None:
            streams = _dist.gather_objects(
                {"generator": state["generator"], "global_rng": state["global_rng"]}, self.dist
            )
            state["rank_streams"] = streams
        if self.dist.is_main:
            save_checkpoint(state, self.checkpoint_dir)  # type: ignore[arg-type]
        _dist.barrier(self.dist)

    def _read_global_rng(self) -> dict[str, Tensor | None]:
        cuda = self.device.type == "cuda"
        return {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
        }

    def _enter_global_rng(self) -> None:
        """Inside ``fork_rng``: seed torch's global generator(s) or restore the saved state."""
        cuda = self.device.type == "cuda"
        if self._global_rng is None:
            seed = self._stream_seed + 3
            torch.default_generator.manual_seed(seed)
            if cuda:
                index = self.device.index
                index = torch.cuda.current_device() if index is None else index
                torch.cuda.default_generators[index].manual_seed(seed)
            self._global_rng = self._read_global_rng()
            return
        torch.set_rng_state(self._global_rng["cpu"])
        if cuda and self._global_rng["cuda"] is not None:
            torch.cuda.set_rng_state(self._global_rng["cuda"], self.device)

    def _adversary_target(self) -> PosteriorDraw:
        """A fresh posterior draw for the learned channel's GAN step."""
        return PosteriorDraw(
            self.model, task=self.task, likelihood=self._likelihood(), generator=self.generator
        )

    def _likelihood(self) -> GaussianLikelihood | None:
        if self.task is Task.CLASSIFICATION:
            return None
        return self.objective.likelihood or getattr(self.model, "likelihood", None)

    def _train_epoch(self, data: TrainData, dataset_size: int) -> dict[str, Any]:
        epoch = self.epoch
        kl_weight = self.kl_weight(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        batches, num_batches = self._batches(data, shuffle=self.shuffle, train=True)
        sums: dict[str, Tensor] = {}
        count = 0
        examples = 0
        t0 = time.perf_counter()
        bar = tqdm(
            total=num_batches,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            disable=not self.progress,
            leave=False,
        )
        with ExitStack() as stack:
            stack.enter_context(training_mode(self.model, True))
            stack.enter_context(bar)
            for i, batch in enumerate(batches):
                x, y = self._to_device(batch)
                total = x.shape[0] if self._dp is None else self._dp.global_size(x.shape[0])
                if total < self.dist.world_size:  # a last global batch too small to split
                    continue
                adversary_loss = None
                if self.channel.learnable:
                    with ExitStack() as mean_mode:
                        if self.objective.point_estimate:
                            mean_mode.enter_context(sample_mode(self.model, "mean"))
                        adversary_loss = self.channel.adversary_step(
                            self._adversary_target(), x, y, generator=self.generator
                        )
                result = self.objective.evaluate(
                    self.model,
                    self.channel,
                    x,
                    y,
                    dataset_size=dataset_size,
                    kl_weight=kl_weight,
                    generator=self.generator,
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss = result.loss
                if self._dp is not None:  # weight c_r = R B_r / B: the global-batch gradient
                    loss = self._dp.scale_loss(
                        loss, x.shape[0], total, lambda: self._kl_term(kl_weight, dataset_size)
                    )
                loss.backward()
                self.optimizer.step()  # (distributed: gradients averaged by a pre-step hook)
                self.channel.joint_adversary_step()  # a learned channel with update="joint"
                if self._dp is not None:
                    _dist.broadcast_buffers(self.model)
                b = x.shape[0]
                count += 1
                examples += b
                for key, value in self._batch_stats(result, adversary_loss, b).items():
                    sums[key] = sums[key] + value if key in sums else value
                bar.update(1)
                if self.progress and (i % 10 == 0 or i + 1 == num_batches):
                    bar.set_postfix(self._postfix(sums, examples))
        self.scheduler.step()
        if self._dp is not None:
            sums, c = self._dp.reduce(sums, examples=examples, count=count)
            examples, count = c["examples"], c["count"]
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update(self._summary(sums, examples, count))
        record.update(kl_weight=kl_weight, lr=lr, time_s=time.perf_counter() - t0)
        if not self.objective.point_estimate:
            ell = record["data_term"] * dataset_size
            record.update(expected_log_likelihood=ell, elbo=ell - record["kl"])
            record["posterior"] = posterior_summary(self.model)
        return record

    def _kl_term(self, kl_weight: float, dataset_size: int) -> Tensor:
        """``w KL/N`` with its gradient (the objective's KL term)."""
        if self.objective.point_estimate or kl_weight <= 0:
            return torch.zeros((), device=self.device)
        return (kl_weight / dataset_size) * kl_divergence(self.model)

    def _batch_stats(
        self, result: ObjectiveResult, adversary_loss: Tensor | None, b: int
    ) -> dict[str, Tensor]:
        stats = {
            "loss": result.loss.detach() * b,
            "data_term": result.data_term * b,
            "kl": result.kl,
            "n_outputs": torch.tensor(float(result.targets.shape[0])),
        }
        if result.penalty is not None:
            stats["penalty"] = result.penalty * b
        if adversary_loss is not None:
            stats["adversary_loss"] = adversary_loss.detach() * b
        out, tgt = result.outputs, result.targets
        if self.task is Task.CLASSIFICATION:
            stats["correct"] = (out.argmax(dim=-1) == tgt).sum().to(out.dtype)
        else:
            rows = tgt.shape[0]
            stats["sq_err"] = (out.reshape(rows, -1) - tgt.reshape(rows, -1)).square().sum()
        return stats

    def _postfix(self, sums: dict[str, Tensor], examples: int) -> dict[str, str]:
        post = {"loss": f"{float(sums['loss']) / examples:.4g}"}
        outputs = float(sums["n_outputs"])
        if "correct" in sums:
            post["acc"] = f"{float(sums['correct']) / outputs:.3f}"
        else:
            post["rmse"] = f"{math.sqrt(float(sums['sq_err']) / outputs):.4g}"
        return post

    def _summary(self, sums: dict[str, Tensor], examples: int, count: int) -> dict[str, float]:
        out = {
            "loss": float(sums["loss"]) / examples,
            "data_term": float(sums["data_term"]) / examples,
            "kl": float(sums["kl"]) / count,
        }
        outputs = float(sums["n_outputs"])
        if "correct" in sums:
            out["train_accuracy"] = float(sums["correct"]) / outputs
        else:
            out["train_rmse"] = math.sqrt(float(sums["sq_err"]) / outputs)
        for key in ("penalty", "adversary_loss"):
            if key in sums:
                out[key] = float(sums[key]) / examples
        return out

    # -- validation -----------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, data: TrainData, num_samples: int | None = None) -> dict[str, float]:
        """Metrics of the posterior predictive (``M`` draws) on ``data``.

        Classification: ``accuracy`` and ``nll`` of the PPD (docs/theory.md); regression: ``rmse``
        of the PPD mean and ``nll`` of the Gaussian-mixture PPD. Point-estimate objectives
        are evaluated at the posterior mean. The draws come from a generator seeded from
        the trainer's seed, so the result does not depend on the training stream.

        Args:
            data: A ``DataLoader``, a ``Dataset`` or a pair of tensors ``(x, y)``.
            num_samples: ``M``; default the trainer's ``val_samples``.

        Returns:
            ``{"accuracy": ..., "nll": ...}`` or ``{"rmse": ..., "nll": ...}``.
        """
        data = self._check_data(data, "data")
        m = self.val_samples if num_samples is None else check_positive_int(num_samples, "M")
        generator = torch.Generator(device=self.device).manual_seed(self.seed + 2)
        batches, _ = self._batches(data, shuffle=False)
        total = 0
        sums = {"a": 0.0, "nll": 0.0}
        with ExitStack() as stack:
            stack.enter_context(training_mode(self.model, False))
            if self.objective.point_estimate:
                stack.enter_context(sample_mode(self.model, "mean"))
                m = 1
            likelihood = self._likelihood()
            ppd = PosteriorPredictive(
                self.model, m, task=self.task, likelihood=likelihood, generator=generator
            )
            for batch in batches:
                x, y = self._to_device(batch)
                total += x.shape[0]
                if self.task is Task.CLASSIFICATION:
                    log_probs = ppd(x)
                    assert isinstance(log_probs, Tensor)
                    sums["a"] += float((log_probs.argmax(dim=-1) == y).sum())
                    sums["nll"] += float(nll(log_probs, y, reduction="sum"))
                else:
                    assert likelihood is not None
                    means = ppd.draws(x)
                    mean = means.mean(dim=0)
                    target = y.reshape(mean.shape)
                    sums["a"] += float((mean - target).square().sum())
                    sums["nll"] += float(
                        gaussian_mixture_nll(means, likelihood.variance, target, reduction="sum")
                    )
        if self.task is Task.CLASSIFICATION:
            return {"accuracy": sums["a"] / total, "nll": sums["nll"] / total}
        return {"rmse": math.sqrt(sums["a"] / total), "nll": sums["nll"] / total}

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimiser, scheduler, channel, generators."""
        likelihood = self.objective.likelihood
        return {
            "format": _FORMAT,
            "objective": repr(self.objective),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "channel": self.channel.state_dict(),
            "likelihood": None if likelihood is None else likelihood.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "data_generator": self.data_generator.get_state(),
            "loader_generator": (
                None if self._loader_generator is None else self._loader_generator.get_state()
            ),
            "history": self.history,
            "global_rng": self._global_rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the model, channel and optimiser in place)."""
        if state.get("format") != _FORMAT:
            raise ValueError(f"unknown checkpoint format {state.get('format')!r}")
        if state.get("objective") != repr(self.objective):
            raise ValueError(
                f"the checkpoint was written for objective {state.get('objective')}, not "
                f"{self.objective!r}: use another checkpoint_dir or resume=False"
            )
        self.model.load_state_dict(state["model"])
        self.channel.load_state_dict(state["channel"])
        if state["likelihood"] is not None and self.objective.likelihood is not None:
            self.objective.likelihood.load_state_dict(state["likelihood"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.data_generator.set_state(state["data_generator"])
        streams = _dist.rank_streams(state, self.dist)
        if streams is not None:  # this rank's own posterior/channel streams
            if streams["generator"] is None:  # another number of ranks: fresh streams
                self.generator.manual_seed(self._stream_seed + int(state["epoch"]))
            else:
                self.generator.set_state(streams["generator"])
            state = {**state, "global_rng": streams["global_rng"]}
        if state["loader_generator"] is not None and self._loader_generator is not None:
            self._loader_generator.set_state(state["loader_generator"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        self._global_rng = state.get("global_rng")  # absent in checkpoints before it
