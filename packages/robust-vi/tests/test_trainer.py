"""The trainer: it learns, it is deterministic, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from adv_channels import IdentityChannel
from bnn_core import PosteriorPredictive, nll, posterior_summary, regression_mlp
from robust_vi import CHECKPOINT_NAME, SurrogateELBO, Trainer, recipe


class Interrupt(Exception):
    """Stands in for a crash or a Ctrl-C."""


class FlakyImages(Dataset):
    """A map-style dataset that raises once, at its ``fail_at``-th item access."""

    def __init__(self, x, y, fail_at=None):
        self.x, self.y, self.fail_at, self.calls = x, y, fail_at, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise Interrupt
        return self.x[i], self.y[i]


def _state(model, channel):
    return {**model.state_dict(), **{f"channel.{k}": v for k, v in channel.state_dict().items()}}


def _assert_same_run(a, b):
    (ma, ca, ha), (mb, cb, hb) = a, b
    sa, sb = _state(ma, ca), _state(mb, cb)
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
    drop = {"time_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in ha] == [
        {k: v for k, v in r.items() if k not in drop} for r in hb
    ]


def _nn50(small_cnn, seed):
    torch.manual_seed(seed)
    model = small_cnn(seed=seed)
    return model, recipe("NN50", eps=1.0, input_shape=(1, 12, 12), num_classes=3)


CONFIG = {"epochs": 3, "batch_size": 16, "lr": 5e-3, "lr_decay": 0.9, "kl_warmup_epochs": 1}


def _stop_after_first(trainer, record):
    if record["epoch"] == 1:
        raise Interrupt


def _interrupted_and_resumed(build, x, y, directory, *, fresh_seed):
    """Train ``build(0)`` one epoch and crash; resume in ``build(fresh_seed)`` (another
    global seed and other initial weights, as in a new process); return its model, recipe and
    history."""
    model1, r1 = build(0)
    first = Trainer(
        model1,
        r1,
        progress=False,
        checkpoint_dir=directory,
        callbacks=[_stop_after_first],
        **CONFIG,
    )
    with pytest.raises(Interrupt):
        first.fit((x, y))
    assert (directory / CHECKPOINT_NAME).is_file() and len(first.history) == 1
    model2, r2 = build(fresh_seed)
    history = Trainer(model2, r2, progress=False, checkpoint_dir=directory, **CONFIG).fit((x, y))
    assert [rec["epoch"] for rec in history] == [1, 2, 3]
    return model2, r2, history


def test_resume_after_an_interrupted_epoch_gives_the_same_parameters(
    tmp_path, make_images, small_cnn
):
    x, y = make_images(48)
    model, r = _nn50(small_cnn, seed=0)
    reference = Trainer(model, r, progress=False, **CONFIG)
    reference.fit((x, y))
    model2, r2, history = _interrupted_and_resumed(
        lambda seed: _nn50(small_cnn, seed), x, y, tmp_path, fresh_seed=123
    )
    _assert_same_run((model, r.channel, reference.history), (model2, r2.channel, history))


def _with_dropout(small_cnn, seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Dropout(0.3), small_cnn(seed=0))
    return model, recipe("MIX", eps=1.0)


def test_dropout_runs_are_reproducible_and_resume_exactly(tmp_path, make_images, small_cnn):
    # dropout draws from torch's global generator: the trainer forks it, seeds it from its
    # own seed and checkpoints it (a resumed run with dropout used to drift)
    x, y = make_images(48)
    model, r = _with_dropout(small_cnn, seed=0)
    torch.manual_seed(11)
    caller = torch.get_rng_state()
    reference = Trainer(model, r, progress=False, **CONFIG)
    reference.fit((x, y))
    assert torch.equal(torch.get_rng_state(), caller)  # the caller's stream is untouched
    model2, r2, history = _interrupted_and_resumed(
        lambda seed: _with_dropout(small_cnn, seed), x, y, tmp_path, fresh_seed=99
    )
    _assert_same_run((model, r.channel, reference.history), (model2, r2.channel, history))
    # and a run does not depend on the caller's global seed (model built the same way)
    model3, r3 = _with_dropout(small_cnn, seed=0)
    torch.manual_seed(12)
    again = Trainer(model3, r3, progress=False, **CONFIG)
    _assert_same_run((model, r.channel, reference.history), (model3, r3.channel, again.fit((x, y))))


def test_resume_after_a_crash_mid_epoch_with_a_shuffling_loader(tmp_path, make_images, small_cnn):
    x, y = make_images(40)

    def run(dataset, directory=None):
        model = small_cnn(seed=0)
        loader = DataLoader(
            dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7)
        )
        trainer = Trainer(
            model, recipe("MIX", eps=1.0), progress=False, checkpoint_dir=directory, **CONFIG
        )
        return model, trainer, trainer.fit(loader)

    model, trainer, history = run(FlakyImages(x, y))
    with pytest.raises(Interrupt):
        run(FlakyImages(x, y, fail_at=40 + 20), tmp_path)  # in the second epoch
    model2, trainer2, history2 = run(FlakyImages(x, y), tmp_path)
    _assert_same_run((model, trainer.channel, history), (model2, trainer2.channel, history2))


def test_a_short_run_lowers_the_loss_and_beats_chance(make_images, small_cnn):
    x, y = make_images(96)
    xv, yv = make_images(60, seed=1)
    model = small_cnn()
    trainer = Trainer(
        model, recipe("MIX", eps=1.0), epochs=3, lr=1e-2, batch_size=16, progress=False
    )
    before = trainer.evaluate((xv, yv))
    history = trainer.fit((x, y), val_data=(xv, yv))
    assert before["accuracy"] < 0.6  # 3 classes: chance is 1/3
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["data_term"] > history[0]["data_term"]
    assert history[-1]["val_accuracy"] >= 0.9
    assert history[-1]["val_nll"] < before["nll"]
    # accuracy on the channel's samples, epoch by epoch (0.5, 0.72, 1.0 here): it learns
    assert history[-1]["train_accuracy"] >= 0.8 > history[0]["train_accuracy"]


def test_regression_run_learns_the_noise_and_the_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(160, generator=g)
    torch.manual_seed(0)
    model = regression_mlp(4)
    trainer = Trainer(
        model,
        recipe("MIX", eps=0.2, task="regression"),
        epochs=8,
        lr=1e-2,
        batch_size=32,
        progress=False,
    )
    before = trainer.evaluate((x, y))
    history = trainer.fit((x, y), val_data=(x, y))
    assert history[-1]["val_rmse"] < 0.35 * float(y.std())
    assert history[-1]["val_rmse"] < before["rmse"]
    assert "train_rmse" in history[-1]
    assert abs(model.likelihood.scale.item() - 1.0) > 0.01  # the noise s is learned (init 1)


def test_at_trains_a_deterministic_network(make_images, small_cnn):
    x, y = make_images(64)
    trainer = Trainer(
        small_cnn(bayesian=False),
        recipe("AT", eps=1.0),
        epochs=2,
        lr=1e-2,
        batch_size=16,
        progress=False,
    )
    history = trainer.fit((x, y), val_data=(x, y))
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["kl"] == 0.0
    assert history[-1]["val_accuracy"] > 0.6


def test_schedules_are_recorded(make_images, small_cnn):
    x, y = make_images(16)
    trainer = Trainer(
        small_cnn(),
        SurrogateELBO(),
        epochs=3,
        lr=0.01,
        lr_decay=0.5,
        kl_warmup_epochs=2,
        temperature=1.0,
        batch_size=8,
        progress=False,
    )
    history = trainer.fit((x, y))
    assert [r["kl_weight"] for r in history] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.005, 0.0025])
    assert isinstance(trainer.channel, IdentityChannel)


def test_temperature_scales_the_kl_weight_of_the_loss(make_images, small_cnn):
    x, y = make_images(16)
    trainer = Trainer(
        small_cnn(), SurrogateELBO(), epochs=2, kl_warmup_epochs=1, temperature=0.1,
        batch_size=16, progress=False,
    )  # fmt: skip
    history = trainer.fit((x, y))
    assert [r["kl_weight"] for r in history] == pytest.approx([0.05, 0.1])
    for r in history:  # one batch per epoch: loss = −E log p + T w KL / N
        assert r["loss"] == pytest.approx(-r["data_term"] + r["kl_weight"] * r["kl"] / 16, rel=1e-5)


def test_rho_lr_scale_gives_rho_its_own_step(make_images, small_cnn):
    x, y = make_images(16)
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, recipe("BL"), epochs=1, lr=1e-3, rho_lr_scale=10.0, batch_size=16,
                      progress=False)  # fmt: skip
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([1e-3, 1e-2])
    trainer.fit((x, y))
    # Adam's first step moves every parameter by its learning rate (times sign of the gradient)
    for key, value in model.state_dict().items():
        step = (value - before[key]).abs().median().item()
        assert step == pytest.approx(1e-2 if key.endswith("_rho") else 1e-3, rel=1e-2), key
    one = Trainer(small_cnn(), recipe("BL"), rho_lr_scale=1.0, progress=False)
    assert len(one.optimizer.param_groups) == 1


def test_history_records_the_elbo_and_the_posterior(make_images, small_cnn):
    x, y = make_images(16)
    model = small_cnn()
    history = Trainer(model, recipe("BL"), epochs=2, batch_size=8, progress=False).fit((x, y))
    for r in history:
        assert r["expected_log_likelihood"] == pytest.approx(16 * r["data_term"])
        assert r["elbo"] == pytest.approx(16 * r["data_term"] - r["kl"])
    assert history[-1]["posterior"] == posterior_summary(model)
    assert history[0]["posterior"] != history[-1]["posterior"]
    at = Trainer(small_cnn(bayesian=False), recipe("AT", eps=1.0), epochs=1, progress=False)
    assert "posterior" not in at.fit((x, y))[-1]


def test_validation_is_the_ppd_of_the_trained_model(make_images, small_cnn):
    x, y = make_images(20)
    model = small_cnn(init_sigma=0.1)
    trainer = Trainer(model, recipe("BL"), epochs=1, val_samples=4, seed=3, progress=False)
    got = trainer.evaluate((x, y))
    ppd = PosteriorPredictive(model, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        log_probs = ppd(x)
    assert got["nll"] == pytest.approx(float(nll(log_probs, y)), rel=1e-5)
    assert got["accuracy"] == pytest.approx(float((log_probs.argmax(1) == y).float().mean()))


def test_modes_restored_and_nothing_printed(capsys, make_images, small_cnn):
    x, y = make_images(16)
    model = small_cnn()
    model.eval()
    Trainer(model, recipe("OS", eps=1.0), epochs=1, batch_size=8, progress=False).fit(
        (x, y), val_data=(x, y)
    )
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_checkpoint_of_another_objective_is_refused(tmp_path, make_images, small_cnn):
    x, y = make_images(16)
    Trainer(small_cnn(), recipe("BL"), epochs=1, checkpoint_dir=tmp_path, progress=False).fit(
        (x, y)
    )
    other = Trainer(
        small_cnn(),
        recipe("OS", eps=1.0, num_channel_samples=2),
        epochs=2,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(ValueError, match="objective"):
        other.fit((x, y))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"objective": "MIX"}, TypeError, "Recipe"),
        ({"channel": IdentityChannel()}, ValueError, "channel"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr_decay": 1.5}, ValueError, "lr_decay"),
        ({"kl_warmup_epochs": -1}, ValueError, "kl_warmup_epochs"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"rho_lr_scale": -1.0}, ValueError, "rho_lr_scale"),
        ({"dataset_size": 0}, ValueError, "dataset_size"),
        ({"callbacks": [3]}, TypeError, "callbacks"),
        ({"device": 3}, TypeError, "device"),
    ],
)
def test_constructor_errors(small_cnn, kwargs, error, match):
    args = {"objective": recipe("BL")} | kwargs
    with pytest.raises(error, match=match):
        Trainer(small_cnn(), **args)


def test_fit_errors(make_images, small_cnn):
    x, y = make_images(8)
    trainer = Trainer(small_cnn(), recipe("BL"), epochs=1, progress=False)
    with pytest.raises(TypeError, match="train_data"):
        trainer.fit(x)
    with pytest.raises(ValueError, match="examples"):
        trainer.fit((x, y[:4]))
    with pytest.raises(ValueError, match="dataset_size"):
        Trainer(small_cnn(), recipe("BL"), dataset_size=4, progress=False).fit((x, y))


def test_dataset_size_of_a_loader_follows_its_subset_sampler(make_images, small_cnn):
    from torch.utils.data import SubsetRandomSampler, TensorDataset

    x, y = make_images(40)
    dataset = TensorDataset(x, y)
    trainer = Trainer(small_cnn(), recipe("BL"), epochs=1, progress=False)
    subset = DataLoader(dataset, batch_size=8, sampler=SubsetRandomSampler(range(10)))
    assert trainer._dataset_size(subset) == 10  # was 40: the KL / N under-weighted 4x
    assert trainer._dataset_size(DataLoader(dataset, batch_size=8, shuffle=True)) == 40
    assert trainer._dataset_size(DataLoader(dataset, batch_size=8)) == 40
    trainer.fit(subset)
    assert trainer.history[-1]["epoch"] == 1


def _amo50(small_cnn, seed, **options):
    torch.manual_seed(seed)
    model = small_cnn(seed=seed)
    return model, recipe("AMO50", eps=1.0, input_shape=(1, 12, 12), num_classes=3, **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"adversary_update": "joint", "generator_stride": 2}],
    ids=["alternating", "joint"],
)
def test_amortised_adversary_resumes_exactly(tmp_path, make_images, small_cnn, options):
    # the generator, its Adam moments and step counts checkpoint with the model's state
    x, y = make_images(32)
    model, r = _amo50(small_cnn, 0, **options)
    init = [p.detach().clone() for p in r.channel.components[1].network.parameters()]
    reference = Trainer(model, r, progress=False, **CONFIG)
    reference.fit((x, y))
    model2, r2, history = _interrupted_and_resumed(
        lambda seed: _amo50(small_cnn, seed, **options), x, y, tmp_path, fresh_seed=123
    )
    _assert_same_run((model, r.channel, reference.history), (model2, r2.channel, history))
    adam = r2.channel.components[1].optimizer.state_dict()["state"]
    assert adam and int(adam[0]["step"]) == 3 * 2  # 3 epochs of 2 batches
    trained = r.channel.components[1].network.parameters()
    assert any(not torch.equal(a, p) for a, p in zip(init, trained, strict=True))
    assert ("adversary_loss" in history[-1]) == (not options)  # joint: no own loss pass


class _CountingNet(torch.nn.Module):
    """Counts the examples each forward pass of ``net`` sees."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.net(x)


@pytest.mark.parametrize(
    ("update", "passes"),
    [("alternating", [16] * 4), ("joint", [16, 16])],
)
def test_joint_update_costs_one_gradient_pass_and_the_training_pass(
    make_images, small_cnn, update, passes
):
    """Per batch of 16 the joint amortised adversary runs the model twice (the input gradient
    at x and the training pass at x'), the alternating one four times (its adversary step
    adds a gradient pass and a forward pass on its own x')."""
    x, y = make_images(16)
    torch.manual_seed(0)
    model = _CountingNet(small_cnn(seed=0))
    r = recipe("AMO", eps=1.0, input_shape=(1, 12, 12), num_classes=3, adversary_update=update)
    Trainer(model, r, epochs=1, batch_size=16, progress=False).fit((x, y))
    assert model.calls == passes


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_amortised_adversary_trains_a_regression_mlp(update):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(96, generator=g)
    torch.manual_seed(0)
    model = regression_mlp(4)
    r = recipe("AMO50", eps=0.2, task="regression", input_shape=(4,), adversary_update=update)
    gen = r.channel.components[1].network
    before = [p.detach().clone() for p in gen.parameters()]
    trainer = Trainer(model, r, epochs=4, lr=1e-2, batch_size=32, progress=False)
    history = trainer.fit((x, y), val_data=(x, y))
    assert history[-1]["val_rmse"] < history[0]["val_rmse"]
    assert ("adversary_loss" in history[-1]) == (update == "alternating")
    assert any(not torch.equal(a, p) for a, p in zip(before, gen.parameters(), strict=True))
