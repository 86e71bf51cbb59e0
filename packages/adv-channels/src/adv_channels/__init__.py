"""Stochastic adversarial channels ``p(x' | x, β)``: distributions over attacks (docs/theory.md).

Channels for any ``torch.nn.Module`` (or any *predictive*, docs/architecture.md): identity
and Gaussian noise, one-step and PGD attacks followed by Gaussian noise, mixtures (stratified
per minibatch, as in the paper, or per example), and learned label-conditioned generators
(and the gradient-informed amortised adversary) trained GAN-style; the paper's OS, OS50,
MIX, NN, NN50 and AT channels (and AMO, AMO50) as constructors.
Depends on torch and adv-attacks only.

Examples:
    >>> import torch
    >>> from adv_channels import mix_channel
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    >>> x, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,))
    >>> channel = mix_channel(eps=2.0, sigma=0.2)  # 0.4 identity + 0.6 one-step attacks
    >>> x_adv = channel.sample(x, y, net, generator=torch.Generator().manual_seed(0))
    >>> x_adv.shape
    torch.Size([10, 1, 28, 28])
"""

from __future__ import annotations

from adv_channels.amortised import (
    AmortisedChannel,
    ConvAmortisedGenerator,
    DenseAmortisedGenerator,
    input_gradient,
)
from adv_channels.base import Channel, NoDensityError, Predictive
from adv_channels.budget import squash_to_ball
from adv_channels.enums import Task
from adv_channels.gaussian import GaussianFamilyChannel, diag_normal_log_prob, standard_normal
from adv_channels.generators import ConvGenerator, DenseGenerator, encode_labels
from adv_channels.learned import LearnedChannel
from adv_channels.mixture import MixtureChannel, stratified_counts
from adv_channels.named import (
    amo50_channel,
    amo_channel,
    at50_channel,
    at_channel,
    mix_channel,
    nn50_channel,
    nn_channel,
    os50_channel,
    os_channel,
    pgd_at50_channel,
    pgd_at_channel,
)
from adv_channels.noise import GaussianChannel, IdentityChannel
from adv_channels.one_step import OneStepChannel
from adv_channels.pgd import PGDChannel

__version__ = "0.1.0"

__all__ = [
    "AmortisedChannel",
    "ConvAmortisedGenerator",
    "DenseAmortisedGenerator",
    "input_gradient",
    "amo50_channel",
    "amo_channel",
    "Channel",
    "ConvGenerator",
    "DenseGenerator",
    "GaussianChannel",
    "GaussianFamilyChannel",
    "IdentityChannel",
    "LearnedChannel",
    "MixtureChannel",
    "NoDensityError",
    "OneStepChannel",
    "PGDChannel",
    "Predictive",
    "Task",
    "__version__",
    "at50_channel",
    "at_channel",
    "diag_normal_log_prob",
    "encode_labels",
    "mix_channel",
    "nn50_channel",
    "nn_channel",
    "os50_channel",
    "os_channel",
    "pgd_at50_channel",
    "pgd_at_channel",
    "squash_to_ball",
    "standard_normal",
    "stratified_counts",
]
