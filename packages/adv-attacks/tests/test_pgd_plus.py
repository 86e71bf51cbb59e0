from __future__ import annotations

import torch
from scipy import stats
from torch import nn

from adv_attacks import PGDPlus, pgd, pgd_plus


def _entropy(model, x):
    p = torch.softmax(model(x), -1).detach().double().numpy()
    return torch.tensor(stats.entropy(p, axis=1))


def test_raises_entropy_and_misclassifies_on_a_seeded_cnn(make_cnn, images, norm_of):
    model = make_cnn(seed=0, scale=8.0)  # confident predictions: entropy has room to rise
    x, _ = images
    y = model(x).argmax(-1)
    res = pgd_plus(
        model,
        x,
        y,
        eps=3.0,
        nll_steps=10,
        entropy_steps=10,
        return_info=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert (_entropy(model, res.x_adv) > _entropy(model, x) + 0.05).all()
    assert (norm_of(res.x_adv - x) <= 3.0 + 1e-5).all()
    assert 0.0 <= res.x_adv.min() and res.x_adv.max() <= 1.0
    # The reported objective is the entropy phase's: the entropy at x_adv.
    torch.testing.assert_close(res.objective.double(), _entropy(model, res.x_adv))
    assert torch.equal(res.success, model(res.x_adv).argmax(-1) != y)


class _Recorder(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def test_nll_phase_then_entropy_phase_from_the_same_iterate(make_cnn, images):
    model = make_cnn(seed=1, scale=4.0)
    x, y = images
    rec = _Recorder(model)
    kw = dict(eps=2.0, step_size=0.3, random_start=False)
    out = pgd_plus(rec, x, y, nll_steps=3, entropy_steps=2, **kw)
    assert len(rec.seen) == 5
    for k in range(4):  # iterates 0..3 are those of PGD on nll
        ref = x if k == 0 else pgd(model, x, y, steps=k, **kw)
        torch.testing.assert_close(rec.seen[k], ref)
    # The last step ascends the entropy from iterate 4, in the ball around the clean x.
    from_iterate = pgd(
        model,
        rec.seen[4],
        eps=10.0,
        objective="entropy",
        steps=1,
        step_size=0.3,
        random_start=False,
    )
    nll_only = pgd(model, x, y, steps=5, **kw)
    assert not torch.allclose(out, nll_only)
    inside = (out - x).flatten(1).norm(dim=1) < 2.0 - 1e-4
    torch.testing.assert_close(out[inside], from_iterate[inside], atol=1e-5, rtol=1e-5)


def test_eps_zero_and_eot(ensemble_cls):
    model = ensemble_cls(d=6, c=4, m=3, sigma=1.0)
    x = torch.rand(4, 6, dtype=torch.float64)
    assert torch.equal(pgd_plus(model, x, eps=0.0, nll_steps=2, entropy_steps=2), x)
    attack = PGDPlus(eps=0.5, nll_steps=2, entropy_steps=3, eot=True)
    a = attack(model, x, generator=torch.Generator().manual_seed(0))
    assert model.resample_calls == 5
    b = attack(model, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
