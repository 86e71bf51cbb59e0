"""Worker of the data-parallel tests: run as ``torchrun ... ddp_worker.py OUT JOB...`` or plainly.

Each JOB is ``name:recipe:epochs:seed_ranks:checkpoint[:kill_at]`` (recipe ``BN``: BL on the
MLP with a batch-norm layer and an unused Bayesian layer; ``AMOJ``: AMO50 with the joint
generator update); the worker trains a tiny
Bayesian MLP on a fixed synthetic dataset of 27 points with a global batch of 8 (the last global
batch, 3 points, is split unevenly across two ranks), and writes
``OUT/<name>-rank<r>.pt`` holding the model's and channel's state and the history. With
``kill_at = k`` rank 1 exits abruptly at its ``k``-th forward pass of the second epoch
(after the first epoch's checkpoint), as a killed process would (on the first try only
under ``torchrun --max-restarts``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from bnn_core import to_bayesian
from robust_vi import Trainer, load_checkpoint, recipe


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.rand(27, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 1).long() + (x[:, 2] > 0.7).long()
    return x, y


class WithUnused(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.unused = nn.Linear(2, 2)  # deterministic: not in the KL either

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def model(kill_at: int | None, batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(int(os.environ.get("RANK", "0")) + 7)  # ranks differ: broadcast fixes
    norm = [nn.BatchNorm1d(8)] if batch_norm else []
    net = to_bayesian(nn.Sequential(nn.Linear(6, 8), *norm, nn.ReLU(), nn.Linear(8, 3)))
    if batch_norm:  # with a layer the forward never uses: no gradient on any rank
        net = WithUnused(net)
    first_try = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if kill_at is not None and int(os.environ.get("RANK", "0")) == 1 and first_try:
        calls = {"n": 0}

        def hook(module: nn.Module, args: object) -> None:
            if trainer_epoch[0] == 1:
                calls["n"] += 1
                if calls["n"] >= kill_at:
                    (OUT[0] / "killed").touch()
                    os._exit(17)

        net.register_forward_pre_hook(hook)
    return net


trainer_epoch = [0]
OUT = [Path()]


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    OUT[0] = out
    rank = int(os.environ.get("RANK", "0"))
    for job in argv[1:]:
        name, rec, epochs, seed_ranks, ckpt, *kill = job.split(":")
        kill_at = int(kill[0]) if kill else None
        ckpt_dir = out / f"ckpt-{name}" if ckpt == "1" else None
        batch_norm = rec == "BN"  # BL on a network with batch-norm and an unused layer
        rec = "BL" if batch_norm else rec
        kwargs = {} if rec == "BL" else {"eps": 0.5, "input_shape": (6,)}
        if rec == "AMOJ":
            rec, kwargs = "AMO50", kwargs | {"adversary_update": "joint"}
        net = model(kill_at, batch_norm)
        init = {k: v.clone() for k, v in net.state_dict().items()}
        trainer = Trainer(
            net,
            recipe(rec, **kwargs),
            epochs=int(epochs),
            batch_size=8,
            lr=0.05,
            seed=3,
            progress=False,
            seed_ranks=seed_ranks == "1",
            checkpoint_dir=ckpt_dir,
            callbacks=[lambda t, r: trainer_epoch.__setitem__(0, t.epoch)],
        )
        state = None if ckpt_dir is None else load_checkpoint(ckpt_dir)
        trainer_epoch[0] = 0 if state is None else int(state["epoch"])
        x, y = data()
        if batch_norm:  # whole global batches: a shard of one example cannot batch-normalise
            x, y = x[:24], y[:24]
        history = trainer.fit((x, y))
        torch.save(
            {
                "model": trainer.model.state_dict(),
                "channel": trainer.channel.state_dict(),
                "history": history,
                "generator": trainer.generator.get_state(),
                "init": init,
            },
            out / f"{name}-rank{rank}.pt",
        )


if __name__ == "__main__":
    main(sys.argv[1:])
