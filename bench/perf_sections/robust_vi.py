"""robust-vi: cost of robust training per epoch on the paper's MNIST CNN (CPU by default).

One "epoch" is a fixed number of minibatches (10 of 128 random MNIST-shaped images;
``--quick``: 2 of 16) through :class:`robust_vi.Trainer` (objective, backward, Adam step,
bookkeeping), measured round-robin in one run:

* ``robust_vi.epoch.mix_vs_bl`` (goal <= 2; the paper reports 1.9x on an A100): MIX (0.4
  identity + 0.2 one-step nll/cw/entropy, each attack at the batch's posterior draw) over BL
  (clean ELBO), both on the Bayesian CNN;
* ``robust_vi.epoch.at_vs_bl``: AT (point estimate, deterministic CNN, ½ clean + ½
  one-step) over BL;
* ``robust_vi.epoch.nn50_vs_bl``: NN50 (½ clean + ½ learned generator, with its GAN step);
* ``robust_vi.epoch.bl_s``: seconds per BL epoch;
* ``robust_vi.step.bl_vs_plain``: one BL training step through robust_vi (the one-draw
  ``PosteriorPredictive`` path that also serves attack targets) over the same step written
  by hand (the model in ``"sample"`` mode, ``CE + KL/N``, Adam): the library's overhead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure

DATASET_SIZE = 60_000


def run(ctx: Context) -> list[Figure]:
    import bnn_core as bc
    from robust_vi import Trainer, recipe

    device = ctx.device
    batch, batches = (16, 2) if ctx.quick else (128, 10)
    repeats = 2 if ctx.quick else ctx.repeats
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(batch * batches, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch * batches,), generator=gen).to(device)

    torch.manual_seed(ctx.seed)
    setups = {
        "bl": (bc.mnist_cnn(init_sigma=1e-2), recipe("BL")),
        "mix": (bc.mnist_cnn(init_sigma=1e-2), recipe("MIX", eps=2.0, sigma=0.2)),
        "at": (bc.mnist_cnn(bayesian=False), recipe("AT", eps=2.0)),
        "nn50": (
            bc.mnist_cnn(init_sigma=1e-2),
            recipe("NN50", eps=2.0, sigma=0.2, input_shape=(1, 28, 28)),
        ),
    }
    trainers = {
        name: Trainer(
            model.to(device),
            r,
            dataset_size=DATASET_SIZE,
            epochs=1,
            batch_size=batch,
            shuffle=False,
            progress=False,
            seed=ctx.seed,
        )
        for name, (model, r) in setups.items()
    }

    def epoch(trainer: Trainer) -> Callable[[], None]:
        def run_epoch() -> None:
            trainer.epoch = 0  # run one more epoch on the same trainer each call
            trainer.fit((x, y))

        return run_epoch

    plain_model = bc.mnist_cnn(init_sigma=1e-2).to(device)
    plain_opt = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
    lib_trainer = trainers["bl"]
    xb, yb = x[:batch], y[:batch]

    def plain_step() -> None:
        loss = F.cross_entropy(plain_model(xb), yb) + bc.kl_divergence(plain_model) / DATASET_SIZE
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()

    def lib_step() -> None:
        loss = lib_trainer.objective(
            lib_trainer.model,
            lib_trainer.channel,
            xb,
            yb,
            dataset_size=DATASET_SIZE,
            generator=lib_trainer.generator,
        )
        lib_trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lib_trainer.optimizer.step()

    fns = {name: epoch(t) for name, t in trainers.items()}
    times = interleaved_times(
        fns, repeats=repeats, warmup=1, device=device, statistic=ctx.statistic
    )
    steps = interleaved_times(
        {"plain": plain_step, "lib": lib_step},
        repeats=5 * repeats,
        warmup=3,
        device=device,
        statistic=ctx.statistic,
    )
    base = times["bl"]
    extra = {
        "batch": batch,
        "batches_per_epoch": batches,
        "threads": torch.get_num_threads(),
        "epoch_s": {k: round(v, 4) for k, v in times.items()},
        "step_ms": {k: round(v * 1e3, 3) for k, v in steps.items()},
    }
    what = f"{batches} batches of {batch}, MNIST CNN, {device.type}"
    return [
        Figure(
            "robust_vi.epoch.mix_vs_bl",
            times["mix"] / base,
            "x",
            "" if ctx.quick else "<= 2",  # tiny quick batches measure fixed overheads only
            f"MIX / BL time per epoch ({what})",
            extra,
        ),
        Figure("robust_vi.epoch.at_vs_bl", times["at"] / base, "x", "", f"AT / BL ({what})"),
        Figure("robust_vi.epoch.nn50_vs_bl", times["nn50"] / base, "x", "", f"NN50 / BL ({what})"),
        Figure("robust_vi.epoch.bl_s", base, "s", "", f"BL seconds per epoch ({what})"),
        Figure(
            "robust_vi.step.bl_vs_plain",
            steps["lib"] / steps["plain"],
            "x",
            "",
            f"one BL step through robust_vi / written by hand (batch {batch})",
        ),
    ]
