"""bnn-core: cost of Bayesian layers and of M posterior draws on the paper's MNIST CNN.

Forward+backward of a training step at batch 128 (``--quick``: 32), as ratios to the
same deterministic CNN measured round-robin in the same run:

* one posterior draw (``"sample"`` mode, fresh weights) — goal <= 1.2x;
* the same with the KL term of the ELBO added (what a training step costs);
* one draw with local reparameterisation (two convolutions per layer);
* ten draws through ``forward_samples`` + PPD NLL, looped (with the deterministic step and
  one draw in a round-robin of their own) and vectorised (``vmap``; in a
  round-robin of its own, see ``run``), and ``"auto"``: the figure of the path it picks
  (the same code, not timed twice) — goal <= 10x;
* inference: the M = 10 PPD without gradients vs one deterministic forward;
* ``bnn_core.cnn.channels_last.*``: the same steps with both CNNs built channels-last and
  contiguous, and channels-last's speed-up: what ``memory_format="auto"`` (the builders'
  default, used by every other figure) picks per device;
* the same CNN built with bayesian-torch (``dnn_to_bnn``, its Reparameterization layers: the
  reference the issue quotes, 1.24-1.33x for one draw and 11.6x for ten looped), one draw
  and ten draws looped, against our loop in a round-robin of their own. bayesian-torch is
  not a dependency: ``uv run --group compare bench/perf.py --sections bnn_core`` installs it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure, layout_speedups

NUM_DRAWS = 10


def _step(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    params = list(model.parameters())

    def run() -> None:
        for p in params:
            p.grad = None
        loss_fn().backward()

    return run


def _ppd_loss(
    bc, model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str
) -> Callable[[], torch.Tensor]:
    """The PPD NLL of ``NUM_DRAWS`` fresh draws, evaluated by ``method`` (loop or vmap)."""

    def loss() -> torch.Tensor:
        logits = bc.forward_samples(model, x, NUM_DRAWS, method=method)
        return bc.nll(bc.ppd_log_probs(logits), y)

    return loss


def _bayesian_torch_cnn(det: nn.Module) -> nn.Module | None:
    """``det``'s twin built by bayesian-torch's ``dnn_to_bnn`` (``None`` if not installed)."""
    try:
        from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn
    except ImportError:
        return None
    model = copy.deepcopy(det)
    prior = {
        "prior_mu": 0.0,
        "prior_sigma": 1.0,
        "posterior_mu_init": 0.0,
        "posterior_rho_init": -4.6,  # softplus(-4.6) = 0.01, our init_sigma below
        "type": "Reparameterization",
        "moped_enable": False,
    }
    dnn_to_bnn(model, prior)
    return model


def _bayesian_torch_figures(
    ctx: Context,
    det: nn.Module,
    det_step: Callable[[], None],
    loop_step: Callable[[], None],
    one_step: Callable[[], None],
    x: torch.Tensor,
    y: torch.Tensor,
    timing: dict,
) -> list[Figure]:
    bt = _bayesian_torch_cnn(det)
    if bt is None:
        return [
            Figure(
                "bnn_core.cnn.ten_draws_ours_vs_bayesian_torch",
                float("nan"),
                "x",
                note="skipped: bayesian-torch not installed (uv run --group compare ...)",
            )
        ]
    bt = bt.to(ctx.device)

    def bt_ppd_loss() -> torch.Tensor:  # bayesian-torch's idiom: one forward per draw
        logits = torch.stack([bt(x) for _ in range(NUM_DRAWS)])
        log_probs = torch.logsumexp(logits.log_softmax(-1), 0) - math.log(NUM_DRAWS)
        return F.nll_loss(log_probs, y)

    times = interleaved_times(
        {
            "det": det_step,
            "one": one_step,
            "loop": loop_step,
            "bt_one": _step(bt, lambda: F.cross_entropy(bt(x), y)),
            "bt_loop": _step(bt, bt_ppd_loss),
        },
        **timing,
    )
    base = times["det"]
    extra = {"ms": {k: round(v * 1e3, 3) for k, v in times.items()}}
    what = "fwd+bwd, MNIST CNN, in a round-robin of their own with the deterministic CNN"
    return [
        Figure(
            "bnn_core.cnn.bayesian_torch.one_draw_vs_det",
            times["bt_one"] / base,
            "x",
            note=f"bayesian-torch, one draw, {what}",
            extra=extra,
        ),
        Figure(
            "bnn_core.cnn.bayesian_torch.ten_draws_loop_vs_det",
            times["bt_loop"] / base,
            "x",
            note=f"bayesian-torch, {NUM_DRAWS} draws looped + PPD NLL, {what}",
        ),
        Figure(
            "bnn_core.cnn.one_draw_ours_vs_bayesian_torch",
            times["one"] / times["bt_one"],
            "x",
            "< 1",
            "one draw: our time / bayesian-torch's time, same round-robin (< 1: ours faster)",
        ),
        Figure(
            "bnn_core.cnn.ten_draws_ours_vs_bayesian_torch",
            times["loop"] / times["bt_loop"],
            "x",
            "< 1",
            f"{NUM_DRAWS} draws: our loop's time / bayesian-torch's loop's time, same "
            "round-robin (< 1: ours faster)",
        ),
    ]


def _layout_figures(
    bc, det: nn.Module, bnn: nn.Module, fns: dict, x: torch.Tensor, y: torch.Tensor, timing: dict
) -> list[Figure]:
    """The same steps with both CNNs built contiguous and channels-last (explicitly).

    The networks of the other figures are built by default (``memory_format="auto"``: the
    layout these figures measure faster on the device, see
    ``bnn_core.models.fastest_memory_format``); here both layouts are timed side by side.
    """
    twins = {}
    for tag, fmt in (("", "contiguous"), ("cl_", "channels_last")):
        d = bc.mnist_cnn(bayesian=False, memory_format=fmt).to(x.device)
        d.load_state_dict(det.state_dict())
        b = bc.mnist_cnn(init_sigma=1e-2, memory_format=fmt).to(x.device)
        b.load_state_dict(bnn.state_dict())
        twins[tag] = (d, b)
    (ct_det, ct), (cl_det, cl) = twins[""], twins["cl_"]

    times = interleaved_times(
        {
            "det": _step(ct_det, lambda: F.cross_entropy(ct_det(x), y)),
            "one": _step(ct, lambda: F.cross_entropy(ct(x), y)),
            "loop": _step(ct, _ppd_loss(bc, ct, x, y, "loop")),
            "cl_det": _step(cl_det, lambda: F.cross_entropy(cl_det(x), y)),
            "cl_one": _step(cl, lambda: F.cross_entropy(cl(x), y)),
            "cl_loop": _step(cl, _ppd_loss(bc, cl, x, y, "loop")),
        },
        **timing,
    )
    extra = {"ms": {k: round(v * 1e3, 3) for k, v in times.items()}}
    what = "fwd+bwd, MNIST CNN, in a round-robin of its own"
    return [
        Figure(
            "bnn_core.cnn.channels_last.one_draw_vs_det",
            times["cl_one"] / times["cl_det"],
            "x",
            note=f"both networks built channels-last: one draw / deterministic, {what}",
            extra=extra,
        ),
        Figure(
            "bnn_core.cnn.channels_last.ten_draws_loop_vs_det",
            times["cl_loop"] / times["cl_det"],
            "x",
            note=f"both networks built channels-last: {NUM_DRAWS} draws looped / deterministic",
        ),
        Figure(
            "bnn_core.cnn.channels_last.ten_draws_vs_contiguous_det",
            times["cl_loop"] / times["det"],
            "x",
            note=f"{NUM_DRAWS} draws looped, channels-last / deterministic CNN built "
            "contiguous (PyTorch's layout)",
        ),
        *layout_speedups(
            "bnn_core.cnn.channels_last", times, "ten_draws_speedup", f"{NUM_DRAWS} draws looped"
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    import bnn_core as bc

    device = ctx.device
    batch = 32 if ctx.quick else 128
    # 20 rounds: a round is ~0.3 s here, and with 7 the minima still moved by 20% between
    # runs on this shared 2-core machine (ours vs bayesian-torch: 0.83-1.31 with 7 rounds,
    # 0.90-0.94 with 25).
    repeats = 3 if ctx.quick else max(ctx.repeats, 20)
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    torch.manual_seed(ctx.seed)
    det = bc.mnist_cnn(bayesian=False).to(device)
    bnn = bc.mnist_cnn(init_sigma=1e-2).to(device)
    local = bc.mnist_cnn(init_sigma=1e-2, sample_mode="local").to(device)
    dataset_size = 60_000

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
        "loop": _step(bnn, _ppd_loss(bc, bnn, x, y, "loop")),
    }
    others = {
        "det": det_step,
        "one_elbo": _step(
            bnn, lambda: F.cross_entropy(bnn(x), y) + bc.kl_divergence(bnn) / dataset_size
        ),
        "local": _step(local, lambda: F.cross_entropy(local(x), y)),
        "det_infer": det_infer,
        "ppd_infer": ppd_infer,
    }
    timing = dict(repeats=repeats, warmup=2, device=device, statistic=ctx.statistic)
    # The goal figures (one and ten draws) in a round-robin of their own: interleaved with
    # the local-reparameterisation step (4-5x the deterministic step's time), the ten-draw
    # loop once took 105 ms against 55 and 59 ms in the other round-robins of the same run
    # (channels-last models; glibc's default allocator, see --allocator).
    times = interleaved_times(fns, **timing)
    other_times = interleaved_times(others, **timing)
    # The batched path keeps M times the activations alive: on the CPU the heap it leaves
    # behind changed the cost of whatever ran next (the same loop code timed right after it
    # came out 15-20% slower), so it is timed in a round-robin of its own, against its own
    # deterministic baseline, and compared through the ratios.
    vmap_times = interleaved_times(
        {"det": det_step, "vmap": _step(bnn, _ppd_loss(bc, bnn, x, y, "vmap"))}, **timing
    )
    compare = _bayesian_torch_figures(ctx, det, det_step, fns["loop"], fns["one"], x, y, timing)
    compare += _layout_figures(bc, det, bnn, fns, x, y, timing)
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
        "ms_others_group": {k: round(v * 1e3, 3) for k, v in other_times.items()},
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
            other_times["one_elbo"] / other_times["det"],
            "x",
            "",
            f"one draw + KL term, {what}",
        ),
        Figure(
            "bnn_core.cnn.local_reparam_vs_det",
            other_times["local"] / other_times["det"],
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
            other_times["ppd_infer"] / other_times["det_infer"],
            "x",
            "",
            f"inference (no grad): PPD of {NUM_DRAWS} draws vs one deterministic forward",
        ),
        *compare,
    ]
