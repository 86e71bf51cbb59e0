"""Speed of adv_attacks' PGD against a plain-torch loop, torchattacks, and on a Bayesian CNN.

Figures (stable keys):

* ``attacks.pgd_l2.{ours,ours_one_pass,naive,torchattacks}_img_per_s``: images per second
  of PGD-L2 (50 steps, batch 256, random start off) on the paper's MNIST CNN
  (deterministic, built here in plain torch); ``ours_one_pass`` forces one
  forward/backward over the whole batch (no CPU chunking);
* ``attacks.pgd_l2.ours_vs_torchattacks`` (goal >= 1.1), ``ours_vs_naive`` and
  ``chunked_vs_one_pass``: throughput ratios measured in one interleaved run;
* ``attacks.pgd_step.bayes_m10_{vmap,loop}_vs_det`` (goal <= 10 for the faster one): time of
  one PGD step through ``bnn_core.PosteriorPredictive`` (M = 10 draws) over the
  deterministic step, each path in a round-robin of its own with the deterministic step,
  and ``bayes_m10_vmap_vs_loop``; skipped with a note if bnn_core is unavailable. The
  deterministic step is ``bnn_core.mnist_cnn(bayesian=False)``, the Bayesian CNN's twin;
* ``attacks.pgd_step.channels_last.*``: the same loop-path ratio with both networks built
  channels-last (``memory_format="channels_last"``, opt-in), and that layout's speed-up for
  the deterministic and the Bayesian step (one round-robin of the four);
* ``attacks.apgd_ce.{ours,torchattacks}_img_per_s`` and ``attacks.apgd_ce.ours_vs_torchattacks``
  (goal >= 1.1): APGD-CE (L∞, ε = 8/255 on [0, 1], random start, same steps) on the MNIST
  CNN against ``torchattacks.APGD``, interleaved in one run on one thread (two OpenMP
  threads on a shared CPU measure the contention); ``attacks.apgd_ce.ours_vs_torchattacks_cpu``
  is the same ratio in process CPU time, with each side's minor page faults per call;
  ``attacks.apgd_ce.ours_over_passes``: APGD's time over that of its N + 1 forward/backward
  passes alone (the floor both implementations share);
* ``attacks.ensemble.{quick,standard}_s_per_img``: wall time per image of
  ``robust_accuracy`` (L2, ε = 0.01: nothing is fooled, so every attack runs on every
  image and the figure is the worst case) on ``bnn_core.mnist_cnn`` through
  ``PosteriorPredictive`` with M = 5 draws; ``quick`` = 20 APGD steps, 3 targets, 300
  Square queries; ``standard`` = AutoAttack's 100 steps, 9 targets, 5000 queries (full
  runs only).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from adv_attacks import APGD, PGD, AttackProblem, Norm, ObjectiveSpec, pgd, robust_accuracy
from benchlib.timing import interleaved_times, summarise
from perf_sections.base import Context, Figure, layout_speedups


def _mnist_cnn() -> nn.Module:
    """The paper's MNIST CNN (paper SM-6.1.1), deterministic, in plain torch."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 10),
    )


def _naive_pgd_l2(model, x, y, *, eps: float, steps: int, alpha: float) -> torch.Tensor:
    """PGD-L2 as commonly written in plain torch (parameters left in autograd)."""
    x_adv = x.clone().detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        grad_norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = x_adv.detach() + alpha * grad / grad_norm
        delta = x_adv - x
        factor = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
        x_adv = (x + delta * factor.view(-1, 1, 1, 1)).clamp(0.0, 1.0).detach()
    return x_adv


def _data(ctx: Context, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(batch, 1, 28, 28, generator=g).to(ctx.device)
    y = torch.randint(0, 10, (batch,), generator=g).to(ctx.device)
    return x, y


def _pgd_l2_variants(model, x, y, *, eps: float, steps: int) -> dict[str, Callable[[], object]]:
    """The PGD-L2 implementations compared, as zero-argument callables."""
    alpha = 2.5 * eps / steps
    batch = x.shape[0]
    one_pass = PGD(eps=eps, steps=steps, random_start=False, chunk_size=batch)
    fns = {
        "ours": lambda: pgd(model, x, y, eps=eps, steps=steps, random_start=False),
        "ours_one_pass": lambda: one_pass(model, x, y),
        "naive": lambda: _naive_pgd_l2(model, x, y, eps=eps, steps=steps, alpha=alpha),
    }
    try:
        import torchattacks
    except ImportError:
        return fns
    ta = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    fns["torchattacks"] = lambda: ta(x, y)
    return fns


def _throughput(ctx: Context, batch: int, steps: int, eps: float) -> list[Figure]:
    torch.manual_seed(ctx.seed)
    model = _mnist_cnn().to(ctx.device)
    x, y = _data(ctx, batch)
    # Same iterates before timing anything. PGD is discontinuous where a ReLU flips, so a
    # rounding-level difference (torchattacks divides by ‖g‖ + 1e-10 of a batch-mean loss)
    # can move an odd example far after a few steps: require 99% of the examples to agree.
    check = _pgd_l2_variants(model, x, y, eps=eps, steps=3)
    ref = check["ours"]()
    for name, fn in check.items():
        err = (fn() - ref).abs().flatten(1).amax(dim=1)
        if float((err > 1e-4).double().mean()) > 0.01:
            raise RuntimeError(f"{name} PGD-L2 disagrees with adv_attacks (max {err.max():.3g})")
    fns = _pgd_l2_variants(model, x, y, eps=eps, steps=steps)
    times = interleaved_times(
        fns, repeats=ctx.repeats, warmup=1, device=ctx.device, statistic=ctx.statistic
    )
    what = f"PGD-L2 {steps} steps, batch {batch}, MNIST CNN, {ctx.device.type}"
    figs = [
        Figure(f"attacks.pgd_l2.{k}_img_per_s", batch / t, "img/s", note=f"{k}: {what}")
        for k, t in times.items()
    ]
    figs.append(
        Figure(
            "attacks.pgd_l2.chunked_vs_one_pass",
            times["ours_one_pass"] / times["ours"],
            "x",
            note="default (CPU: cache-sized chunks) / one forward-backward over the batch",
        )
    )
    figs.append(
        Figure(
            "attacks.pgd_l2.ours_vs_naive",
            times["naive"] / times["ours"],
            "x",
            note="throughput ratio, ours / plain-torch loop",
        )
    )
    if "torchattacks" in times:
        figs.append(
            Figure(
                "attacks.pgd_l2.ours_vs_torchattacks",
                times["torchattacks"] / times["ours"],
                "x",
                goal=">= 1.1",
                note="throughput ratio, ours / torchattacks.PGDL2",
            )
        )
    else:
        figs.append(
            Figure(
                "attacks.pgd_l2.ours_vs_torchattacks",
                float("nan"),
                "x",
                note="skipped: torchattacks not installed",
            )
        )
    return figs


def _bayes_step(ctx: Context, batch: int, steps: int, eps: float) -> list[Figure]:
    try:
        from bnn_core import PosteriorPredictive, mnist_cnn
    except ImportError as exc:
        return [
            Figure(
                "attacks.pgd_step.bayes_m10_vs_det",
                float("nan"),
                "x",
                note=f"skipped: bnn_core.mnist_cnn/PosteriorPredictive unavailable ({exc})",
            )
        ]
    torch.manual_seed(ctx.seed)
    det = mnist_cnn(bayesian=False).to(ctx.device)
    bnn = mnist_cnn().to(ctx.device)
    x, y = _data(ctx, batch)
    g = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    ppd = {
        m: PosteriorPredictive(bnn, num_samples=10, method=m, generator=g) for m in ("vmap", "loop")
    }
    kw = dict(eps=eps, steps=steps, random_start=False)

    def det_attack() -> object:
        return pgd(det, x, y, **kw)

    timing = dict(repeats=ctx.repeats, warmup=1, device=ctx.device, statistic=ctx.statistic)
    cl_det = mnist_cnn(bayesian=False, memory_format="channels_last").to(ctx.device)
    cl_det.load_state_dict(det.state_dict())
    cl_bnn = mnist_cnn(memory_format="channels_last").to(ctx.device)
    cl_bnn.load_state_dict(bnn.state_dict())
    cl_ppd = PosteriorPredictive(cl_bnn, num_samples=10, method="loop", generator=g)
    layouts = interleaved_times(
        {
            "det": det_attack,
            "loop": lambda: pgd(ppd["loop"], x, y, **kw),
            "cl_det": lambda: pgd(cl_det, x, y, **kw),
            "cl_loop": lambda: pgd(cl_ppd, x, y, **kw),
        },
        **timing,
    )
    # Each path against the deterministic step in a round-robin of its own: the batched
    # path's M-fold activations left a heap that slowed whatever ran after it on the CPU.
    ratio: dict[str, float] = {}
    det_times: list[float] = []
    for path in ("loop", "vmap"):
        pair = interleaved_times(
            {"det": det_attack, path: lambda p=path: pgd(ppd[p], x, y, **kw)}, **timing
        )
        ratio[path] = pair[path] / pair["det"]
        det_times.append(pair["det"])
    what = f"one PGD step, batch {batch}, M = 10, {ctx.device.type}"
    best = min(ratio.values())
    return [
        Figure(
            "attacks.pgd_step.det_ms",
            1e3 * min(det_times) / steps,
            "ms",
            note=f"deterministic MNIST CNN: {what}",
        ),
        Figure(
            "attacks.pgd_step.bayes_m10_vmap_vs_det",
            ratio["vmap"],
            "x",
            note=f"PosteriorPredictive(method='vmap') step / deterministic step ({what})",
        ),
        Figure(
            "attacks.pgd_step.bayes_m10_loop_vs_det",
            ratio["loop"],
            "x",
            note=f"PosteriorPredictive(method='loop') step / deterministic step ({what})",
        ),
        Figure(
            "attacks.pgd_step.bayes_m10_vs_det",
            best,
            "x",
            goal="<= 10",
            note="faster of vmap/loop, Bayesian step / deterministic step",
        ),
        Figure(
            "attacks.pgd_step.bayes_m10_vmap_vs_loop",
            ratio["loop"] / ratio["vmap"],
            "x",
            note="speed-up of vmap over loop (> 1: vmap faster)",
        ),
        Figure(
            "attacks.pgd_step.channels_last.bayes_m10_loop_vs_det",
            layouts["cl_loop"] / layouts["cl_det"],
            "x",
            note=f"both networks built channels-last: loop step / deterministic step ({what})",
            extra={"ms": {k: round(v * 1e3, 3) for k, v in layouts.items()}},
        ),
        *layout_speedups(
            "attacks.pgd_step.channels_last", layouts, "bayes_speedup", "Bayesian loop step"
        ),
    ]


def _apgd_throughput(ctx: Context, batch: int, steps: int) -> list[Figure]:
    try:
        import torchattacks
    except ImportError:
        return [
            Figure(
                "attacks.apgd_ce.ours_vs_torchattacks",
                float("nan"),
                "x",
                note="skipped: torchattacks not installed",
            )
        ]
    torch.manual_seed(ctx.seed)
    model = _mnist_cnn().to(ctx.device)
    x, _ = _data(ctx, batch)
    with torch.no_grad():
        y = model(x).argmax(1)  # labels = clean predictions: every example is attacked
    eps = 8 / 255
    ours = APGD(eps=eps, norm="linf", steps=steps)
    theirs = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, seed=ctx.seed)
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    nll = ObjectiveSpec("nll")
    cpu: dict[str, list[float]] = {"ours": [], "torchattacks": []}
    faults: dict[str, list[int]] = {"ours": [], "torchattacks": []}

    def timed(key: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            f0, c0 = _minor_faults(), time.process_time()
            fn()
            cpu[key].append(time.process_time() - c0)
            faults[key].append(_minor_faults() - f0)

        return run

    # The floor: the N + 1 forward/backward passes APGD makes, through the same chunked
    # AttackProblem.gradient, and nothing else.
    problem = AttackProblem(model, x, y, eps=eps, norm=Norm.LINF, clamp=(0.0, 1.0), specs=[nll])

    def passes() -> None:
        with torch.enable_grad():
            for _ in range(steps + 1):
                problem.gradient(x, nll)

    cpu["passes"], faults["passes"] = [], []
    fns = {
        "ours": timed("ours", lambda: ours(model, x, y, generator=gen)),
        "torchattacks": timed("torchattacks", lambda: theirs(x, y)),
        "passes": timed("passes", passes),
    }
    # One thread for both: on a shared CPU two OpenMP threads per process oversubscribe the
    # cores and the wall time measures the contention (a 0.45x-1.4x spread), not the attack.
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        times = interleaved_times(
            fns, repeats=ctx.repeats, warmup=1, device=ctx.device, statistic=ctx.statistic
        )
    finally:
        torch.set_num_threads(threads)
    cpu_s = {k: summarise(v[1:], ctx.statistic) for k, v in cpu.items()}  # [0]: warm-up
    fault_med = {k: statistics.median(v[1:]) for k, v in faults.items()}
    what = f"APGD-CE L∞ {steps} steps, batch {batch}, MNIST CNN, {ctx.device.type}, 1 thread"
    return [
        *(
            Figure(f"attacks.apgd_ce.{k}_img_per_s", batch / times[k], "img/s", note=f"{k}: {what}")
            for k in ("ours", "torchattacks")
        ),
        Figure(
            "attacks.apgd_ce.ours_over_passes",
            times["ours"] / times["passes"],
            "x",
            note=(
                f"APGD's time over that of its {steps + 1} forward/backward passes alone "
                "(1 = no overhead beyond the model)"
            ),
            extra={"cpu": round(cpu_s["ours"] / cpu_s["passes"], 4)},
        ),
        Figure(
            "attacks.apgd_ce.ours_vs_torchattacks",
            times["torchattacks"] / times["ours"],
            "x",
            goal=">= 1.1",
            note="throughput ratio, ours / torchattacks.APGD (same steps, random starts)",
            extra={"minor_page_faults_per_call": fault_med},
        ),
        Figure(
            "attacks.apgd_ce.ours_vs_torchattacks_cpu",
            cpu_s["torchattacks"] / cpu_s["ours"],
            "x",
            note=(
                "process CPU time ratio, torchattacks.APGD / ours; both run the same N + 1 "
                "forward/backward passes (torchattacks one more forward), which bound the "
                "ratio: freed activations that glibc returns to the OS page-fault back in "
                "(extra: minor faults per call)"
            ),
            extra={"cpu_s": {k: round(v, 4) for k, v in cpu_s.items()}},
        ),
    ]


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


ENSEMBLE_SETTINGS = {
    "quick": {"steps": 20, "n_targets": 3, "n_queries": 300},
    "standard": {"steps": 100, "n_targets": 9, "n_queries": 5000},
}
"""The ``robust_accuracy`` budgets timed (``standard``: AutoAttack's)."""


def _ensemble_cost(ctx: Context, batch: int, profiles: list[str]) -> list[Figure]:
    try:
        from bnn_core import PosteriorPredictive, mnist_cnn
    except ImportError as exc:
        return [
            Figure(
                "attacks.ensemble.quick_s_per_img",
                float("nan"),
                "s",
                note=f"skipped: bnn_core unavailable ({exc})",
            )
        ]
    torch.manual_seed(ctx.seed)
    g = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    ppd = PosteriorPredictive(mnist_cnn().to(ctx.device), num_samples=5, generator=g)
    x, _ = _data(ctx, batch)
    with torch.no_grad():
        y = ppd(x).argmax(1)
    figures = []
    for name in profiles:
        settings = ENSEMBLE_SETTINGS[name]
        seconds = []
        for _ in range(max(1, min(ctx.repeats, 2))):
            res = robust_accuracy(ppd, x, y, 0.01, "l2", generator=g, progress=False, **settings)
            seconds.append(res.seconds)
        per_attack = {a.name: round(a.seconds / batch, 4) for a in res.attacks}
        figures.append(
            Figure(
                f"attacks.ensemble.{name}_s_per_img",
                min(seconds) / batch,
                "s",
                note=(
                    f"robust_accuracy standard ({settings}), BNN M = 5, batch {batch}, "
                    f"{ctx.device.type}; every attack on every image (robust acc "
                    f"{res.accuracy:.2f})"
                ),
                extra={"per_attack_s_per_img": per_attack, "settings": settings},
            )
        )
    return figures


def run(ctx: Context) -> list[Figure]:
    if ctx.quick:
        batch, steps = 32, 3
    else:
        batch, steps = 256, 50
    figures = _throughput(ctx, batch, steps, eps=1.0)
    figures += _bayes_step(ctx, batch, max(2, steps // 5), eps=1.0)
    figures += _apgd_throughput(ctx, batch, max(steps, 5))
    profiles = ["quick"] if ctx.quick else ["quick", "standard"]
    figures += _ensemble_cost(ctx, 16 if ctx.quick else 32, profiles)
    return figures
