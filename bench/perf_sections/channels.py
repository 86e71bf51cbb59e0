"""adv-channels: cost of sampling a minibatch from the paper's channels.

Batch of 128 MNIST-sized images (``--quick``: 32) against the paper's deterministic MNIST CNN
(built here in plain torch), as ratios to one forward+backward training step of that CNN
(cross-entropy, gradients to the parameters), measured round-robin in the same run:

* ``channels.{os,mix,pgd10,nn}.sample_vs_fwdbwd``: one draw ``x' ~ p(x' | x, β)`` from OS
  (one-step nll + noise), MIX (0.4 identity + 0.2 each of one-step nll/cw/entropy,
  stratified), PGD (10 steps, random start) and NN (the learned convolutional generator);
* ``channels.nn.adversary_step_vs_fwdbwd``: one GAN-style update of the learned channel;
* ``channels.mix.sample_vs_os``: MIX's three sub-batch attacks against one batch attack;
* ``channels.amo.generator_{half,quarter}_vs_full``: the amortised generator's forward and
  backward pass with its refinement at half resolution (``stride=2``) and on the
  quarter-resolution space-to-depth grid (``stride=4``) against full resolution;
* ``channels.amo.{alternating,alternating_half,joint_half,joint_quarter}.train_step_vs_fwdbwd``:
  one training step against the amortised adversary (the generator's update, the sample,
  the model's forward and backward pass) with the alternating update (full and half
  resolution) and the joint one (half and quarter resolution);
* ``channels.amo.joint_{half,quarter}.train_step_vs_at_pgd5``: those joint steps against
  one step of AT-PGD's training with 5 PGD steps on half the batch (the channels study's
  reference);
* ``channels.fwdbwd_ms``: the reference step, in milliseconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adv_attacks import frozen_parameters
from adv_channels import (
    Channel,
    PGDChannel,
    amo_channel,
    mix_channel,
    nn_channel,
    os_channel,
    pgd_at50_channel,
)
from benchlib.timing import interleaved_times
from perf_sections.base import Context, Figure

EPS, SIGMA = 2.0, 0.2


def _mnist_cnn() -> nn.Module:
    """The paper's MNIST CNN (paper, SM-6.1.1), deterministic, in plain torch."""
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


def run(ctx: Context) -> list[Figure]:
    device = ctx.device
    batch = 32 if ctx.quick else 128
    repeats = 3 if ctx.quick else max(ctx.repeats, 7)
    gen = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(batch, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    torch.manual_seed(ctx.seed)
    model = _mnist_cnn().to(device)
    params = list(model.parameters())
    os_ch = os_channel(eps=EPS, sigma=SIGMA).to(device)
    mix = mix_channel(eps=EPS, sigma=SIGMA).to(device)
    pgd = PGDChannel(eps=EPS, sigma=SIGMA, steps=10).to(device)
    learned = nn_channel((1, 28, 28), eps=EPS, sigma_max=0.3, num_classes=10).to(device)
    amo = {
        name: amo_channel(
            (1, 28, 28), eps=EPS, sigma_max=SIGMA, num_classes=10, update=update, stride=stride
        ).to(device)
        for name, update, stride in [
            ("alternating", "alternating", 1),
            ("alternating_half", "alternating", 2),
            ("joint_half", "joint", 2),
            ("joint_quarter", "joint", 4),
        ]
    }
    at_pgd5 = pgd_at50_channel(eps=EPS, steps=5).to(device)
    g = torch.Generator(device=device).manual_seed(ctx.seed)

    def fwdbwd() -> None:
        for p in params:
            p.grad = None
        F.cross_entropy(model(x), y).backward()

    def sample_nn() -> None:
        with torch.no_grad():
            learned.sample(x, y, generator=g)

    def train_step(channel: Channel) -> None:
        """A trainer's step: the generator's update, the sample, the model's step."""
        joint = bool(channel.joint_parameters())
        if channel.learnable:
            channel.adversary_step(model, x, y, generator=g)
        for p in params:
            p.grad = None
        if joint:
            x_adv = channel.sample(x, y, model, generator=g)
        else:
            with frozen_parameters(channel):
                x_adv = channel.sample(x, y, model, generator=g)
        F.cross_entropy(model(x_adv), y).backward()
        channel.joint_adversary_step()

    def generator_pass(name: str) -> None:
        d, s = amo[name].network(x, y, g_unit)
        (d.sum() + s.sum()).backward()

    g_unit = torch.randn(x.shape, generator=gen).to(device)
    g_unit = g_unit / g_unit.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    fns = {
        "fwdbwd": fwdbwd,
        "os": lambda: os_ch.sample(x, y, model, generator=g),
        "mix": lambda: mix.sample(x, y, model, generator=g),
        "pgd10": lambda: pgd.sample(x, y, model, generator=g),
        "nn": sample_nn,
        "nn_step": lambda: learned.adversary_step(model, x, y, generator=g),
        "gen_full": lambda: generator_pass("alternating"),
        "gen_half": lambda: generator_pass("alternating_half"),
        "gen_quarter": lambda: generator_pass("joint_quarter"),
        **{f"amo_{k}": (lambda ch=ch: train_step(ch)) for k, ch in amo.items()},
        "at_pgd5": lambda: train_step(at_pgd5),
    }
    t = interleaved_times(fns, repeats=repeats, warmup=1, device=device, statistic=ctx.statistic)
    what = f"batch {batch}, MNIST CNN, {device.type}"
    ref = t["fwdbwd"]
    figs = [
        Figure("channels.fwdbwd_ms", 1e3 * ref, "ms", note=f"CNN forward+backward, {what}"),
        Figure(
            "channels.os.sample_vs_fwdbwd",
            t["os"] / ref,
            "x",
            note=f"OS sample (one-step nll + noise) / CNN fwd+bwd ({what})",
        ),
        Figure(
            "channels.mix.sample_vs_fwdbwd",
            t["mix"] / ref,
            "x",
            note=f"MIX sample (stratified 0.4/0.2/0.2/0.2) / CNN fwd+bwd ({what})",
        ),
        Figure(
            "channels.mix.sample_vs_os",
            t["mix"] / t["os"],
            "x",
            note="MIX (three sub-batch attacks on 60%) / OS (one attack on 100%)",
        ),
        Figure(
            "channels.pgd10.sample_vs_fwdbwd",
            t["pgd10"] / ref,
            "x",
            note=f"PGD channel, 10 steps, random start / CNN fwd+bwd ({what})",
        ),
        Figure(
            "channels.nn.sample_vs_fwdbwd",
            t["nn"] / ref,
            "x",
            note=f"learned conv channel sample (no grad) / CNN fwd+bwd ({what})",
        ),
        Figure(
            "channels.nn.adversary_step_vs_fwdbwd",
            t["nn_step"] / ref,
            "x",
            note=f"one GAN-style generator update against the CNN / CNN fwd+bwd ({what})",
        ),
        *[
            Figure(
                f"channels.amo.generator_{k}_vs_full",
                t[f"gen_{k}"] / t["gen_full"],
                "x",
                note=f"amortised generator fwd+bwd, stride {f} / stride 1 ({what})",
            )
            for k, f in (("half", 2), ("quarter", 4))
        ],
        *[
            Figure(
                f"channels.amo.{k}.train_step_vs_fwdbwd",
                t[f"amo_{k}"] / ref,
                "x",
                note=f"training step against AMO ({k.replace('_', ', ')}) / CNN fwd+bwd ({what})",
            )
            for k in amo
        ],
        *[
            Figure(
                f"channels.amo.{k}.train_step_vs_at_pgd5",
                t[f"amo_{k}"] / t["at_pgd5"],
                "x",
                note=f"training step against AMO ({k.replace('_', ', ')}) / AT-PGD's step "
                f"(5 PGD steps on half the batch) ({what})",
            )
            for k in ("joint_half", "joint_quarter")
        ],
    ]
    return figs
