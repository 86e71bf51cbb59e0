"""Perf section of adv_reactive: the reactive defence against standard BNN inference.

On the paper's Bayesian MNIST CNN (``bnn_core.mnist_cnn()``) with random MNIST-shaped data
(N = 60,000 training inputs, M = 10 posterior draws, test batch B = 256; ``--quick``:
N = 4,096, M = 4, B = 64):

* :meth:`adv_reactive.ReactivePPD.fit`, once per channel (identity: N keys shared by the
  draws; one-step: M·N keys): wall time, and its peak memory beyond what existed before
  (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; on CUDA the
  allocator's peak), against the size of the stored state;
* reactive inference (online and offline, both channels, and the one-step channel with
  its keys stored as inputs plus bfloat16 offsets, ``offset_dtype=torch.bfloat16``, with the
  largest differences that makes to the outputs; no gradients) time per test input
  relative to standard BNN inference with the same M (``PosteriorPredictive`` forward),
  measured round-robin in the same run (goals: identity <= 3x, one-step <= 20x; the paper
  reports > 1000x), and an adaptive attack's gradient step through the defence relative to
  one through the undefended PPD;
* the fraction of the device's measured fp32 matmul throughput, a plain ``(B×D)·(D×N)``
  product timed in the same run, that the log-weight computation reaches (the aggregation
  with shared keys and cached norms, counting its ``2·B·N·D`` matmul flops), with ``cdist``
  for reference;
* on CUDA, the fused Triton kernel through ``triton.testing.do_bench``: time, TFLOP/s,
  speedup over the PyTorch path, and the op's peak memory beyond its inputs;
* the likelihood-free defence (``abc_pgd``: ``ReactivePPD(..., abc=ABC(simulations=S))``
  with a PGD channel of ``T`` steps as the simulator; ``--quick``: S = 2, T = 5, else
  S = 2, T = 10): fit time and inference time against the one-step defence in the same run
  (ratios), and the bandwidth its rule chose;
* ABC against the amortised denoiser (:class:`adv_reactive.DenoisingPPD`) on a small
  synthetic problem (4 Gaussian classes in 16 dimensions, a Bayesian MLP trained by VI,
  test inputs attacked by the PGD channel under a posterior draw): accuracy and costs of
  the undefended PPD, the one-step defence, ABC (Gaussian kernel, online and offline; 10
  nearest simulations) and the denoiser.

The full run fits the defence on 60,000 inputs twice (minutes on a small CPU: the values
need M·N forward passes of the CNN, the one-step keys M·N gradients).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from adv_reactive import ABC, DenoisingPPD, ReactivePPD, reactive_aggregate
from adv_reactive._triton import TRITON_AVAILABLE
from benchlib.allocator import release_freed_memory
from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure

_PREFIX = "reactive"
SIGMA = 2.0
EPS = 1.0
GOALS = {"identity": "<= 3", "one_step": "<= 20", "one_step_bf16": "<= 20"}
PGD_SIGMA = 0.1
EPS_SMALL = 1.5
"""The attack budget (L2) of the small ABC-against-denoiser problem."""
"""Noise of the PGD channel simulated by the ABC defence (input units)."""


def _abc_settings(ctx: Context) -> dict[str, int]:
    """Simulations per (draw, input) pair and PGD steps of the simulator."""
    return {"S": 2, "T": 5} if ctx.quick else {"S": 2, "T": 10}


def _sizes(ctx: Context) -> dict[str, int]:
    if ctx.quick:
        return {"B": 64, "D": 784, "N": 4096, "M": 4, "C": 10}
    return {"B": 256, "D": 784, "N": 60_000, "M": 10, "C": 10}


def _data(ctx: Context, s: dict[str, int]) -> dict[str, torch.Tensor]:
    """Random MNIST-shaped training inputs and labels, and test inputs near training inputs."""
    gen = torch.Generator().manual_seed(ctx.seed)
    x_train = torch.rand(s["N"], 1, 28, 28, generator=gen)
    y_train = torch.randint(0, s["C"], (s["N"],), generator=gen)
    pick = torch.randint(0, s["N"], (s["B"],), generator=gen)
    noise = 0.3 * torch.randn(s["B"], 1, 28, 28, generator=gen)
    x_test = (x_train[pick] + noise).clamp(0.0, 1.0)
    return {k: v.to(ctx.device) for k, v in (("x", x_train), ("y", y_train), ("x_test", x_test))}


class _PeakMemory:
    """Peak memory growth of a block: CUDA allocator peak, or Linux ``VmHWM`` (else None)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.growth_gb: float | None = None

    @staticmethod
    def _hwm_kb() -> int:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+)", status)
        assert match is not None
        return int(match.group(1))

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        release_freed_memory()  # memory kept by malloc would hide the growth
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
            self._base = self._hwm_kb()
        except OSError:
            self._base = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
            self.growth_gb = peak / 2**30
        elif self._base is not None:
            self.growth_gb = (self._hwm_kb() - self._base) / 2**20


def _fit(ctx: Context, s: dict[str, int], model, d) -> tuple[dict[str, ReactivePPD], list[Figure]]:
    from adv_channels import GaussianChannel, OneStepChannel, PGDChannel

    a = _abc_settings(ctx)
    pgd_channel = PGDChannel(eps=EPS, sigma=PGD_SIGMA, steps=a["T"])
    channels = {
        "identity": (GaussianChannel(SIGMA), None, None),
        "one_step": (OneStepChannel(eps=EPS, sigma=SIGMA), None, None),
        "one_step_bf16": (OneStepChannel(eps=EPS, sigma=SIGMA), torch.bfloat16, None),
        "abc_pgd": (pgd_channel, None, ABC(simulations=a["S"])),
    }
    fitted: dict[str, ReactivePPD] = {}
    fit_seconds: dict[str, float] = {}
    figs: list[Figure] = []
    for name, (channel, offset_dtype, abc) in channels.items():
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        rppd = ReactivePPD(
            model, channel, num_samples=s["M"], generator=gen, offset_dtype=offset_dtype, abc=abc
        )
        with _PeakMemory(ctx.device) as peak:
            t0 = time.perf_counter()
            rppd.fit(d["x"], d["y"], progress=False)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            seconds = time.perf_counter() - t0
        fitted[name] = rppd
        fit_seconds[name] = seconds
        state = [rppd.keys, rppd.key_sq_norms, rppd.values]
        if not rppd.shared_keys:
            state.append(rppd.inputs)
        state_gb = sum(t.numel() * t.element_size() for t in state) / 2**30
        what = f"N={s['N']}, M={s['M']}, MNIST CNN on {ctx.device}"
        figs += [
            Figure(f"{_PREFIX}.{name}.fit.s", seconds, "s", note=f"ReactivePPD.fit, {what}"),
            Figure(
                f"{_PREFIX}.{name}.fit.ms_per_input",
                1e3 * seconds / s["N"],
                "ms",
                note=f"fit time per training input ({s['M']} draws each)",
            ),
            Figure(
                f"{_PREFIX}.{name}.state_gb",
                state_gb,
                "GB",
                note="stored keys, norms, values (and training inputs for per-draw keys)",
            ),
        ]
        if peak.growth_gb is not None:
            goal = "<= 8" if s["N"] >= 60_000 else ""
            figs.append(
                Figure(
                    f"{_PREFIX}.{name}.fit.peak_gb",
                    peak.growth_gb,
                    "GB",
                    goal=goal,
                    note=f"peak memory of fit beyond what existed before ({what})",
                )
            )
    figs += [
        Figure(
            f"{_PREFIX}.abc_pgd.fit_vs_one_step",
            fit_seconds["abc_pgd"] / fit_seconds["one_step"],
            "x",
            note=f"ABC fit (PGD simulator, T={a['T']} steps, S={a['S']} simulations per pair) "
            "vs the one-step defence's fit, same N and M",
        ),
        Figure(
            f"{_PREFIX}.abc_pgd.bandwidth",
            float(fitted["abc_pgd"].sigma or 0.0),
            "",
            note="h chosen by the nearest-neighbour rule (median distance between a simulation "
            "and its nearest other simulation)",
        ),
    ]
    return fitted, figs


def run(ctx: Context) -> list[Figure]:
    import bnn_core

    s = _sizes(ctx)
    d = _data(ctx, s)
    size = f"B={s['B']}, D={s['D']}, N={s['N']}, M={s['M']}"
    torch.manual_seed(ctx.seed)
    model = bnn_core.mnist_cnn(init_sigma=0.05).to(ctx.device)
    fitted, figs = _fit(ctx, s, model, d)
    identity, one_step = fitted["identity"], fitted["one_step"]
    one_step_bf16 = fitted["one_step_bf16"]
    abc_pgd = fitted["abc_pgd"]
    a = _abc_settings(ctx)

    x_test = d["x_test"]
    q = x_test.flatten(1)
    keys, norms = identity.keys, identity.key_sq_norms
    mean_values = identity.values.mean(0)
    ppd = bnn_core.PosteriorPredictive(model, s["M"])
    backend = "torch"  # the CPU path; the kernel is timed in _cuda_figures

    def infer(predictive: Callable, mode: str | None = None) -> Callable[[], object]:
        def call() -> object:
            if mode is not None:
                predictive.mode = mode
            with torch.no_grad():
                return predictive(x_test)

        return call

    def attack_step(predictive: Callable) -> Callable[[], object]:
        def call() -> object:  # one gradient of the PPD's NLL w.r.t. the inputs
            x = x_test.clone().requires_grad_(True)
            log_probs = predictive(x)
            return torch.autograd.grad(-log_probs[:, 0].sum(), x)

        return call

    fns: dict[str, Callable[[], object]] = {
        "standard": infer(ppd),
        "identity.online": infer(identity, "online"),
        "identity.offline": infer(identity, "offline"),
        "one_step.online": infer(one_step, "online"),
        "one_step.offline": infer(one_step, "offline"),
        "one_step_bf16.online": infer(one_step_bf16, "online"),
        "one_step_bf16.offline": infer(one_step_bf16, "offline"),
        "abc_pgd.online": infer(abc_pgd, "online"),
        "abc_pgd.offline": infer(abc_pgd, "offline"),
        "standard.grad": attack_step(ppd),
        "identity.grad": attack_step(identity),
        "matmul": lambda: q @ keys.T,
        "cdist": lambda: torch.cdist(q, keys),
        "logweights": lambda: reactive_aggregate(
            q, keys, mean_values, sigma=SIGMA, key_sq_norms=norms, backend=backend
        ),
    }
    identity.mode = one_step.mode = one_step_bf16.mode = abc_pgd.mode = "online"
    t = interleaved_times(fns, repeats=ctx.repeats, device=ctx.device, statistic=ctx.statistic)

    for name in ("identity", "one_step", "one_step_bf16", "abc_pgd"):
        keys_n = s["N"] if name == "identity" else s["M"] * s["N"]
        keys_n *= a["S"] if name == "abc_pgd" else 1
        keys_what = f"{keys_n} keys" + (", bfloat16 offsets" if name.endswith("bf16") else "")
        for mode in ("online", "offline"):
            key = f"{name}.{mode}"
            figs += [
                Figure(
                    f"{_PREFIX}.{name}.{mode}_vs_standard",
                    t[key] / t["standard"],
                    "x",
                    goal=GOALS.get(name, ""),
                    note=f"reactive inference ({mode}, {keys_what}) per test input vs "
                    f"standard BNN inference (PosteriorPredictive, M={s['M']}), {size}",
                ),
                Figure(
                    f"{_PREFIX}.{name}.{mode}.ms_per_input",
                    1e3 * t[key] / s["B"],
                    "ms",
                    note=f"ReactivePPD forward, {name} channel, {mode}, no grad, {size}",
                ),
            ]
    figs += [
        Figure(
            f"{_PREFIX}.abc_pgd.{mode}_vs_one_step",
            t[f"abc_pgd.{mode}"] / t[f"one_step.{mode}"],
            "x",
            note=f"ABC inference ({mode}, {s['M'] * a['S'] * s['N']} simulation keys) vs the "
            f"one-step defence ({s['M'] * s['N']} keys), same round-robin",
        )
        for mode in ("online", "offline")
    ]
    figs += [
        Figure(
            f"{_PREFIX}.standard.ms_per_input",
            1e3 * t["standard"] / s["B"],
            "ms",
            note=f"standard BNN inference, MNIST CNN, M={s['M']}, batch {s['B']}, no grad",
        ),
        Figure(
            f"{_PREFIX}.identity.grad_vs_standard_grad",
            t["identity.grad"] / t["standard.grad"],
            "x",
            note="one attack gradient through the defence (identity, online) vs through the "
            "undefended PPD",
        ),
    ]
    flops = 2 * s["B"] * s["N"] * s["D"]
    figs += [
        Figure(
            f"{_PREFIX}.matmul.gflops",
            flops / t["matmul"] / 1e9,
            "GFLOP/s",
            note=f"fp32 (B×D)·(D×N) matmul on {ctx.device}, {size}",
        ),
        Figure(
            f"{_PREFIX}.logweights.matmul_fraction",
            100 * t["matmul"] / t["logweights"],
            "%",
            goal=">= 70",
            note="streaming log-sum-exp aggregation (torch path, cached key norms, shared keys) "
            "vs the plain matmul, counting 2·B·N·D flops",
        ),
        Figure(
            f"{_PREFIX}.cdist.matmul_fraction",
            100 * t["matmul"] / t["cdist"],
            "%",
            note="torch.cdist(queries, keys) vs the plain matmul (reference)",
        ),
        *_offset_error_figures(one_step, one_step_bf16, x_test),
        Figure(
            f"{_PREFIX}.one_step.relative_to_identity",
            t["one_step.online"] / t["identity.online"],
            "x",
            note=f"per-draw keys (M·N) vs shared keys (N), online; M = {s['M']}",
        ),
    ]
    if ctx.device.type == "cuda" and TRITON_AVAILABLE:
        cuda_data = {
            "queries": q,
            "keys": keys,
            "key_norms": norms,
            "mean_values": mean_values,
            "per_draw": one_step.keys,
            "per_draw_norms": one_step.key_sq_norms,
            "values": one_step.values,
        }
        figs.extend(_cuda_figures(ctx, s, cuda_data, SIGMA))
    figs.extend(_abc_vs_denoiser(ctx))
    return figs


def _abc_vs_denoiser(ctx: Context) -> list[Figure]:
    """Accuracy and cost of ABC against the amortised denoiser on a small synthetic problem.

    4 classes, inputs ``x = 1.5 e_c + 0.15 ξ`` in 16 dimensions (N = 512 training, 256 test
    inputs), a Bayesian MLP (16-32-4) trained by VI; the test inputs are attacked by the PGD
    channel (L2, ``ε = 1.5``, 10 steps, ``σ = 0.05``, unbounded inputs) under one posterior
    draw, the simulator's own law (the attack the defences were fitted for).
    """
    import torch.nn.functional as F
    from torch import nn

    import bnn_core
    from adv_channels import OneStepChannel, PGDChannel
    from adv_reactive import DrawPredictive

    dev = ctx.device
    gen = torch.Generator().manual_seed(ctx.seed)
    dim, classes, n_train, n_test, m_draws = 16, 4, 512, 256, 4

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=gen)
        x = 1.5 * F.one_hot(y, dim).float() + 0.15 * torch.randn(n, dim, generator=gen)
        return x.to(dev), y.to(dev)

    x_train, y_train = data(n_train)
    x_test, y_test = data(n_test)
    torch.manual_seed(ctx.seed)
    model = nn.Sequential(
        bnn_core.BayesLinear(dim, 32, init_sigma=0.05),
        nn.ReLU(),
        bnn_core.BayesLinear(32, classes, init_sigma=0.05),
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        logits = bnn_core.forward_samples(model, x_train, 2)
        loss = F.cross_entropy(logits.flatten(0, 1), y_train.repeat(2))
        loss = loss + bnn_core.kl_divergence(model) / n_train
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.requires_grad_(False)

    channel = PGDChannel(eps=EPS_SMALL, sigma=0.05, steps=10, clamp=None)
    draws = bnn_core.sample_weights(model, 1, torch.Generator(device=dev).manual_seed(99))
    x_adv = channel.sample(
        x_test, y_test, DrawPredictive(model, draws, 0), generator=torch.Generator(dev)
    )

    def timed(fn: Callable[[], object]) -> tuple[object, float]:
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out, time.perf_counter() - t0

    def seeded() -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(ctx.seed)

    defences: dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]] = {
        "undefended": lambda: bnn_core.PosteriorPredictive(model, m_draws),
        "one_step": lambda: ReactivePPD(
            model,
            OneStepChannel(eps=EPS_SMALL, sigma=0.3, clamp=None),
            num_samples=m_draws,
            generator=seeded(),
        ).fit(x_train, y_train),
        "abc_online": lambda: ReactivePPD(
            model, channel, num_samples=m_draws, generator=seeded(), abc=ABC(simulations=4)
        ).fit(x_train, y_train),
        "abc_offline": lambda: ReactivePPD(
            model,
            channel,
            mode="offline",
            num_samples=m_draws,
            generator=seeded(),
            abc=ABC(simulations=4),
        ).fit(x_train, y_train),
        "abc_knn": lambda: ReactivePPD(
            model,
            channel,
            num_samples=m_draws,
            generator=seeded(),
            abc=ABC(simulations=4, kernel="nearest", k=10),
        ).fit(x_train, y_train),
        "denoiser": lambda: DenoisingPPD(
            model, channel, num_samples=m_draws, epochs=20, hidden=64, generator=seeded()
        ).fit(x_train, y_train),
    }
    figs: list[Figure] = []
    what = f"4 Gaussian classes, D={dim}, N={n_train}, M={m_draws}, {n_test} PGD test inputs"
    for name, build in defences.items():
        predictor, fit_s = timed(build)
        with torch.no_grad():
            log_probs, predict_s = timed(lambda p=predictor: p(x_adv))
            clean = predictor(x_test)
        acc = float((log_probs.argmax(1) == y_test).float().mean())
        clean_acc = float((clean.argmax(1) == y_test).float().mean())
        figs += [
            Figure(f"{_PREFIX}.small.{name}.pgd_accuracy", acc, "", note=f"{name}, {what}"),
            Figure(f"{_PREFIX}.small.{name}.clean_accuracy", clean_acc, "", note=f"{name}, clean"),
            Figure(f"{_PREFIX}.small.{name}.fit_s", fit_s, "s", note=f"{name}: fit time"),
            Figure(
                f"{_PREFIX}.small.{name}.predict_ms_per_input",
                1e3 * predict_s / n_test,
                "ms",
                note=f"{name}: prediction time per test input (batch {n_test}, no grad)",
            ),
        ]
    return figs


def _offset_error_figures(
    exact: ReactivePPD, split: ReactivePPD, x_test: torch.Tensor
) -> list[Figure]:
    """How far bfloat16 offsets move the one-step defence's outputs (same draws and keys)."""
    figs = []
    for mode in ("online", "offline"):
        exact.mode = split.mode = mode
        with torch.no_grad():
            a, b = exact.predict(x_test), split.predict(x_test)
        assert a.probs is not None and b.probs is not None
        figs += [
            Figure(
                f"{_PREFIX}.one_step_bf16.{mode}.max_log_normalizer_error",
                float((a.log_normalizer - b.log_normalizer).abs().max()),
                "nats",
                note="largest |log Σ_i k_mi| difference, bfloat16 offsets vs float32 keys",
            ),
            Figure(
                f"{_PREFIX}.one_step_bf16.{mode}.max_prob_error",
                float((a.probs - b.probs).abs().max()),
                "",
                note="largest reactive-PPD probability difference, bfloat16 offsets vs float32",
            ),
        ]
    exact.mode = split.mode = "online"
    return figs


def _cuda_figures(
    ctx: Context, s: dict[str, int], d: dict[str, torch.Tensor], sigma: float
) -> list[Figure]:
    from triton.testing import do_bench

    q = d["queries"]
    figs: list[Figure] = []
    cases = {
        "shared": (d["keys"], d["key_norms"], d["mean_values"], s["N"]),
        "per_draw": (d["per_draw"], d["per_draw_norms"], d["values"], s["M"] * s["N"]),
    }
    matmul_ms = do_bench(lambda: q @ d["keys"].T)
    flops = 2 * s["B"] * s["N"] * s["D"]
    figs.append(
        Figure(
            f"{_PREFIX}.cuda.matmul.tflops",
            flops / matmul_ms / 1e9,
            "TFLOP/s",
            note="fp32 (B×D)·(D×N) matmul (torch defaults, no TF32)",
        )
    )
    for name, (keys, norms, values, num_keys) in cases.items():
        ms = {}
        for backend in ("triton", "torch"):

            def call(
                backend: str = backend,
                keys: torch.Tensor = keys,
                norms: torch.Tensor = norms,
                values: torch.Tensor = values,
            ) -> object:
                return reactive_aggregate(
                    q, keys, values, sigma=sigma, key_sq_norms=norms, backend=backend
                )

            call()  # autotune / warm up
            ms[backend] = do_bench(call)
        kflops = 2 * s["B"] * num_keys * s["D"]
        figs += [
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.ms",
                ms["triton"],
                "ms",
                note=f"fused kernel, online, {num_keys} keys, B={s['B']}",
            ),
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.tflops",
                kflops / ms["triton"] / 1e9,
                "TFLOP/s",
                note="kernel throughput counting 2·B·keys·D flops",
            ),
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.speedup_vs_torch",
                ms["torch"] / ms["triton"],
                "x",
                note="PyTorch path time / kernel time, same call",
            ),
        ]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        reactive_aggregate(q, keys, values, sigma=sigma, key_sq_norms=norms, backend="triton")
        torch.cuda.synchronize()
        figs.append(
            Figure(
                f"{_PREFIX}.cuda.triton.{name}.peak_extra_mb",
                (torch.cuda.max_memory_allocated() - base) / 2**20,
                "MB",
                note="peak memory of the op beyond its inputs",
            )
        )
    return figs
