"""The reactive defence as a fit/predict object (eqs. 4 and 5 of the paper, Section 3.2).

At test time the clean input behind ``x'`` is latent: with the empirical distribution of the
training inputs and posterior draws ``β_1..β_M``, the reactive PPD weights the per-draw
predictions ``P_mi = p(y | x_i, β_m)`` by the channel density
``k_mi(x') = N(x'; μ_mi, σ² I)``. :meth:`ReactivePPD.fit` computes once what does not depend
on ``x'`` (the draws, the keys ``μ_mi`` and their squared norms, the values ``P_mi``);
calling the object is then one streaming aggregation over the keys
(:func:`adv_reactive.reactive_aggregate`), with no forward pass of the model at all.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from adv_reactive.abc import (
    ABC,
    ABCKernel,
    check_simulator,
    nearest_neighbour_bandwidth,
    nearest_simulations,
    simulate,
)
from adv_reactive.channels import channel_config, channel_from_config, channel_sigma
from adv_reactive.draw_predictive import DrawPredictive
from adv_reactive.gaussian_mixture import (
    mixture_moments,
    moment_values,
    reactive_gaussian_log_prob,
)
from adv_reactive.offset_keys import OffsetKeys
from adv_reactive.ops import reactive_aggregate, squared_norms
from adv_reactive.options import AggregationMode, Backend, coerce_option
from adv_reactive.prediction import PurifiedInputs, ReactivePrediction
from adv_reactive.smoothing import eval_mode
from bnn_core import GaussianLikelihood, SamplingMethod, Task, forward_samples, sample_weights

__all__ = ["ReactivePPD"]

_FORMAT = "adv_reactive.ReactivePPD"
_FORMAT_VERSION = 2
_READS_VERSIONS = (1, 2)
_PROGRESS_FROM = 10_000
"""With ``progress=None``, ``fit`` shows a bar (on a terminal) from this many inputs."""
_CPU_BATCH = 1024
_CUDA_BATCH = 8192


class ReactivePPD(nn.Module):
    """Online (eq. 4) or offline (eq. 5) reactive posterior predictive of a Bayesian model.

    Paper, Section 3.2. With posterior draws ``β_m``, training inputs ``x_i``, keys ``μ_mi`` (the
    mean of the Gaussian channel at ``x_i`` under ``β_m``) and ``k_mi = N(x'; μ_mi, σ² I)``:

    * online: ``p(y | x') = Σ_{m,i} k_mi P_mi / Σ_{m,i} k_mi`` (each draw reweighted by its
      marginal channel likelihood: a Bayesian update at test time);
    * offline: ``p(y | x') = (1/M) Σ_m Σ_i k_mi P_mi / Σ_j k_mj``.

    The channel decides the keys: :class:`~adv_channels.GaussianChannel` /
    :class:`~adv_channels.IdentityChannel` (``σ₀ > 0``) give ``μ_mi = x_i``, shared by
    every draw (``N`` keys; online and offline then coincide);
    :class:`~adv_channels.OneStepChannel` gives ``μ_mi = x_i + ε g_mi / ‖g_mi‖``, a
    one-step attack of ``x_i`` under draw ``m`` alone (``M·N`` keys). ``σ`` is the channel's
    noise scale. Channels without a density (PGD, point masses, mixtures and learned
    channels) need likelihood-free weights: pass ``abc=ABC(...)`` (below).

    The object implements the *predictive protocol* (docs/architecture.md): calling it on
    ``x'`` returns ``(B, C)`` log-probabilities of the reactive PPD (classification) or the
    Gaussian ``(mean, var)`` moments of the mixture PPD (regression), differentiable with
    respect to ``x'``, so that attacks from :mod:`adv_attacks` target the *defended*
    predictor (adaptive white-box attacks). It has no ``resample``: the draws are fixed at
    :meth:`fit` (``eot=True`` attacks are refused by the attack).

    Args:
        model: The Bayesian model (layers from :mod:`bnn_core`; a deterministic model gives
            ``M`` identical draws). Its train/eval flags are left alone, except that
            :meth:`fit` evaluates it in eval mode.
        channel: A Gaussian channel from :mod:`adv_channels` with ``σ > 0`` (see above).
        mode: ``"online"`` (eq. 4, default) or ``"offline"`` (eq. 5); can be changed after
            :meth:`fit` (:attr:`mode`).
        num_samples: Posterior draws ``M >= 1``. Default ``10``.
        task: ``"classification"`` (default) or ``"regression"``.
        likelihood: Regression: the :class:`bnn_core.GaussianLikelihood` giving ``s²``
            (default ``model.likelihood``); ``s²`` is read at :meth:`fit`.
        backend: ``"auto"`` (default: the fused Triton kernel on CUDA, else PyTorch),
            ``"torch"`` or ``"triton"``; see :class:`adv_reactive.Backend`.
        chunk_size: Keys per chunk of the PyTorch back end (default: 1024 on the CPU,
            65536 on CUDA).
        generator: Randomness of the posterior draws (on the model's device).
        method: How :meth:`fit` evaluates the ``M`` draws: ``"auto"``, ``"loop"`` or
            ``"vmap"`` (see :func:`bnn_core.forward_samples`).
        offset_dtype: Per-draw keys only (one-step channel): ``None`` (default) stores the
            keys ``μ_mi`` themselves; a dtype such as ``torch.bfloat16`` stores them as the
            training inputs plus offsets ``δ_mi = μ_mi − x_i`` in that dtype
            (:class:`adv_reactive.OffsetKeys`): in bfloat16, half the memory and about 2x
            faster inference on CPUs with bfloat16 matrix instructions, with log-weights
            within ``3 · 2⁻⁸ ‖x'‖ ‖δ‖ / σ²`` nats of the exact ones (bounds in
            :class:`adv_reactive.OffsetKeys`; a few thousandths of a nat measured on MNIST
            at ``ε = 2``, ``σ = 1``). PyTorch back end only; a regression
            :meth:`log_prob` puts the full keys together for the call.
        abc: Likelihood-free weights (:class:`adv_reactive.ABC`; docs/theory.md): the channel
            is then only *simulated* (any :class:`~adv_channels.Channel` — PGD, mixtures with
            a PGD component, learned channels — or a callable
            ``simulate(x, y, predictive, generator) -> x'``, the predictive being posterior
            draw ``β_m``'s); :meth:`fit` stores ``S`` simulations ``x'_mis`` per (draw,
            input) pair as keys and ``k_mi`` becomes ``(1/S) Σ_s N(x'; x'_mis, h² I)`` (or
            the ``k`` nearest simulations), ``h`` from the options or the bandwidth rule
            (:attr:`sigma` then reads ``h``). Example:
            ``ReactivePPD(model, PGDChannel(eps=2.0, sigma=0.1), abc=ABC(simulations=4))``.
            ``offset_dtype`` stores the simulations as offsets from the inputs.

    Shape:
        - Input of :meth:`fit`: ``(N, *input_shape)``; of ``forward``/:meth:`predict`:
          ``(B, *input_shape)``.
        - Output (classification): ``(B, C)`` log-probabilities.
        - Output (regression): ``(mean, var)``, each of the model output's shape, e.g.
          ``(B, 1)``.

    Memory: keys ``N·D`` (shared) or ``M·N·D`` (per draw) numbers, plus the ``N·D`` training
    inputs for the one-step channel, values ``M·N·C`` and norms; for the full MNIST training
    set (``N = 60,000``, ``D = 784``) and ``M = 10`` in float32: 0.19 GB (identity) or
    2.1 GB (one-step; 1.1 GB with ``offset_dtype=torch.bfloat16``). :meth:`fit` computes
    everything in batches, without temporary copies of the whole set.

    Examples:
        >>> import bnn_core
        >>> from adv_channels import OneStepChannel
        >>> model = bnn_core.mnist_cnn(image_size=12)
        >>> x_train, y_train = torch.rand(100, 1, 12, 12), torch.randint(0, 10, (100,))
        >>> rppd = ReactivePPD(model, OneStepChannel(eps=0.5, sigma=0.3), num_samples=4)
        >>> rppd = rppd.fit(x_train, y_train)
        >>> log_probs = rppd(torch.rand(8, 1, 12, 12))  # (8, 10)
        >>> pred = rppd.predict(torch.rand(8, 1, 12, 12), top_k=3)
        >>> pred.ess.shape, pred.draw_weights.shape, pred.top_k_indices.shape
        (torch.Size([8]), torch.Size([8, 4]), torch.Size([8, 3]))
    """

    def __init__(
        self,
        model: nn.Module,
        channel: nn.Module,
        *,
        mode: AggregationMode | str = AggregationMode.ONLINE,
        num_samples: int = 10,
        task: Task | str = Task.CLASSIFICATION,
        likelihood: GaussianLikelihood | None = None,
        backend: Backend | str = Backend.AUTO,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
        method: SamplingMethod | str = SamplingMethod.AUTO,
        offset_dtype: torch.dtype | None = None,
        abc: ABC | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self._configure(
            model,
            channel,
            mode=mode,
            num_samples=num_samples,
            task=task,
            likelihood=likelihood,
            backend=backend,
            chunk_size=chunk_size,
            generator=generator,
            method=method,
            offset_dtype=offset_dtype,
            abc=abc,
        )

    def _configure(
        self,
        model: nn.Module | None,
        channel: nn.Module,
        *,
        mode: AggregationMode | str,
        num_samples: int,
        task: Task | str,
        likelihood: GaussianLikelihood | None,
        backend: Backend | str,
        chunk_size: int | None,
        generator: torch.Generator | None,
        method: SamplingMethod | str,
        offset_dtype: torch.dtype | None = None,
        abc: ABC | None = None,
    ) -> None:
        if abc is not None and not isinstance(abc, ABC):
            raise TypeError(f"abc must be an adv_reactive.ABC or None; got {type(abc).__name__}")
        self._abc = abc
        self._sigma: float | None
        if abc is None:
            self._sigma = channel_sigma(channel)
        else:
            if channel is not None:
                check_simulator(channel)
            self._sigma = abc.bandwidth  # None: chosen at fit by abc.rule
        self.register_module("model", model)
        self.channel = channel
        self._mode = coerce_option(AggregationMode, mode, "mode")
        self._num_samples = _check_int(num_samples, "num_samples", low=1)
        self._task = coerce_option(Task, task, "task")
        self._backend = coerce_option(Backend, backend, "backend")
        self._chunk_size = None if chunk_size is None else _check_int(chunk_size, "chunk_size")
        self._method = coerce_option(SamplingMethod, method, "method")
        if offset_dtype is not None and (
            not isinstance(offset_dtype, torch.dtype) or not offset_dtype.is_floating_point
        ):
            raise TypeError(
                f"offset_dtype must be a floating-point torch.dtype or None; got {offset_dtype!r}"
            )
        self._offset_dtype = offset_dtype
        if offset_dtype is not None and self._backend is Backend.TRITON:
            raise ValueError(
                "offset_dtype runs on the PyTorch back end only: use backend='torch' or 'auto'"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None; got {type(generator).__name__}"
            )
        self.generator = generator
        if self._task is Task.REGRESSION:
            if likelihood is None and model is not None:
                likelihood = getattr(model, "likelihood", None)
                if likelihood is None:
                    raise ValueError(
                        "task='regression' needs a GaussianLikelihood: pass likelihood= or give "
                        "the model a .likelihood attribute"
                    )
            if likelihood is not None and not isinstance(likelihood, GaussianLikelihood):
                raise TypeError(
                    f"likelihood must be a bnn_core.GaussianLikelihood; got "
                    f"{type(likelihood).__name__}"
                )
        elif likelihood is not None:
            raise ValueError("likelihood is only used with task='regression'")
        # Not registered as a submodule: it normally lives inside the model already.
        self._likelihood: tuple[GaussianLikelihood | None] = (likelihood,)
        # Fitted state (see fit); buffers, so that .to(device) moves them.
        for name in ("keys", "key_sq_norms", "values", "value_offset", "_inputs", "_agg"):
            self.register_buffer(name, None, persistent=False)
        self._offset_keys = False
        self._abc_shared = False
        self._draws: dict[str, Tensor] = {}
        self._input_shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] = ()
        self._noise_var: float | None = None

    # -- configuration ------------------------------------------------------------------

    @property
    def sigma(self) -> float | None:
        """The kernel scale (input units): the channel's ``σ``, or the ABC bandwidth ``h``.

        With ``abc=`` and no ``bandwidth``, ``None`` until :meth:`fit` chooses ``h``.
        """
        return self._sigma

    @property
    def abc(self) -> ABC | None:
        """The likelihood-free options (``None``: the channel's density, eqs. 4 and 5)."""
        return self._abc

    @property
    def simulations(self) -> int:
        """Keys per (draw, training input) pair: ``S`` with ``abc=``, else 1."""
        return 1 if self._abc is None else self._abc.simulations

    @property
    def mode(self) -> AggregationMode:
        """``"online"`` (eq. 4) or ``"offline"`` (eq. 5); settable, also after :meth:`fit`."""
        return self._mode

    @mode.setter
    def mode(self, value: AggregationMode | str) -> None:
        self._mode = coerce_option(AggregationMode, value, "mode")

    @property
    def num_samples(self) -> int:
        """The number of posterior draws ``M``."""
        return self._num_samples

    @property
    def task(self) -> Task:
        """``"classification"`` or ``"regression"``."""
        return self._task

    @property
    def backend(self) -> Backend:
        """The compute back end handed to :func:`adv_reactive.reactive_aggregate`."""
        return self._backend

    # -- fitted state -------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has set the keys and values."""
        return self.keys is not None

    @property
    def shared_keys(self) -> bool:
        """Whether the keys are shared by every draw (``(N, D)``, ABC: ``(S, N, D)``)."""
        self._require_fitted()
        return self.keys.dim() == 2 or self._abc_shared

    @property
    def num_train(self) -> int:
        """The number of training inputs ``N``."""
        self._require_fitted()
        return self.keys.shape[-2]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, ``(C, H, W)`` for images."""
        self._require_fitted()
        assert self._input_shape is not None
        return self._input_shape

    @property
    def inputs(self) -> Tensor:
        """``(N, D)`` the stored training inputs ``x_i``, flattened (the keys when shared)."""
        self._require_fitted()
        return self.keys if self._inputs is None else self._inputs

    @property
    def offset_keys(self) -> bool:
        """Whether the per-draw keys are stored as inputs plus offsets (``offset_dtype``)."""
        self._require_fitted()
        return self._offset_keys

    def _aggregation_keys(self) -> Tensor | OffsetKeys:
        """What :func:`adv_reactive.reactive_aggregate` reads as keys."""
        if self._offset_keys:
            assert self._inputs is not None
            return OffsetKeys(self._inputs, self.keys)
        return self.keys

    @property
    def draws(self) -> dict[str, Tensor]:
        """The ``M`` posterior draws: ``{"<layer>.weight": (M, *shape), ...}`` (detached)."""
        self._require_fitted()
        return dict(self._draws)

    @property
    def noise_var(self) -> float | None:
        """Regression: the observation-noise variance ``s²`` read at :meth:`fit`."""
        return self._noise_var

    def _require_fitted(self) -> None:
        if self.keys is None:
            raise RuntimeError(
                "this ReactivePPD is not fitted: call fit(x_train, y_train) first (or load a "
                "saved one with ReactivePPD.load)"
            )

    # -- fit ----------------------------------------------------------------------------

    def fit(
        self,
        x_train: Tensor,
        y_train: Tensor | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> ReactivePPD:
        """Draw ``M`` posterior samples and compute the keys, their norms and the values.

        Per batch of training inputs: the values ``P_mi = softmax f_{β_m}(x_i)``
        (classification) or the means ``f_mi`` (regression, with ``s²`` from the
        likelihood), and the keys: the inputs themselves for a channel that ignores the
        model, else the channel's mean under each draw (a one-step attack of ``x_i`` under
        ``β_m`` alone; the forward pass of that attack is reused for the values). Memory:
        the stored state plus one batch's activations.

        Args:
            x_train: ``(N, *input_shape)`` training inputs, ``N >= 1``, on the model's
                device and in its dtype.
            y_train: ``(N,)`` labels (class indices, or regression targets) read by
                attack-based channels, or ``None``: the attack then uses each draw's own
                prediction at ``x_i``.
            batch_size: Training inputs per batch (default 1024 on the CPU, 8192 on CUDA).
            progress: Show a progress bar (tqdm): ``True``, ``False``, or ``None`` (default:
                on a terminal when ``N >= 10,000``).

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: If ``x_train`` is empty, holds NaN/inf, or is on another device than
                the model; if ``y_train`` does not match it; or if the model's output does not
                fit the task.
            TypeError: If an argument has the wrong type.
            RuntimeError: If the object was loaded without a model.
        """
        model = self.model
        if model is None:
            raise RuntimeError(
                "this ReactivePPD was loaded without a model: pass model= to ReactivePPD.load to "
                "fit it again"
            )
        if self.channel is None:
            raise RuntimeError(
                "this ReactivePPD was loaded without its channel (a simulator that cannot be "
                "rebuilt from the file): pass channel= to ReactivePPD.load to fit it again"
            )
        x = _check_train_inputs(x_train, model)
        y = _check_train_labels(y_train, x)
        if batch_size is None:
            batch_size = _CUDA_BATCH if x.is_cuda else _CPU_BATCH
        batch_size = _check_int(batch_size, "batch_size")
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool or None; got {type(progress).__name__}")
        if progress is None:  # tqdm's None: shown on a terminal only
            disable: bool | None = None if x.shape[0] >= _PROGRESS_FROM else True
        else:
            disable = not progress

        num, dim, m_draws = x.shape[0], math.prod(x.shape[1:]), self._num_samples
        noise_var = None
        if self._task is Task.REGRESSION:
            likelihood = self._likelihood[0]
            assert likelihood is not None
            noise_var = float(likelihood.variance.detach())
        if self._abc is not None:
            return self._fit_abc(model, x, y, batch_size, disable, noise_var)
        per_draw = bool(getattr(self.channel, "needs_target", False))
        with eval_mode(model), torch.no_grad():
            draws = {
                k: v.detach() for k, v in sample_weights(model, m_draws, self.generator).items()
            }
        preds = [
            DrawPredictive(model, draws, m, task=self._task, noise_var=noise_var)
            for m in range(m_draws)
        ]
        inputs = x.new_empty(num, dim)
        split = per_draw and self._offset_dtype is not None
        key_dtype = self._offset_dtype if split else x.dtype
        keys = x.new_empty(m_draws, num, dim, dtype=key_dtype) if per_draw else None
        outputs: Tensor | None = None  # (M, N, *out): logits or regression means

        bar = tqdm(total=num, desc="ReactivePPD.fit", unit="input", disable=disable)
        with eval_mode(model), bar:
            for start in range(0, num, batch_size):
                stop = min(start + batch_size, num)
                xb = x[start:stop].detach()
                yb = None if y is None else y[start:stop]
                inputs[start:stop] = xb.reshape(stop - start, dim)
                if per_draw:
                    assert keys is not None
                    out = self._per_draw_batch(preds, xb, yb, keys[:, start:stop], split)
                else:
                    keys = self._shared_batch(xb, yb, inputs, keys, start)
                    with torch.no_grad():
                        out = forward_samples(
                            model, xb, m_draws, weights=draws, method=self._method
                        )
                if outputs is None:
                    self._output_shape = _check_output(out, self._task)
                    outputs = out.new_empty(m_draws, num, *out.shape[2:])
                outputs[:, start:stop] = out
                bar.update(stop - start)
        assert outputs is not None
        self._set_state(
            keys=inputs if keys is None else keys,
            inputs=inputs if per_draw else None,
            offset_keys=split,
            outputs=outputs,
            draws=draws,
            input_shape=tuple(x.shape[1:]),
            noise_var=noise_var,
        )
        return self

    def _fit_abc(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor | None,
        batch_size: int,
        disable: bool | None,
        noise_var: float | None,
    ) -> ReactivePPD:
        """ABC fit: ``S`` simulations per (draw, input) as keys, then the bandwidth rule."""
        abc = self._abc
        assert abc is not None
        num, dim, m_draws = x.shape[0], math.prod(x.shape[1:]), self._num_samples
        sims = abc.simulations
        per_draw = abc.per_draw
        if per_draw is None:
            per_draw = bool(getattr(self.channel, "needs_target", True))
        with eval_mode(model), torch.no_grad():
            draws = {
                k: v.detach() for k, v in sample_weights(model, m_draws, self.generator).items()
            }
        preds = [
            DrawPredictive(model, draws, m, task=self._task, noise_var=noise_var)
            for m in range(m_draws)
        ]
        groups = m_draws * sims if per_draw else sims
        split = self._offset_dtype is not None
        inputs = x.new_empty(num, dim)
        keys = x.new_empty(groups, num, dim, dtype=self._offset_dtype if split else x.dtype)
        outputs: Tensor | None = None
        batch_size = max(1, batch_size // sims)  # S·batch simulations in flight at once
        bar = tqdm(total=num, desc="ReactivePPD.fit (ABC)", unit="input", disable=disable)
        with eval_mode(model), bar:
            for start in range(0, num, batch_size):
                stop = min(start + batch_size, num)
                xb = x[start:stop].detach()
                yb = None if y is None else y[start:stop]
                flat = xb.reshape(stop - start, dim)
                inputs[start:stop] = flat
                # The S simulations of the batch in one call: the batch repeated S times.
                x_rep = xb.repeat(sims, *([1] * (xb.dim() - 1))) if sims > 1 else xb
                y_rep = None
                if yb is not None:
                    y_rep = yb.repeat(sims, *([1] * (yb.dim() - 1))) if sims > 1 else yb
                targets = preds if per_draw else [None]
                for m, target in enumerate(targets):
                    sim = simulate(self.channel, x_rep, y_rep, target, self.generator)
                    sim = sim.reshape(sims, stop - start, dim)
                    block = keys[m * sims : (m + 1) * sims, start:stop]
                    block.copy_(sim - flat if split else sim)
                with torch.no_grad():
                    out = forward_samples(model, xb, m_draws, weights=draws, method=self._method)
                if outputs is None:
                    self._output_shape = _check_output(out, self._task)
                    outputs = out.new_empty(m_draws, num, *out.shape[2:])
                outputs[:, start:stop] = out
                bar.update(stop - start)
        assert outputs is not None
        self._abc_shared = not per_draw
        self._set_state(
            keys=keys,
            inputs=inputs,
            offset_keys=split,
            outputs=outputs,
            draws=draws,
            input_shape=tuple(x.shape[1:]),
            noise_var=noise_var,
        )
        if abc.bandwidth is None and abc.kernel is ABCKernel.GAUSSIAN:
            # The reference subset is fixed (seed 0): the same simulations give the same h.
            gen = torch.Generator().manual_seed(0)
            self._sigma = nearest_neighbour_bandwidth(
                self._aggregation_keys(),
                self.key_sq_norms,
                quantile=abc.quantile,
                reference_size=abc.reference_size,
                generator=gen,
            )
        return self

    def _shared_batch(
        self, xb: Tensor, yb: Tensor | None, inputs: Tensor, keys: Tensor | None, start: int
    ) -> Tensor | None:
        """Keys of a channel that ignores the model; stays ``None`` while they equal the inputs."""
        with torch.no_grad():
            mu = self.channel.mean(xb, yb).reshape(xb.shape[0], -1)
        stop = start + xb.shape[0]
        if keys is None and torch.equal(mu, inputs[start:stop]):
            return None  # identity / Gaussian channel: the keys are the inputs, stored once
        if keys is None:
            keys = inputs.clone()
        keys[start:stop] = mu
        return keys

    def _per_draw_batch(
        self,
        preds: list[DrawPredictive],
        xb: Tensor,
        yb: Tensor | None,
        keys_out: Tensor,
        offsets: bool,
    ) -> Tensor:
        """Per-draw keys of a batch (written to ``keys_out``), and the per-draw outputs.

        With ``offsets``, ``keys_out`` receives ``μ_mi − x_i`` (cast to its dtype) instead.
        """
        outs = []
        flat = xb.reshape(xb.shape[0], -1)
        for m, pred in enumerate(preds):
            with pred.recording() as tape:
                mu = self.channel.mean(xb, yb, pred)
            mu = mu.detach().reshape(xb.shape[0], -1)
            keys_out[m] = mu - flat if offsets else mu
            out = tape.outputs_for(xb)
            if out is None:  # the channel evaluated something else: one more forward
                with torch.no_grad():
                    out = pred.model_output(xb)
            outs.append(out)
        return torch.stack(outs)

    def _set_state(
        self,
        *,
        keys: Tensor,
        inputs: Tensor | None,
        offset_keys: bool,
        outputs: Tensor,
        draws: dict[str, Tensor],
        input_shape: tuple[int, ...],
        noise_var: float | None,
    ) -> None:
        """Store the fitted state: keys, norms, values (and what aggregation reads)."""
        if self._task is Task.CLASSIFICATION:
            values = torch.softmax(outputs, dim=-1)
            offset = None
        else:
            means = outputs.reshape(*outputs.shape[:2], -1)  # (M, N, K)
            offset = means.mean(dim=(0, 1))
            values = moment_values(means, offset)
        if offset_keys:
            assert inputs is not None
            key_sq_norms = squared_norms(OffsetKeys(inputs, keys))
        else:
            key_sq_norms = squared_norms(keys)
        self._install(
            keys=keys,
            key_sq_norms=key_sq_norms,
            values=values,
            value_offset=offset,
            inputs=inputs,
            offset_keys=offset_keys,
            draws=draws,
            input_shape=input_shape,
            noise_var=noise_var,
        )

    def _install(
        self,
        *,
        keys: Tensor,
        key_sq_norms: Tensor,
        values: Tensor,
        value_offset: Tensor | None,
        inputs: Tensor | None,
        offset_keys: bool,
        draws: dict[str, Tensor],
        input_shape: tuple[int, ...],
        noise_var: float | None,
    ) -> None:
        if offset_keys and (inputs is None or keys.dim() != 3):
            raise ValueError("offset keys need per-draw offsets (M, N, D) and the inputs (N, D)")
        self._offset_keys = offset_keys
        self.keys = keys
        self.key_sq_norms = key_sq_norms
        self.values = values
        self.value_offset = value_offset
        self._inputs = inputs
        # With shared keys the aggregation only reads the draw-averaged values (cached).
        self._agg = values.mean(dim=0) if keys.dim() == 2 or self._abc_shared else values
        self._draws = draws
        self._input_shape = input_shape
        self._noise_var = noise_var

    # -- prediction ---------------------------------------------------------------------

    def _queries(self, x_adv: object) -> Tensor:
        """Validate ``x_adv`` against the fitted inputs; return it flattened, ``(B, D)``."""
        self._require_fitted()
        if not isinstance(x_adv, Tensor) or not x_adv.is_floating_point():
            what = x_adv.dtype if isinstance(x_adv, Tensor) else type(x_adv).__name__
            raise TypeError(f"x_adv must be a floating-point tensor; got {what}")
        shape = self.input_shape
        if x_adv.dim() != len(shape) + 1 or tuple(x_adv.shape[1:]) != shape:
            raise ValueError(
                f"x_adv must have shape (B, {', '.join(map(str, shape))}) like the training "
                f"inputs; got {tuple(x_adv.shape)}"
            )
        if x_adv.device != self.keys.device:
            raise ValueError(
                f"x_adv is on {x_adv.device} but the fitted keys are on {self.keys.device}: "
                "move one of them (e.g. reactive_ppd.to(x_adv.device))"
            )
        fitted = self.inputs.dtype  # the float dtype of the fit (offset keys: of the inputs)
        if x_adv.dtype != fitted:
            raise TypeError(
                f"x_adv is {x_adv.dtype} but the fitted state is {fitted}: cast x_adv "
                f"(x_adv.to({fitted})) or fit with {x_adv.dtype} inputs and model"
            )
        if x_adv.numel() and not bool(torch.isfinite(x_adv.detach()).all()):
            raise ValueError("x_adv holds NaN or infinite values")
        return x_adv.reshape(x_adv.shape[0], -1)

    def predict(self, x_adv: Tensor, *, top_k: int = 0) -> ReactivePrediction:
        """The reactive PPD at ``x_adv`` with its purification diagnostics.

        Differentiable with respect to ``x_adv`` (except ``ess`` and the top-k).

        Args:
            x_adv: ``(B, *input_shape)`` test inputs ``x'``, on the fitted state's device.
            top_k: Also return the ``top_k`` most probable clean training inputs (indices and
                weights; ``0``: none). Costs one more pass over the keys.

        Returns:
            A :class:`~adv_reactive.ReactivePrediction`.

        Raises:
            RuntimeError: Before :meth:`fit`.
            TypeError, ValueError: For an ``x_adv`` of the wrong type, shape or device, or
                holding NaN/inf.
        """
        q = self._queries(x_adv)
        if self._abc is not None and self._abc.kernel is ABCKernel.NEAREST:
            return self._predict_nearest(q, top_k)
        assert self._sigma is not None
        res = reactive_aggregate(
            q,
            self._aggregation_keys(),
            self._agg,
            sigma=self._sigma,
            mode=self._mode,
            key_sq_norms=self.key_sq_norms,
            top_k=top_k,
            chunk_size=self._chunk_size,
            backend=self._backend,
            simulations=self.simulations,
        )
        batch, num_draws = q.shape[0], self._num_samples
        lse = res.log_normalizer.expand(batch, num_draws)  # (B, 1) with shared keys
        log_const = math.log(self.num_train) + 0.5 * q.shape[1] * math.log(
            2.0 * math.pi * self._sigma**2
        )
        probs = mean = var = None
        if self._task is Task.CLASSIFICATION:
            probs = res.output
        else:
            assert self.value_offset is not None and self._noise_var is not None
            mean, var = mixture_moments(res.output, self.value_offset, self._noise_var)
            mean = mean.reshape(batch, *self._output_shape)
            var = var.reshape(batch, *self._output_shape)
        return ReactivePrediction(
            probs=probs,
            mean=mean,
            var=var,
            ess=res.ess,
            log_normalizer=lse,
            log_marginal_likelihood=lse - log_const,
            draw_weights=torch.softmax(lse, dim=1),
            top_k_indices=res.top_k_indices,
            top_k_weights=res.top_k_weights,
        )

    def _predict_nearest(self, q: Tensor, top_k: int) -> ReactivePrediction:
        """The ``k``-nearest-simulations ABC predictive (no gradient, no top-k inputs).

        ``log_normalizer`` is the log of how many accepted simulations each draw supplied,
        ``draw_weights`` their share (online; offline each draw supplies ``k``) and
        ``log_marginal_likelihood`` the log of that share; ``ess`` the number accepted.
        """
        abc = self._abc
        assert abc is not None
        if top_k:
            raise ValueError("top_k is not available with ABC(kernel='nearest')")
        out, counts = nearest_simulations(
            q,
            self._aggregation_keys(),
            self.key_sq_norms,
            self.values,
            k=abc.k,
            mode=self._mode,
            simulations=abc.simulations,
            shared=self._abc_shared,
            chunk_size=self._chunk_size or 1024,
        )
        log_counts = counts.log()
        probs = mean = var = None
        if self._task is Task.CLASSIFICATION:
            probs = out
        else:
            assert self.value_offset is not None and self._noise_var is not None
            mean, var = mixture_moments(out, self.value_offset, self._noise_var)
            mean = mean.reshape(q.shape[0], *self._output_shape)
            var = var.reshape(q.shape[0], *self._output_shape)
        k_used = counts.sum(dim=1) if self._mode is AggregationMode.ONLINE else counts[:, 0]
        return ReactivePrediction(
            probs=probs,
            mean=mean,
            var=var,
            ess=k_used,
            log_normalizer=log_counts,
            log_marginal_likelihood=log_counts - counts.sum(dim=1, keepdim=True).log(),
            draw_weights=counts / counts.sum(dim=1, keepdim=True),
        )

    def forward(self, x_adv: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The reactive PPD at ``x_adv`` (the predictive protocol).

        Returns:
            ``(B, C)`` log-probabilities, or ``(mean, var)`` for regression.
        """
        pred = self.predict(x_adv)
        if self._task is Task.CLASSIFICATION:
            log_probs = pred.log_probs
            assert log_probs is not None
            return log_probs
        assert pred.mean is not None and pred.var is not None
        return pred.mean, pred.var

    def log_prob(self, x_adv: Tensor, y: Tensor) -> Tensor:
        """``log p(y | x')`` under the reactive PPD, per test input.

        Classification: the log-probability of class ``y``. Regression: the log-density of
        ``y`` under the Gaussian mixture ``Σ_{m,i} w_mi N(f_mi, s²)`` (exact, not the
        moment-matched Gaussian; see :func:`adv_reactive.reactive_gaussian_log_prob`: ``M``
        more passes over the keys).

        Args:
            x_adv: ``(B, *input_shape)`` test inputs.
            y: ``(B,)`` class indices, or regression targets ``(B,)`` / ``(B, K)``.

        Returns:
            ``(B,)`` log-probabilities (nats), differentiable with respect to ``x_adv``.
        """
        if self._task is Task.CLASSIFICATION:
            log_probs = self(x_adv)
            assert isinstance(log_probs, Tensor)
            labels = _check_labels(y, log_probs)
            return log_probs.gather(1, labels[:, None]).squeeze(1)
        q = self._queries(x_adv)
        if self._abc is not None:
            raise ValueError(
                "the exact mixture log-density is not available with abc=: use the moments "
                "(calling the object) or a Gaussian channel"
            )
        assert self.value_offset is not None and self._noise_var is not None
        if not isinstance(y, Tensor) or not y.is_floating_point():
            raise TypeError("y must be a floating-point tensor of regression targets")
        k = self.value_offset.shape[0]
        if y.dim() == 1 and k == 1:
            y = y[:, None]
        if y.shape != (q.shape[0], k):
            raise ValueError(f"y must have shape ({q.shape[0]}, {k}) or ({q.shape[0]},) if K = 1")
        centred_means = self.values[..., :k]  # f_mi − offset
        return reactive_gaussian_log_prob(
            q,
            y - self.value_offset.to(y.dtype),
            # Regression sets are small: the exact keys, put together for the call.
            self._aggregation_keys().materialize() if self._offset_keys else self.keys,
            centred_means,
            sigma=self._sigma,
            noise_var=self._noise_var,
            mode=self._mode,
            key_sq_norms=self.key_sq_norms,
            chunk_size=self._chunk_size,
            backend=self._backend,
        )

    def nll(self, x_adv: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood ``−(1/B) Σ_b log p(y_b | x'_b)`` (the paper's NLL)."""
        return -self.log_prob(x_adv, y).mean()

    def purified_inputs(self, x_adv: Tensor, top_k: int = 5) -> PurifiedInputs:
        """The ``top_k`` most probable clean training inputs behind each test input.

        Args:
            x_adv: ``(B, *input_shape)`` test inputs.
            top_k: How many, ``1 <= top_k <= N``.

        Returns:
            A :class:`~adv_reactive.PurifiedInputs`: ``inputs`` ``(B, k, *input_shape)``,
            ``weights`` and ``indices`` ``(B, k)``.
        """
        _check_int(top_k, "top_k")
        with torch.no_grad():
            pred = self.predict(x_adv, top_k=top_k)
        assert pred.top_k_indices is not None and pred.top_k_weights is not None
        idx = pred.top_k_indices
        found = self.inputs[idx.reshape(-1)].reshape(*idx.shape, *self.input_shape)
        return PurifiedInputs(found, pred.top_k_weights, idx)

    # -- save / load --------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted state and configuration (``torch.load(weights_only=True)`` reads it).

        The model itself is not saved (save it with :func:`bnn_core.save_model`); the
        draws, keys, norms, values, channel configuration, mode, ``σ`` and ``s²`` are.

        Args:
            path: Destination file.
        """
        self._require_fitted()
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "task": self._task.value,
            "mode": self._mode.value,
            "num_samples": self._num_samples,
            "sigma": self._sigma,
            "backend": self._backend.value,
            "chunk_size": self._chunk_size,
            "method": self._method.value,
            "channel_class": type(self.channel).__name__,
            "channel": channel_config(self.channel),
            "noise_var": self._noise_var,
            "input_shape": list(self.input_shape),
            "output_shape": list(self._output_shape),
            "keys": self.keys,
            "key_sq_norms": self.key_sq_norms,
            "values": self.values,
            "value_offset": self.value_offset,
            "inputs": self._inputs,
            "offset_keys": self._offset_keys,
            "draws": dict(self._draws),
            "abc": None if self._abc is None else self._abc.config(),
            "abc_shared": self._abc_shared,
        }
        torch.save(payload, os.fspath(path))

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        model: nn.Module | None = None,
        channel: nn.Module | None = None,
        map_location: torch.device | str | None = "cpu",
    ) -> ReactivePPD:
        """Load a :class:`ReactivePPD` saved by :meth:`save`.

        Args:
            path: The file.
            model: The model, to :meth:`fit` again later (optional: prediction does not
                need it).
            channel: The channel; rebuilt from the file when ``None`` (Gaussian, identity
                and one-step channels). Its ``σ`` must be the saved one.
            map_location: Where to put the tensors. Default ``"cpu"``.

        Returns:
            The fitted object.

        Raises:
            ValueError: Not a file written by :meth:`save`, or a channel that does not match.
        """
        payload = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"path {os.fspath(path)!r} is not a file saved by ReactivePPD.save")
        if payload.get("format_version") not in _READS_VERSIONS:
            raise ValueError(
                f"path holds format version {payload.get('format_version')}; this adv_reactive "
                f"reads version {_FORMAT_VERSION}"
            )
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module or None; got {type(model).__name__}")
        abc_config = payload.get("abc")
        abc = None if abc_config is None else ABC(**abc_config)
        if channel is None and abc is not None:
            # A simulator needs no rebuilding to predict; fit needs it (channel=).
            if payload["channel"] is not None:
                channel = channel_from_config(payload["channel"])
        elif channel is None:
            if payload["channel"] is None:
                raise ValueError(
                    f"the file's channel ({payload['channel_class']}) cannot be rebuilt from its "
                    "configuration: pass channel="
                )
            channel = channel_from_config(payload["channel"])
        elif abc is None and channel_sigma(channel) != payload["sigma"]:
            raise ValueError(
                f"channel has sigma = {channel_sigma(channel)} but the file was fitted with "
                f"sigma = {payload['sigma']}"
            )
        obj = cls.__new__(cls)
        nn.Module.__init__(obj)
        obj._configure(
            model,
            channel,
            mode=payload["mode"],
            num_samples=payload["num_samples"],
            task=payload["task"],
            likelihood=None,
            backend=payload["backend"],
            chunk_size=payload["chunk_size"],
            generator=None,
            method=payload["method"],
            offset_dtype=payload["keys"].dtype if payload.get("offset_keys") else None,
            abc=abc,
        )
        obj._sigma = payload["sigma"]
        obj._abc_shared = bool(payload.get("abc_shared", False))
        obj._output_shape = tuple(payload["output_shape"])
        obj._install(
            keys=payload["keys"],
            key_sq_norms=payload["key_sq_norms"],
            values=payload["values"],
            value_offset=payload["value_offset"],
            inputs=payload["inputs"],
            offset_keys=bool(payload.get("offset_keys", False)),
            draws=dict(payload["draws"]),
            input_shape=tuple(payload["input_shape"]),
            noise_var=payload["noise_var"],
        )
        return obj

    # -- nn.Module plumbing -------------------------------------------------------------

    def _apply(self, fn: Any, recurse: bool = True) -> ReactivePPD:
        """Move/cast the stored draws together with the buffers (``.to``, ``.double``, ...)."""
        super()._apply(fn, recurse)
        self._draws = {k: fn(v) for k, v in self._draws.items()}
        return self

    def extra_repr(self) -> str:
        """The configuration shown by ``repr``."""
        fitted = f", N={self.num_train}" if self.is_fitted else ", not fitted"
        return (
            f"mode={self._mode.value!r}, num_samples={self._num_samples}, "
            f"task={self._task.value!r}, sigma={self._sigma}{fitted}"
        )


def _check_int(value: object, name: str, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
    return value


def _check_train_inputs(x_train: object, model: nn.Module) -> Tensor:
    if not isinstance(x_train, Tensor) or not x_train.is_floating_point():
        what = x_train.dtype if isinstance(x_train, Tensor) else type(x_train).__name__
        raise TypeError(f"x_train must be a floating-point tensor (N, ...); got {what}")
    if x_train.dim() < 2:
        raise ValueError(f"x_train must have shape (N, *input_shape); got {tuple(x_train.shape)}")
    if x_train.shape[0] == 0 or x_train[0].numel() == 0:
        raise ValueError(
            f"x_train is empty (shape {tuple(x_train.shape)}): the reactive PPD weights the "
            "training inputs, it needs at least one"
        )
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != x_train.device:
        raise ValueError(
            f"x_train is on {x_train.device} but the model is on {param.device}: move one of them"
        )
    if param is not None and param.dtype != x_train.dtype:
        raise TypeError(f"x_train is {x_train.dtype} but the model is {param.dtype}: cast one")
    if not bool(torch.isfinite(x_train).all()):
        raise ValueError("x_train holds NaN or infinite values")
    return x_train


def _check_train_labels(y_train: object, x: Tensor) -> Tensor | None:
    if y_train is None:
        return None
    if not isinstance(y_train, Tensor):
        raise TypeError(f"y_train must be a tensor or None; got {type(y_train).__name__}")
    if y_train.dim() not in (1, 2) or y_train.shape[0] != x.shape[0]:
        raise ValueError(
            f"y_train must hold one label per training input, shape ({x.shape[0]},); got "
            f"{tuple(y_train.shape)}"
        )
    if y_train.device != x.device:
        raise ValueError(f"y_train is on {y_train.device} but x_train is on {x.device}")
    return y_train


def _check_output(out: Tensor, task: Task) -> tuple[int, ...]:
    """Per-example output shape of the model (``out`` is ``(M, b, ...)``), checked for ``task``."""
    if task is Task.CLASSIFICATION and out.dim() != 3:
        raise ValueError(
            f"task='classification' needs model(x) of shape (B, C); got {tuple(out.shape[1:])}"
        )
    if task is Task.REGRESSION and out.dim() not in (2, 3):
        raise ValueError(
            f"task='regression' needs model(x) of shape (B,) or (B, K); got {tuple(out.shape[1:])}"
        )
    return tuple(out.shape[2:])


def _check_labels(y: object, log_probs: Tensor) -> Tensor:
    if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError("y must be an integer tensor of class indices")
    if y.shape != (log_probs.shape[0],):
        raise ValueError(f"y must have shape ({log_probs.shape[0]},); got {tuple(y.shape)}")
    if y.device != log_probs.device:
        raise ValueError(f"y is on {y.device} but x_adv is on {log_probs.device}")
    num_classes = log_probs.shape[1]
    if bool((y < 0).any()) or bool((y >= num_classes).any()):
        raise ValueError(f"y must hold class indices in [0, {num_classes})")
    return y.long()
