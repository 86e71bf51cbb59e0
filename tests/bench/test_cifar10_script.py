"""Smoke tests of ``bench/cifar10.py`` on tiny CIFAR-format files the test writes."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import BENCH, _load_script

NAMES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]

TINY = [
    "--no-progress",
    "--set",
    "epochs=1",
    "batch_size=16",
    "train_size=none",
    "test_size=6",
    "num_test_sets=2",
    "eval_samples=2",
    "attack_steps=2",
    "at_pgd_steps=2",
    "resnet_width=4",
]


SMOKE = ["--arch", "cnn", "--models", "BL", "AT", "--attacks", "Clean", "PGD"]
"""The default suite's run: the shallow CNN, a Bayesian and a point-estimate model, two
attacks (the ResNet-18 trains a step below; the slow test runs every network, model and
attack through the script)."""


def write_cifar(root, n=8):
    """CIFAR-10's python batches (torchvision's layout), ``n`` random images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*NAMES, "test_batch"]:
        m = 2 * n if name == "test_batch" else n
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, m).tolist(),
            b"data": rng.integers(0, 256, (m, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


@contextlib.contextmanager
def unverified(script):
    """Skip the md5 check: the files are the test's own (the loader checks by default)."""
    real = script.load_cifar10
    script.load_cifar10 = lambda data_dir, download: real(data_dir, verify=False)
    try:
        yield
    finally:
        script.load_cifar10 = real


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    data = write_cifar(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("cifar10")
    cifar = _load_script("cifar10")
    argv = ["--out", str(out), "--run", "tiny", "--data-dir", str(data), *TINY]
    with unverified(cifar):
        assert cifar.main([*argv, *SMOKE]) == 0
    return cifar, out / "tiny"


def test_writes_results_tables_and_plot(tiny_run):
    cifar, run = tiny_run
    payload = json.loads((run / "results.json").read_text())
    rows = payload["rows"]
    assert {r["model"] for r in rows} == {"cnn-BL", "cnn-AT"}
    assert {r["attack"] for r in rows} == {"Clean", "PGD"}
    cfg = payload["config"]
    # attacked at the training strength and at a strictly larger test strength
    assert {r["eps"] for r in rows if r["attack"] != "Clean"} == {cfg["train_eps"], cfg["test_eps"]}
    assert cfg["test_eps"] > cfg["train_eps"]
    assert {r["seed"] for r in rows} == {0, 1} and all(r["n"] == 6 for r in rows)
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["nll"] >= 0.0
    tables = (run / "tables.md").read_text()
    assert f"accuracy at ε = {cfg['test_eps']:g}" in tables and "cnn-AT" in tables
    assert (run / "accuracy_pgd.png").stat().st_size > 0
    assert len(payload["training_history"]["cnn-BL"]) == 1


def test_models_are_saved_and_load_with_their_layout(tiny_run):
    from bnn_core import is_bayesian, load_model

    _, run = tiny_run
    for arch in ("cnn",):
        bl = load_model(run / "models" / f"{arch}-BL.pt")
        at = load_model(run / "models" / f"{arch}-AT.pt")
        assert is_bayesian(bl) and not is_bayesian(at)  # AT is the point estimate
        assert bl.bnn_core_config["kwargs"]["memory_format"] in ("channels_last", "contiguous")
        assert bl.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["cnn", "resnet18"])
def test_each_network_builds_trains_a_step_and_saves_and_loads(arch, tmp_path):
    from bnn_core import load_model, sample_mode, save_model
    from robust_vi import Trainer

    cifar = _load_script("cifar10")
    profile = cifar._override(cifar.PROFILES["quick"], ["resnet_width=4"])
    model = cifar.build(arch, "MIX", profile)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = cifar.synthetic(8, 0, 0)
    augmented = cifar.Augmented(data["x_train"], data["y_train"], seed=0)
    trainer = Trainer(model, cifar.recipes(profile)["MIX"], epochs=1, batch_size=8, progress=False)
    trainer.fit(augmented)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    save_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt").eval()
    x = torch.rand(2, 3, 32, 32)
    with sample_mode(model.eval(), "mean"), sample_mode(loaded, "mean"):
        torch.testing.assert_close(loaded(x), model(x))


def test_augmentation_crops_and_flips_within_the_padded_image():
    cifar = _load_script("cifar10")
    x = torch.arange(3 * 32 * 32, dtype=torch.float32).view(1, 3, 32, 32) + 1
    aug = cifar.Augmented(x, torch.zeros(1, dtype=torch.int64), seed=0)
    seen = set()
    for _ in range(20):
        img, _ = aug[0]
        assert img.shape == (3, 32, 32)
        # every pixel is the padding's 0 or a pixel of the image (possibly mirrored)
        assert set(img.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
        seen.add(img.sum().item())
    assert len(seen) > 1  # the crops/flips vary between visits


def test_rerun_reuses_models_and_rows(tiny_run):
    cifar, run = tiny_run
    before = (run / "rows.jsonl").read_text()
    models = {p.name: p.stat().st_mtime_ns for p in (run / "models").iterdir()}
    data = run.parent.parent / "rerun-data"
    write_cifar(data)
    with unverified(cifar):
        argv = ["--out", str(run.parent), "--run", "tiny", "--data-dir", str(data), *TINY]
        assert cifar.main([*argv, *SMOKE]) == 0
    assert (run / "rows.jsonl").read_text() == before
    assert {p.name: p.stat().st_mtime_ns for p in (run / "models").iterdir()} == models


def test_offline_without_data_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBAYES_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cifar = _load_script("cifar10")
    with pytest.raises(Exception) as info:
        cifar.main(["--out", str(tmp_path), "--data-dir", str(tmp_path / "empty"), *TINY])
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-py" in message


def test_time_epoch_extrapolates_on_synthetic_data(tmp_path):
    cifar = _load_script("cifar10")
    argv = ["--out", str(tmp_path), "--run", "t", "--time-epoch", "1", "--arch", "cnn"]
    assert cifar.main([*argv, "--models", "BL", "--set", "batch_size=8"]) == 0
    timing = json.loads((tmp_path / "t" / "timing.json").read_text())
    step = timing["cnn/BL"]
    assert step["epoch_s_extrapolated"] == pytest.approx(step["s_per_step"] * 50_000 / 8, rel=0.01)


def test_test_strength_must_exceed_the_training_strength(tmp_path):
    cifar = _load_script("cifar10")
    with pytest.raises(SystemExit, match="strictly larger"):
        cifar.main(["--out", str(tmp_path), "--synthetic", "16", "--set", "test_eps=0.5"])


@pytest.mark.slow
def test_every_model_and_attack(tmp_path):
    data = write_cifar(tmp_path / "data")
    cifar = _load_script("cifar10")
    argv = ["--out", str(tmp_path), "--run", "all", "--data-dir", str(data), *TINY]
    with unverified(cifar):
        assert cifar.main([*argv, "--arch", "cnn", "resnet18", "--set", "augment=true"]) == 0
    rows = json.loads((tmp_path / "all" / "results.json").read_text())["rows"]
    assert {r["model"].split("-", 1)[1] for r in rows} == set(cifar.MODELS)
    assert {r["attack"] for r in rows} == set(cifar.ATTACKS)


@pytest.mark.slow
def test_runs_under_torchrun_with_two_processes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = ["--out", str(tmp_path), "--run-name", "ddp", "--synthetic", "64", "--arch", "cnn"]
    cmd = [*head, str(BENCH / "cifar10.py"), *args, "--models", "BL", *TINY]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert payload["config"]["world_size"] == 2
