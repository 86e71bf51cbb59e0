"""Data-parallel training (torchrun, gloo on the CPU).

The arithmetic (shards, loss weights, KL counted once) is checked in one process against the
float64 gradient on the global batch; the whole trainer is checked by launching
``torch.distributed.run --nproc_per_node=2`` on ``ddp_worker.py``: with both ranks on one
noise stream, the two-process run's parameters equal a one-process run's over the same
global batches; a learned channel's generator stays identical across ranks; a run killed in
the middle of its second epoch resumes to the uninterrupted run's result.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bnn_core import kl_divergence, sample_mode, to_bayesian
from robust_vi import SurrogateELBO, Trainer, recipe
from robust_vi.distributed import (
    DataParallel,
    DistInfo,
    ShardBatchSampler,
    current,
    rank_seed,
    rank_streams,
    shard,
    shard_weight,
)

WORKER = Path(__file__).with_name("ddp_worker.py")


# -- the arithmetic, in one process ------------------------------------------------------


@pytest.mark.parametrize(("n", "world"), [(8, 2), (3, 2), (7, 3), (5, 5), (10, 4)])
def test_shards_partition_the_global_batch(n, world):
    rows = [list(range(n))[shard(n, world, r)] for r in range(world)]
    assert sum(rows, []) == list(range(n))
    sizes = [len(r) for r in rows]
    assert max(sizes) - min(sizes) <= 1


def test_shard_batch_sampler_splits_the_single_process_batches():
    g = [torch.Generator().manual_seed(5) for _ in range(3)]
    single = list(ShardBatchSampler(11, 4, DistInfo(), shuffle=True, generator=g[0]))
    ranks = [
        list(ShardBatchSampler(11, 4, DistInfo(2, r), shuffle=True, generator=g[1 + r]))
        for r in range(2)
    ]
    assert [len(b) for b in single] == [4, 4, 3]
    for k, batch in enumerate(single):
        assert ranks[0][k] + ranks[1][k] == batch


def _objective_grads(model, x, y, n, scale=None):
    model.zero_grad(set_to_none=True)
    with sample_mode(model, "mean"):  # the same (deterministic) weights on every "rank"
        loss = SurrogateELBO().evaluate(model, recipe("BL").channel, x, y, dataset_size=n).loss
    if scale is not None:
        loss = scale(loss)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("sizes", [(4, 4), (3, 2), (2, 1, 1)])
def test_rank_losses_average_to_the_global_gradient_with_the_kl_once(sizes):
    """(1/R) Σ_r grad(c_r loss_r + (1 - c_r) KL/N) = grad of the global batch's loss (float64)."""
    torch.manual_seed(0)
    model = to_bayesian(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))).double()
    total, n, world = sum(sizes), 50, len(sizes)
    x, y = torch.rand(total, 5, dtype=torch.float64), torch.randint(0, 3, (total,))
    want = _objective_grads(model, x, y, n)
    kl_term = lambda: kl_divergence(model) / n  # noqa: E731
    grads, naive = None, None
    start = 0
    for r, b in enumerate(sizes):
        dp = DataParallel(DistInfo(world, r), torch.device("cpu"))
        rows = slice(start, start + b)
        start += b
        g = _objective_grads(
            model,
            x[rows],
            y[rows],
            n,
            lambda loss, dp=dp, b=b: dp.scale_loss(loss, b, total, kl_term),
        )
        g0 = _objective_grads(model, x[rows], y[rows], n)
        grads = g if grads is None else [a + c for a, c in zip(grads, g, strict=True)]
        naive = g0 if naive is None else [a + c for a, c in zip(naive, g0, strict=True)]
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got / world, ref, rtol=1e-10, atol=1e-12)
    # the weights matter: unequal shards averaged as they are give another gradient
    if len(set(sizes)) > 1:
        assert max((a / world - b).abs().max() for a, b in zip(naive, want, strict=True)) > 1e-4
    # and the KL term enters once: R copies of it would move the gradient
    kl_grads = torch.autograd.grad(kl_term(), list(model.parameters()))
    assert max(k.abs().max() for k in kl_grads) > 1e-3


def test_shard_weight_is_one_for_equal_shards():
    assert shard_weight(4, 8, 2) == 1.0
    assert shard_weight(2, 3, 2) == pytest.approx(4 / 3)


def test_rank_seeds_differ_and_rank0_keeps_the_seed():
    assert rank_seed(7, 0) == 7
    assert len({rank_seed(s, r) for s in range(4) for r in range(4)}) == 16


def test_rank_streams_of_another_world_size_are_reseeded_with_a_warning():
    state = {"rank_streams": [{"generator": 1, "global_rng": 2}] * 3}
    assert rank_streams(state, DistInfo()) is None
    assert rank_streams(state, DistInfo(3, 1)) == {"generator": 1, "global_rng": 2}
    with pytest.warns(UserWarning, match="reseeded"):
        assert rank_streams(state, DistInfo(2, 1)) == {"generator": None, "global_rng": None}


def test_single_process_is_unchanged_and_distributed_true_needs_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert current() == DistInfo()
    model = to_bayesian(nn.Linear(3, 2))
    trainer = Trainer(model, recipe("BL"), progress=False)
    assert not trainer.dist.enabled and trainer._dp is None
    with pytest.raises(ValueError, match="torchrun"):
        Trainer(model, recipe("BL"), distributed=True)
    with pytest.raises(ValueError, match="distributed"):
        Trainer(model, recipe("BL"), distributed="yes")


# -- two processes under torchrun --------------------------------------------------------


def _launch(out: Path, *jobs: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*head, str(WORKER), str(out), *jobs],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _load(out: Path, name: str, rank: int = 0) -> dict:
    return torch.load(out / f"{name}-rank{rank}.pt", weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two torchrun launches: in the first, rank 1 is killed in the second epoch of a run
    that checkpoints; the second resumes that run and runs the other jobs. The one-process
    reference runs in this process."""
    out = tmp_path_factory.mktemp("ddp")
    killed = _launch(out, "res:MIX:2:1:1:3")
    assert killed.returncode != 0  # torchrun reports the dead rank
    two = _launch(
        out,
        "res:MIX:2:1:1",
        "eq:BL:1:0:0",
        "nn:NN:1:1:0",
        "nn50:NN50:1:1:0",
        "amoj:AMOJ:1:1:0",
        "ref:MIX:2:1:0",
        "bn:BN:1:1:0",
    )
    assert two.returncode == 0, two.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("ddp_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.main([str(out), "single:BL:1:0:0"])
    return out


def test_two_processes_equal_one_process_over_the_same_global_batches(runs):
    out = runs
    single, rank0, rank1 = _load(out, "single"), _load(out, "eq", 0), _load(out, "eq", 1)
    moved = 0.0
    for k, want in single["model"].items():
        torch.testing.assert_close(rank0["model"][k], want, rtol=1e-5, atol=1e-6)
        assert torch.equal(rank0["model"][k], rank1["model"][k])
    init = to_bayesian(nn.Linear(6, 8))  # the step moved the means (not a vacuous equality)
    moved = (single["model"]["0.weight_mu"] - init.weight_mu.detach()).abs().max()
    assert moved > 1e-2
    # the epoch's summary is over the global batches: loss (with KL/N once) and accuracy
    for key in ("loss", "data_term", "kl", "train_accuracy"):
        assert rank0["history"][0][key] == pytest.approx(single["history"][0][key], rel=1e-5)


@pytest.mark.parametrize("job", ["nn", "nn50", "amoj"], ids=["NN", "NN50", "AMO50-joint"])
def test_learned_channel_generator_is_synchronised_and_streams_are_per_rank(runs, job):
    # also a generator inside a mixture (NN50 was left unsynchronised before), and with the
    # joint update, whose generator gradients come from each rank's own backward pass
    out = runs
    a, b = _load(out, job, 0), _load(out, job, 1)
    extra = [v for k, v in a["channel"].items() if k.endswith("_extra_state")]
    assert extra and all(e["optimizer"]["state"] for e in extra)  # the generator stepped
    for k, v in a["channel"].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b["channel"][k]), k
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert not torch.equal(a["generator"], b["generator"])  # rank-seeded noise


def test_batch_norm_statistics_follow_rank0_and_unused_parameters_stay_untouched(runs):
    a, b = _load(runs, "bn", 0), _load(runs, "bn", 1)
    stats = [k for k in a["model"] if "running_" in k]
    assert stats
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # parameters and running statistics
    for k in stats:
        assert not torch.equal(a["model"][k], a["init"][k])  # the statistics were updated
    for k in [k for k in a["model"] if k.startswith("unused.")]:
        # no rank had a gradient: Adam skipped it (as in one process), rank 0's init kept
        assert torch.equal(a["model"][k], a["init"][k]), k


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(runs):
    out = runs
    assert (out / "killed").exists()  # rank 1 died in epoch 2 of the first launch
    for rank in (0, 1):
        ref, res = _load(out, "ref", rank), _load(out, "res", rank)
        for k, v in ref["model"].items():
            assert torch.equal(v, res["model"][k]), k
        assert torch.equal(ref["generator"], res["generator"])  # each rank's own stream
        assert [h["loss"] for h in ref["history"]] == [h["loss"] for h in res["history"]]


def test_shard_batch_sampler_drops_a_last_batch_smaller_than_the_ranks():
    batches = list(ShardBatchSampler(9, 4, DistInfo(2, 1), shuffle=False, generator=None))
    assert batches == [[2, 3], [6, 7]]  # the 9th example alone cannot be split in two
