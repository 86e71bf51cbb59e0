"""Robust variational inference: the proactive defence and its limits (paper, Section 3.1).

Train the posterior of a :mod:`bnn_core` model against any :mod:`adv_channels` channel.
Objectives are losses to minimise, normalised per data point, with pathwise gradients:
the surrogate ELBO (``K`` channel draws per point), the IWAE bound, the consistent
ratio-of-means gradient of the exact ELBO, generalised posteriors with TRADES or ALP
penalties, the robust Gibbs posterior, and point-estimate adversarial training (the MAP
limit). :class:`Trainer` fits them (Adam with exponential decay, KL annealing, GAN-style
adversary steps, validation, checkpoints and resume); :func:`recipe` builds the paper's
BL, OS, OS50, MIX, NN, NN50, AT, AT-PGD, TRADES and ALP models in one line.

Examples:
    >>> import torch
    >>> from bnn_core import mnist_cnn
    >>> from robust_vi import Trainer, recipe
    >>> x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    >>> trainer = Trainer(mnist_cnn(), recipe("MIX", eps=2.0), epochs=1, progress=False)
    >>> history = trainer.fit((x, y))
"""

from __future__ import annotations

from robust_vi.adversarial_training import AdversarialTraining, adversarial_training
from robust_vi.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from robust_vi.generalised import GeneralisedELBO, generalised_elbo
from robust_vi.gibbs import RobustGibbs, robust_gibbs
from robust_vi.iwae import IWAEBound, iwae_elbo
from robust_vi.likelihood import log_likelihood
from robust_vi.modes import training_mode
from robust_vi.objective import Objective, ObjectiveResult, repeat_batch
from robust_vi.overfitting import OverfittingMonitor, collapsed
from robust_vi.penalties import ALPPenalty, Penalty, TradesPenalty, alp_penalty, trades_penalty
from robust_vi.posterior_draw import PosteriorDraw
from robust_vi.ratio_of_means import RatioOfMeans, ratio_of_means
from robust_vi.recipes import DEFAULT_SIGMA, DEFAULT_WEIGHTS, Bound, Recipe, RecipeName, recipe
from robust_vi.surrogate import SurrogateELBO, surrogate_elbo
from robust_vi.trades_attack import START_NOISE, predictive_kl, trades_attack
from robust_vi.trainer import Callback, Trainer

__version__ = "0.1.0"

__all__ = [
    "CHECKPOINT_NAME",
    "DEFAULT_SIGMA",
    "DEFAULT_WEIGHTS",
    "START_NOISE",
    "ALPPenalty",
    "AdversarialTraining",
    "Bound",
    "Callback",
    "GeneralisedELBO",
    "IWAEBound",
    "Objective",
    "OverfittingMonitor",
    "ObjectiveResult",
    "Penalty",
    "PosteriorDraw",
    "RatioOfMeans",
    "Recipe",
    "RecipeName",
    "RobustGibbs",
    "SurrogateELBO",
    "TradesPenalty",
    "Trainer",
    "__version__",
    "adversarial_training",
    "alp_penalty",
    "collapsed",
    "generalised_elbo",
    "iwae_elbo",
    "load_checkpoint",
    "log_likelihood",
    "predictive_kl",
    "ratio_of_means",
    "recipe",
    "repeat_batch",
    "robust_gibbs",
    "save_checkpoint",
    "surrogate_elbo",
    "trades_attack",
    "trades_penalty",
    "training_mode",
]
