"""``bench/gpu_check.py``: says so and exits 0 without CUDA; runs its checks on a GPU."""

from __future__ import annotations

import json

import pytest
import torch

from .conftest import _load_script


def test_without_cuda_it_says_so_and_exits_0(tmp_path, monkeypatch, capsys):
    gpu_check = _load_script("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # nothing measured, nothing written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_check_lands_in_the_json(tmp_path):
    gpu_check = _load_script("gpu_check")
    argv = ["--out", str(tmp_path), "--repeats", "2", "--matmul-size", "1024", "--skip-mnist"]
    gpu_check.main(argv)
    report = json.loads((tmp_path / "default" / "gpu_check.json").read_text())
    assert set(report) >= {
        "matmul_peak_tflops",
        "reactive_kernel",
        "posterior_draws_vmap_vs_loop",
        "memory_layouts",
    }
    assert "error" not in report["memory_layouts"]
