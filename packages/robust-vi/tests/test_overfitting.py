"""Catastrophic-overfitting detection: the flag rule and the trainer callback."""

from __future__ import annotations

import pytest
import torch

from adv_attacks import one_step, pgd
from bnn_core import PosteriorPredictive
from robust_vi import OverfittingMonitor, Trainer, collapsed, recipe


def _history(pairs):
    return [
        {"epoch": e + 1, "co_one_step_accuracy": a, "co_multi_step_accuracy": b}
        for e, (a, b) in enumerate(pairs)
    ]


def test_flag_rule_on_hand_made_histories():
    # collapse: PGD accuracy falls 0.5 -> 0.1 while one-step accuracy rises
    assert collapsed(_history([(0.4, 0.3), (0.5, 0.5), (0.8, 0.1)])) == [3]
    # both fall (a stronger model would not): not the signature
    assert collapsed(_history([(0.6, 0.5), (0.3, 0.1)])) == []
    # a small dip is not a collapse; the drop is measured from the best epoch so far
    assert collapsed(_history([(0.4, 0.5), (0.5, 0.4), (0.6, 0.29)])) == [3]
    assert collapsed(_history([(0.4, 0.5), (0.5, 0.4)])) == []
    assert collapsed([{"epoch": 1, "loss": 1.0}]) == []
    with pytest.raises(ValueError, match="drop"):
        collapsed([], drop=0.0)


def test_callback_records_the_accuracies_of_its_batch(make_images, small_cnn):
    x, y = make_images(48)
    xv, yv = make_images(24, seed=1)
    monitor = OverfittingMonitor(xv, yv, eps=1.0, steps=3, num_samples=2, seed=4)
    model = small_cnn()
    trainer = Trainer(
        model, recipe("OS", eps=1.0), epochs=2, batch_size=16, progress=False, callbacks=[monitor]
    )
    history = trainer.fit((x, y))
    assert [r["catastrophic_overfitting"] for r in history] == [False, False]
    # the recorded values are the attacks' accuracies (recomputed independently here)
    model.eval()
    gen = torch.Generator()
    ppd = PosteriorPredictive(model, 2, generator=gen.manual_seed(4))
    acc_one = (ppd(one_step(ppd, xv, yv, eps=1.0)).argmax(-1) == yv).float().mean()
    ppd = PosteriorPredictive(model, 2, generator=gen.manual_seed(4))
    acc_pgd = ppd(pgd(ppd, xv, yv, eps=1.0, steps=3, generator=gen)).argmax(-1) == yv
    assert history[-1]["co_one_step_accuracy"] == pytest.approx(float(acc_one))
    assert history[-1]["co_multi_step_accuracy"] == pytest.approx(float(acc_pgd.float().mean()))


def test_errors():
    with pytest.raises(ValueError, match="shape|B"):
        OverfittingMonitor(torch.zeros(4, 3), torch.zeros(3), eps=1.0)
    with pytest.raises(ValueError, match="eps"):
        OverfittingMonitor(torch.zeros(4, 3), torch.zeros(4), eps=-1.0)
