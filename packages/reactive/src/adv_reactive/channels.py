"""Which adversarial channels the reactive defence can use, their ``σ``, and their config.

The reactive PPD (paper, eqs. 4 and 5) weights the training inputs by the channel density
``k_mi(x') = p(x' | x_i, β_m)``, so the channel must have one: an isotropic Gaussian
``N(x'; μ(x_i, β_m), σ² I)`` with a fixed ``σ > 0`` (an
:class:`adv_channels.GaussianFamilyChannel` with a scalar ``sigma``):

* :class:`~adv_channels.GaussianChannel` / :class:`~adv_channels.IdentityChannel`
  (``σ₀ > 0``): ``μ_mi = x_i``, shared by every draw (``needs_target`` is False);
* :class:`~adv_channels.OneStepChannel`: ``μ_mi = x_i + ε g_mi / ‖g_mi‖``, one key
  per draw (``needs_target`` is True).

Channels known only as simulators (PGD) or point masses (``σ = 0``) have no density, and
mixtures and learned channels (per-element ``σ``) are not isotropic: for all of them the
reactive defence uses likelihood-free (ABC) weights instead (:class:`adv_reactive.ABC`).
"""

from __future__ import annotations

import math
from typing import Any

from adv_channels import (
    Channel,
    GaussianChannel,
    GaussianFamilyChannel,
    IdentityChannel,
    OneStepChannel,
)

__all__ = ["channel_config", "channel_from_config", "channel_sigma"]


def channel_sigma(channel: object) -> float:
    """The noise scale ``σ > 0`` of a channel the reactive defence supports.

    Args:
        channel: An :class:`adv_channels.Channel`.

    Returns:
        ``σ`` as a float.

    Raises:
        TypeError: If ``channel`` is not a :class:`~adv_channels.Channel`.
        ValueError: If the channel has no density (a simulator such as PGD, or ``σ <= 0``),
            or is not an isotropic Gaussian with a fixed scalar ``σ``.

    Examples:
        >>> from adv_channels import GaussianChannel
        >>> channel_sigma(GaussianChannel(sigma=0.5))
        0.5
    """
    if not isinstance(channel, Channel):
        raise TypeError(
            f"channel must be an adv_channels Channel (e.g. GaussianChannel(sigma) or "
            f"OneStepChannel(eps=..., sigma=...)); got {type(channel).__name__}"
        )
    name = type(channel).__name__
    sigma = getattr(channel, "sigma", None)
    scalar = isinstance(sigma, int | float) and not isinstance(sigma, bool)
    gaussian = isinstance(channel, GaussianFamilyChannel)
    if gaussian and scalar and not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(
            f"channel {name} has sigma = {sigma}: the reactive defence weights training inputs "
            "by the channel density N(x'; mu, sigma^2 I), which needs sigma > 0 (sigma = 0 is a "
            "point mass, without density)"
        )
    if not channel.has_density:
        raise ValueError(
            f"channel {name} has no density (has_density is False: it is known only as a "
            "simulator): the reactive defence weights training inputs by p(x' | x_i, beta_m), "
            "which for such a channel needs likelihood-free inference: pass abc=ABC(...) "
            "(adv_reactive.ABC) to simulate it, or use a Gaussian channel: GaussianChannel / "
            "IdentityChannel (sigma > 0) or OneStepChannel (sigma > 0)"
        )
    if not (gaussian and scalar):
        raise ValueError(
            f"channel {name} is not supported: the reactive defence needs an isotropic Gaussian "
            "channel N(x'; mu(x, beta), sigma^2 I) with a fixed scalar sigma (GaussianChannel, "
            "IdentityChannel, OneStepChannel); for any other channel pass abc=ABC(...)"
        )
    return float(sigma)


def channel_config(channel: Channel) -> dict[str, Any] | None:
    """A plain-data description that rebuilds ``channel`` (``None`` for unknown classes).

    Holds only ``str``, numbers, tuples and ``None``, so it can be saved in a file that
    ``torch.load(weights_only=True)`` reads.

    Examples:
        >>> from adv_channels import IdentityChannel
        >>> channel_config(IdentityChannel(0.1))
        {'class': 'IdentityChannel', 'kwargs': {'sigma0': 0.1}}
    """
    kind = type(channel)
    if kind is IdentityChannel:
        return {"class": "IdentityChannel", "kwargs": {"sigma0": channel.sigma}}
    if kind is GaussianChannel:
        return {"class": "GaussianChannel", "kwargs": {"sigma": channel.sigma}}
    if kind is OneStepChannel:
        attack = channel.attack
        spec = attack.spec
        kwargs = {
            "eps": channel.eps,
            "sigma": channel.sigma,
            "objective": str(channel.objective.value),
            "norm": str(attack.norm.value),
            "clamp": None if attack.clamp is None else tuple(attack.clamp),
            "kappa": float(spec.kappa),
            "entropy_sign": int(spec.entropy_sign),
            "differentiable": bool(channel.differentiable),
            "eot": bool(attack.eot),
            "chunk_size": attack.chunk_size,
        }
        return {"class": "OneStepChannel", "kwargs": kwargs}
    return None


def channel_from_config(config: object) -> Channel:
    """Rebuild a channel from :func:`channel_config`'s description.

    Raises:
        ValueError: If the description is malformed or names an unknown class.
    """
    known: dict[str, type[Channel]] = {
        "IdentityChannel": IdentityChannel,
        "GaussianChannel": GaussianChannel,
        "OneStepChannel": OneStepChannel,
    }
    if not isinstance(config, dict) or not isinstance(config.get("kwargs"), dict):
        raise ValueError(f"malformed channel configuration: {config!r}")
    cls = known.get(config.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(
            f"cannot rebuild a channel of class {config.get('class')!r}; known: "
            f"{', '.join(known)}. Pass channel= explicitly"
        )
    return cls(**config["kwargs"])
