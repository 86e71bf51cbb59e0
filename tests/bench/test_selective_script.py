"""Smoke tests of ``bench/selective.py`` on tiny models and a tiny written Fashion-MNIST."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("mlxtend")

from .conftest import _load_script  # noqa: E402

TINY = [
    "--no-progress",
    "--threads",
    "1",
    "--no-verify",
    "--models",
    "BL",
    "MIX",
    "onPure",
    "offPure",
    "--eps",
    "1.0",
    "--set",
    "test_size=6",
    "eval_samples=2",
    "attack_steps=2",
    "epochs=1",
    "train_size=200",
    "reactive_samples=2",
]


def write_idx(path, array: np.ndarray) -> None:
    """An uncompressed IDX file (unsigned bytes), the format of the (Fashion-)MNIST files."""
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype="u1").tobytes())


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A data root holding a 16-image Fashion-MNIST (written here: no download)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    raw = root / "FashionMNIST" / "raw"
    for split, n in (("train", 4), ("t10k", 16)):
        write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fashion_root):
    out = tmp_path_factory.mktemp("selective")
    selective = _load_script("selective")
    argv = ["--out", str(out), "--run", "tiny", "--data-dir", str(fashion_root), *TINY]
    threads = torch.get_num_threads()
    assert selective.main(argv) == 0
    yield selective, out / "tiny", argv
    torch.set_num_threads(threads)


def test_writes_rows_tables_figures_and_comparison(tiny_run):
    selective, run, _ = tiny_run
    payload = json.loads((run / "results.json").read_text())
    assert {"config", "provenance", "wall_times_s", "rows"} <= set(payload)
    rows = payload["rows"]
    models = {r["model"] for r in rows}
    assert models == {"BL", "MIX", "onPure", "offPure", "onPure (adaptive)",
                      "offPure (adaptive)"}  # fmt: skip
    assert {(r["attack"], r["eps"]) for r in rows} == {("Clean", 0.0), (selective.ATTACK, 1.0)}
    assert {r["seed"] for r in rows} == {0, 1}
    for r in rows:
        assert r["n"] == 12  # 6 MNIST + 6 Fashion-MNIST
        assert 0.0 <= r["selective_accuracy"] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
        # half of 12 kept; the kept Fashion images are errors, so accuracy <= 1 - their share
        assert r["selective_accuracy"] <= 1.0 - r["kept_ood_fraction"] + 1e-9
        assert math.isfinite(r["entropy_in"]) and math.isfinite(r["entropy_out"])
    tables = (run / "tables.md").read_text()
    assert "Figure 5: selective accuracy" in tables and "AUROC" in tables
    assert (run / "fig5_selective_accuracy.png").exists()
    assert (run / "fig5_detection_auroc.png").exists()
    assert "Figure 5" in (run / "paper_vs_ours.md").read_text()


def test_reuses_a_matching_mnist_run_and_refuses_another(tiny_run, tmp_path, monkeypatch):
    selective, run, argv = tiny_run
    # a bench/mnist.py run of the same training settings: the tiny run's models and config
    source = tmp_path / "mnist-run"
    (source / "models").mkdir(parents=True)
    for f in (run / "models").iterdir():
        (source / "models" / f.name).write_bytes(f.read_bytes())
    training = json.loads((run / "config.json").read_text())["training_settings"]
    (source / "config.json").write_text(json.dumps(training))

    import benchlib.experiment as experiment

    def no_training(*args, **kwargs):
        raise AssertionError("a model of the --from-run run was retrained")

    monkeypatch.setattr(experiment.Trainer, "fit", no_training)
    again = [*argv, "--fresh", "--from-run", str(source)]
    assert selective.main(again) == 0
    (source / "config.json").write_text(json.dumps({**training, "epochs": 7}))
    with pytest.raises(SystemExit, match="epochs"):
        selective.main(again)


def test_missing_fashion_mnist_stops_with_the_loader_message(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVBAYES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    selective = _load_script("selective")
    with pytest.raises(SystemExit, match="FashionMNIST"):
        selective.main(["--out", str(tmp_path), "--data-dir", str(tmp_path), *TINY])
