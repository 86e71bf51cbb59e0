from __future__ import annotations

import torch
from scipy import stats

from adv_attacks import EntropyAttack, entropy_attack, pgd


def _entropy(model, x):
    p = torch.softmax(model(x), -1).detach().double().numpy()
    return torch.tensor(stats.entropy(p, axis=1))


def test_raises_entropy_on_a_seeded_cnn(make_cnn, images):
    model = make_cnn(seed=0, scale=8.0)
    x, _ = images
    x_adv = entropy_attack(model, x, eps=2.0, steps=10, generator=torch.Generator().manual_seed(0))
    assert (_entropy(model, x_adv) > _entropy(model, x) + 0.05).all()


def test_negative_sign_lowers_entropy(make_cnn, images):
    model = make_cnn(seed=0, scale=4.0)
    x, _ = images
    res = entropy_attack(model, x, eps=2.0, steps=10, entropy_sign=-1, return_info=True)
    assert (_entropy(model, res.x_adv) < _entropy(model, x) - 0.05).all()
    torch.testing.assert_close(res.objective.double(), -_entropy(model, res.x_adv))


def test_is_pgd_on_the_entropy_and_needs_no_labels(make_cnn, images):
    model = make_cnn(seed=3)
    x, y = images
    kw = dict(eps=1.0, steps=4, random_start=False)
    ent = EntropyAttack(**kw)(model, x)
    assert torch.equal(ent, pgd(model, x, objective="entropy", **kw))
    assert torch.equal(ent, entropy_attack(model, x, y, **kw))  # y only feeds the report


def test_regression_raises_log_predictive_std(regressor_cls):
    model = regressor_cls(5)
    x = torch.randn(6, 5, dtype=torch.float64)
    x_adv = entropy_attack(model, x, eps=1.0, steps=10, clamp=None)
    assert (model(x_adv)[1] > model(x)[1]).all()
