"""The closed-form KL divergence between the posterior and the prior of a whole model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnn_core._checks import check_module, model_device
from bnn_core.layers.base import variational_items
from bnn_core.priors import GaussianPrior

__all__ = ["kl_divergence"]


def kl_divergence(model: nn.Module) -> Tensor:
    """``KL(q ‖ p)`` summed over every Bayesian layer of ``model`` (paper, eq. 11), in nats.

    Mean-field posterior and factorised prior make the KL a sum of closed-form
    per-weight terms (see :meth:`bnn_core.GaussianPrior.kl`); deterministic layers
    (batch-norm, …) contribute nothing. A model without Bayesian layers gives ``0``.

    Args:
        model: Any module.

    Returns:
        A scalar tensor, differentiable in every ``μ`` and ``ρ``, on the model's device.

    Examples:
        >>> model = mnist_cnn()
        >>> loss = nll_term + kl_divergence(model) / dataset_size  # doctest: +SKIP
    """
    check_module(model)
    # Group the parameters of all layers that share a prior (and device and dtype), so that
    # the KL is one short chain of elementwise ops instead of one chain per tensor: on a
    # GPU the per-tensor version is launch-bound (bench/perf.py, one_draw_elbo_vs_det).
    groups: dict[tuple[GaussianPrior, torch.device, torch.dtype], tuple[list, list]] = {}
    for _, layer, mu, rho in variational_items(model):  # raises on tied parameters
        mus, rhos = groups.setdefault((layer.prior, mu.device, mu.dtype), ([], []))
        mus.append(mu.reshape(-1))
        rhos.append(rho.reshape(-1))
    if not groups:
        return torch.zeros((), device=model_device(model))
    total: Tensor | None = None
    for (prior, _, _), (mus, rhos) in groups.items():
        mu = mus[0] if len(mus) == 1 else torch.cat(mus)
        rho = rhos[0] if len(rhos) == 1 else torch.cat(rhos)
        kl = prior.kl(mu, rho).sum()
        total = kl if total is None else total + kl
    assert total is not None
    return total
