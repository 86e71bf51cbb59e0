"""The bnn_core perf section: a quick run, and its bayesian-torch comparison."""

from __future__ import annotations

import builtins
import math

import pytest
import torch

import bnn_core as bc
from perf_sections import bnn_core as section
from perf_sections.base import Context

KEYS = {
    "bnn_core.cnn.one_draw_vs_det",
    "bnn_core.cnn.ten_draws_loop_vs_det",
    "bnn_core.cnn.ten_draws_vmap_vs_det",
    "bnn_core.cnn.ten_draws_auto_vs_det",
    "bnn_core.cnn.ten_draws_ours_vs_bayesian_torch",
}


def _without_bayesian_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object):
        if name.startswith("bayesian_torch"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_quick_run_reports_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_bayesian_torch(monkeypatch)  # the comparison is tested on its own below
    figures = section.run(Context(device=torch.device("cpu"), quick=True, repeats=1))
    by_key = {f.key: f for f in figures}
    assert KEYS <= set(by_key)
    for key in KEYS - {"bnn_core.cnn.ten_draws_ours_vs_bayesian_torch"}:
        assert math.isfinite(by_key[key].value) and by_key[key].value > 0, key
    skipped = by_key["bnn_core.cnn.ten_draws_ours_vs_bayesian_torch"]
    assert math.isnan(skipped.value) and "not installed" in skipped.note


def test_bayesian_torch_missing_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_bayesian_torch(monkeypatch)
    assert section._bayesian_torch_cnn(bc.mnist_cnn(bayesian=False)) is None


def test_bayesian_torch_twin_is_the_same_architecture() -> None:
    pytest.importorskip("bayesian_torch", reason="bayesian-torch: uv run --group compare")
    torch.manual_seed(0)
    det = bc.mnist_cnn(bayesian=False)
    bt = section._bayesian_torch_cnn(det)
    assert bt is not None
    # det itself is untouched (a deep copy was converted)
    assert all(type(m).__module__.startswith("torch") for m in det.modules())
    names = [type(m).__name__ for m in bt]
    assert names == [
        "Conv2dReparameterization",
        "ReLU",
        "AvgPool2d",
        "Conv2dReparameterization",
        "ReLU",
        "AvgPool2d",
        "Flatten",
        "LinearReparameterization",
    ]
    x = torch.rand(4, 1, 28, 28)
    out1, out2 = bt(x), bt(x)
    assert out1.shape == (4, 10)
    assert not torch.equal(out1, out2)  # fresh weights per forward: it samples
    # bayesian-torch draws ρ ~ N(posterior_rho_init, 0.1): σ around softplus(-4.6) = 0.01
    sigma = torch.nn.functional.softplus(bt[0].rho_kernel.detach())
    assert 0.008 < float(sigma.mean()) < 0.012


def test_bayesian_torch_figures_when_installed() -> None:
    pytest.importorskip("bayesian_torch", reason="bayesian-torch: uv run --group compare")
    figures = section.run(Context(device=torch.device("cpu"), quick=True, repeats=1))
    by_key = {f.key: f for f in figures}
    for key in (
        "bnn_core.cnn.bayesian_torch.one_draw_vs_det",
        "bnn_core.cnn.bayesian_torch.ten_draws_loop_vs_det",
        "bnn_core.cnn.one_draw_ours_vs_bayesian_torch",
        "bnn_core.cnn.ten_draws_ours_vs_bayesian_torch",
    ):
        assert math.isfinite(by_key[key].value) and by_key[key].value > 0, key
