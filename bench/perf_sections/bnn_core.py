"""bnn-core: cost of Bayesian layers and of M posterior draws on the paper's MNIST CNN.

Forward+backward of a training step at batch 128 (``--quick``: 32), as ratios to the
same deterministic CNN measured round-robin in the same run:

* one posterior draw (``"sample"`` mode, fresh weights) — goal <= 1.2x;
* the same with the KL term of the ELBO added (what a training step costs);
* one draw with local reparameterisation (two convolutions per layer);
* ten draws through ``forward_samples`` + PPD NLL, looped and vectorised (``vmap``; in a
  round-robin of its own, see ``run``), and ``"auto"``: the figure of the path it picks
  (the same code, not timed twice) — goal <= 10x;
* inference: the M = 10 PPD without gradients vs one deterministic forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure

NUM_DRAWS = 10


def _step(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    params = list(model.parameters())

    def run() -> None:
        for p in params:
            p.grad = None
        loss_fn().backward()

    return run


def run(ctx: Context) -> list[Figure]:
    import bnn_core as bc

    device = ctx.device
    batch = 32 if ctx.quick else 128
    repeats = 3 if ctx.quick else max(ctx.repeats, 7)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    torch.manual_seed(ctx.seed)
    det = bc.mnist_cnn(bayesian=False).to(device)
    bnn = bc.mnist_cnn(init_sigma=1e-2).to(device)
    local = bc.mnist_cnn(init_sigma=1e-2, sample_mode="local").to(device)
    dataset_size = 60_000

    def ppd_loss(method: str) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            logits = bc.forward_samples(bnn, x, NUM_DRAWS, method=method)
            return bc.nll(bc.ppd_log_probs(logits), y)

        return loss

    ppd = bc.PosteriorPredictive(bnn, NUM_DRAWS)

    def det_infer() -> None:
        with torch.no_grad():
            det(x)

    def ppd_infer() -> None:
        with torch.no_grad():
            ppd(x)

    det_step = _step(det, lambda: F.cross_entropy(det(x), y))
    fns = {
        "det": det_step,
        "one": _step(bnn, lambda: F.cross_entropy(bnn(x), y)),
        "one_elbo": _step(
            bnn, lambda: F.cross_entropy(bnn(x), y) + bc.kl_divergence(bnn) / dataset_size
        ),
        "local": _step(local, lambda: F.cross_entropy(local(x), y)),
        "loop": _step(bnn, ppd_loss("loop")),
        "det_infer": det_infer,
        "ppd_infer": ppd_infer,
    }
    timing = dict(repeats=repeats, warmup=2, device=device, statistic=ctx.statistic)
    times = interleaved_times(fns, **timing)
    # The batched path keeps M times the activations alive: on the CPU the heap it leaves
    # behind changed the cost of whatever ran next (the same loop code timed right after it
    # came out 15-20% slower), so it is timed in a round-robin of its own, against its own
    # deterministic baseline, and compared through the ratios.
    vmap_times = interleaved_times(
        {"det": det_step, "vmap": _step(bnn, ppd_loss("vmap"))}, **timing
    )
    base = times["det"]
    ratio = {
        "loop": times["loop"] / base,
        "vmap": vmap_times["vmap"] / vmap_times["det"],
    }
    auto_path = bc.resolve_method("auto", bnn, device).value
    extra = {
        "batch": batch,
        "draws": NUM_DRAWS,
        "ms": {k: round(v * 1e3, 3) for k, v in times.items()},
        "ms_vmap_group": {k: round(v * 1e3, 3) for k, v in vmap_times.items()},
        "auto_path": auto_path,
    }
    what = f"fwd+bwd, MNIST CNN, batch {batch}, vs deterministic"
    return [
        Figure(
            "bnn_core.cnn.one_draw_vs_det",
            times["one"] / base,
            "x",
            "<= 1.2",
            f"one draw ('sample' mode), {what}",
            extra,
        ),
        Figure(
            "bnn_core.cnn.one_draw_elbo_vs_det",
            times["one_elbo"] / base,
            "x",
            "",
            f"one draw + KL term, {what}",
        ),
        Figure(
            "bnn_core.cnn.local_reparam_vs_det",
            times["local"] / base,
            "x",
            "",
            f"one draw, local reparameterisation, {what}",
        ),
        Figure(
            "bnn_core.cnn.ten_draws_loop_vs_det",
            ratio["loop"],
            "x",
            "",
            f"{NUM_DRAWS} draws looped + PPD NLL, {what}",
        ),
        Figure(
            "bnn_core.cnn.ten_draws_vmap_vs_det",
            ratio["vmap"],
            "x",
            "",
            f"{NUM_DRAWS} draws vectorised (vmap) + PPD NLL, {what}",
        ),
        Figure(
            "bnn_core.cnn.ten_draws_auto_vs_det",
            ratio[auto_path],
            "x",
            "<= 10",
            f"{NUM_DRAWS} draws, method='auto' (= {auto_path} on {device.type}, the figure "
            f"of that path), {what}",
        ),
        Figure(
            "bnn_core.cnn.vmap_vs_loop",
            ratio["vmap"] / ratio["loop"],
            "x",
            "",
            f"{NUM_DRAWS} draws fwd+bwd: vmap time / loop time (< 1: vmap faster)",
        ),
        Figure(
            "bnn_core.cnn.ppd_inference_vs_det",
            times["ppd_infer"] / times["det_infer"],
            "x",
            "",
            f"inference (no grad): PPD of {NUM_DRAWS} draws vs one deterministic forward",
        ),
    ]
