"""Detecting catastrophic overfitting of one-step adversarial training in the history.

Catastrophic overfitting (Wong et al. 2020, "Fast is better than free"): during training
against one-step attacks the model's accuracy under multi-step attacks collapses, often
within an epoch, while its accuracy under the one-step attack it trains against *rises*
(the model has learned to mask that attack's gradient). :class:`OverfittingMonitor` is a
:class:`~robust_vi.Trainer` callback that measures both on a fixed held-out batch after every
epoch and writes them, and a flag, into the epoch's history record (docs/theory.md).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor

from adv_attacks import one_step, pgd
from bnn_core import PosteriorPredictive, Task, sample_mode
from robust_vi._checks import check_float, check_positive_int
from robust_vi.modes import training_mode

__all__ = ["OverfittingMonitor", "collapsed"]

ONE_STEP_KEY = "co_one_step_accuracy"
MULTI_STEP_KEY = "co_multi_step_accuracy"
FLAG_KEY = "catastrophic_overfitting"


def collapsed(history: list[dict[str, Any]], *, drop: float = 0.2) -> list[int]:
    """Epochs whose multi-step accuracy fell by ``>= drop`` while one-step accuracy rose.

    Epoch ``t`` is flagged when ``max_{s<t} A_multi(s) − A_multi(t) >= drop`` and
    ``A_one(t) >= A_one(t−1)`` (the signature of catastrophic overfitting: the multi-step
    attack succeeds far more than before while the one-step attack succeeds less).

    Args:
        history: Records with :data:`ONE_STEP_KEY` and :data:`MULTI_STEP_KEY` (others are
            skipped).
        drop: Accuracy drop that counts as a collapse, in ``(0, 1]``.

    Returns:
        The flagged records' ``epoch`` values.

    Examples:
        >>> h = [{"epoch": e, "co_one_step_accuracy": a, "co_multi_step_accuracy": b}
        ...      for e, a, b in [(1, 0.5, 0.4), (2, 0.6, 0.45), (3, 0.9, 0.05)]]
        >>> collapsed(h)
        [3]
    """
    drop = check_float(drop, "drop", positive=True)
    flagged = []
    best_multi: float | None = None
    last_one: float | None = None
    for record in history:
        if ONE_STEP_KEY not in record or MULTI_STEP_KEY not in record:
            continue
        a_one, a_multi = float(record[ONE_STEP_KEY]), float(record[MULTI_STEP_KEY])
        if (
            best_multi is not None
            and last_one is not None
            and best_multi - a_multi >= drop
            and a_one >= last_one
        ):
            flagged.append(int(record.get("epoch", len(flagged))))
        best_multi = a_multi if best_multi is None else max(best_multi, a_multi)
        last_one = a_one
    return flagged


class OverfittingMonitor:
    """Trainer callback: one-step vs multi-step accuracy on a fixed batch, every epoch.

    After each epoch it attacks the model's predictive (the posterior predictive with
    ``num_samples`` draws, fixed by ``seed``; point estimates at their mean) on ``(x, y)``
    with the one-step attack (PGD1) and with ``steps``-step PGD from a random start, both at
    L2 budget ``eps``, and adds to the epoch's history record ``co_one_step_accuracy``,
    ``co_multi_step_accuracy`` and ``catastrophic_overfitting`` (see :func:`collapsed`; it
    is computed from the whole history, so it is also right after a resume).

    Args:
        x: Held-out inputs ``(B, *)`` (e.g. 100–200 validation images).
        y: Their labels ``(B,)``.
        eps: The attacks' L2 budget (the training budget).
        steps: PGD steps; default 10.
        num_samples: Posterior draws of the predictive; default 5.
        drop: Multi-step accuracy drop counted as a collapse; default 0.2.
        clamp: Valid input range; default ``(0, 1)``.
        seed: Seed of the draws and random starts (the same every epoch).

    Examples:
        >>> import torch
        >>> from bnn_core import mnist_cnn
        >>> from robust_vi import Trainer, recipe
        >>> x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        >>> monitor = OverfittingMonitor(x, y, eps=2.0, steps=2, num_samples=1)
        >>> trainer = Trainer(mnist_cnn(), recipe("OS", eps=2.0), epochs=1, progress=False,
        ...                   batch_size=8, callbacks=[monitor])
        >>> sorted(k for k in trainer.fit((x, y))[0] if k.startswith("co"))
        ['co_multi_step_accuracy', 'co_one_step_accuracy']
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        eps: float,
        steps: int = 10,
        num_samples: int = 5,
        drop: float = 0.2,
        clamp: tuple[float, float] | None = (0.0, 1.0),
        seed: int = 0,
    ) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError("x and y must be tensors")
        if x.ndim < 2 or y.shape != (x.shape[0],):
            raise ValueError(
                f"x must be (B, *) and y (B,) with the same B; got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        self.x, self.y = x.detach(), y.detach()
        self.eps = check_float(eps, "eps", positive=True)
        self.steps = check_positive_int(steps, "steps")
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.drop = check_float(drop, "drop", positive=True)
        self.clamp = clamp
        self.seed = int(seed)

    def measure(self, trainer: Any) -> dict[str, float]:
        """One-step and multi-step accuracy of ``trainer``'s model on the batch."""
        if trainer.task is not Task.CLASSIFICATION:
            raise ValueError("OverfittingMonitor measures classification accuracy")
        device = trainer.device
        x, y = self.x.to(device), self.y.to(device)
        gen = torch.Generator(device=device)
        out = {}
        with ExitStack() as stack:
            stack.enter_context(training_mode(trainer.model, False))
            m = self.num_samples
            if trainer.objective.point_estimate:
                stack.enter_context(sample_mode(trainer.model, "mean"))
                m = 1
            for key, attack in ((ONE_STEP_KEY, "one"), (MULTI_STEP_KEY, "pgd")):
                ppd = PosteriorPredictive(trainer.model, m, generator=gen.manual_seed(self.seed))
                common = {"eps": self.eps, "clamp": self.clamp}
                if attack == "one":
                    x_adv = one_step(ppd, x, y, **common)
                else:
                    x_adv = pgd(ppd, x, y, steps=self.steps, generator=gen, **common)
                with torch.no_grad():
                    acc = (ppd(x_adv).argmax(-1) == y).float().mean()
                out[key] = float(acc)
        return out

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        """Measure, and flag the record if the history shows a collapse."""
        record.update(self.measure(trainer))
        record[FLAG_KEY] = record.get("epoch") in collapsed(trainer.history, drop=self.drop)
