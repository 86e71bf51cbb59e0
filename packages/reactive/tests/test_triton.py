"""The Triton shim's gate and the kernel's autotune configurations."""

from __future__ import annotations

import pytest
import torch

from adv_reactive import _triton

pytestmark = pytest.mark.skipif(not _triton.TRITON_AVAILABLE, reason="needs Triton")


def test_gate_follows_device_and_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not _triton.interpreting()
    assert not _triton.kernel_can_run(torch.device("cpu"))
    assert _triton.kernel_can_run(torch.device("cuda"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _triton.interpreting()
    assert _triton.kernel_can_run(torch.device("cpu"))


def test_autotune_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    from adv_reactive import _kernels

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("ADV_REACTIVE_AUTOTUNE", raising=False)
    configs = _kernels._configs()
    assert len(configs) > 1
    for config in configs:
        kw = config.kwargs
        assert _kernels.BLOCK_N_MULTIPLE % kw["BLOCK_N"] == 0
        assert kw["BLOCK_B"] >= 16 and kw["BLOCK_D"] >= 16  # tl.dot's minimum
    monkeypatch.setenv("ADV_REACTIVE_AUTOTUNE", "0")
    assert len(_kernels._configs()) == 1
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    (small,) = _kernels._configs()
    assert small.kwargs["BLOCK_B"] == 16
