"""adv-channels installs and works on its own: wheels, a fresh venv, no bnn-core (issue 4).

Builds the wheels of adv-attacks and adv-channels, creates a fresh virtual environment,
installs the two wheels plus torch (the running interpreter's exact versions, from uv's
cache: hardlinks, no download; online only if the cache lacks them) without bnn-core, and
samples from a one-step channel and a mixture on a plain ``nn.Sequential`` CNN there.
About 10 s on 2 CPU cores, so it runs in the default suite.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UV = os.environ.get("UV") or shutil.which("uv")

pytestmark = pytest.mark.skipif(UV is None, reason="needs the uv executable")

SCRIPT = """
import importlib.util, sys
assert importlib.util.find_spec("bnn_core") is None, "bnn_core must not be installed"
try:
    import bnn_core  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("bnn_core is importable")
import torch
from torch import nn
import adv_channels
from adv_channels import OneStepChannel, mix_channel
assert adv_channels.__file__.startswith(sys.prefix), adv_channels.__file__
net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
x, y = torch.rand(10, 1, 8, 8), torch.randint(0, 10, (10,))
g = torch.Generator().manual_seed(0)
a = OneStepChannel(eps=1.0, sigma=0.1).sample(x, y, net, generator=g)
mix = mix_channel(eps=1.0, sigma=0.1)
b, k = mix.sample_with_components(x, y, net, generator=g)
assert a.shape == b.shape == x.shape and torch.isfinite(a).all() and torch.isfinite(b).all()
assert torch.bincount(k, minlength=4).tolist() == [4, 2, 2, 2]
assert "bnn_core" not in sys.modules
print("standalone-ok", torch.__version__)
"""


def _uv(*args: str, cwd: Path = ROOT, online_fallback: bool = True) -> str:
    """Run uv offline (from the cache); retry online if that fails and a fallback is allowed."""
    cmd = [UV, *args]
    res = subprocess.run([*cmd, "--offline"], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0 and online_fallback:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    for package in ("adv-attacks", "adv-channels"):
        _uv("build", "--package", package, "--wheel", "--no-sources", "--out-dir", str(out))
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {"adv_attacks", "adv_channels"}, found
    return found


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode()


def test_wheel_dependencies_are_adv_attacks_and_torch_only(wheels):
    meta = _metadata(wheels["adv_channels"])
    requires = sorted(
        re.split(r"[\s<>=!~;\[]", line.split(":", 1)[1].strip())[0].lower()
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:")
    )
    assert requires == ["adv-attacks", "torch"], meta
    assert not any("bnn" in line for line in meta.splitlines() if line.startswith("Requires"))
    assert "Name: adv-channels" in meta
    files = zipfile.ZipFile(wheels["adv_channels"]).namelist()
    assert "adv_channels/py.typed" in files and "adv_channels/mixture.py" in files


def _requirements(path: Path) -> None:
    """adv-channels' locked third-party closure, pinned to the running interpreter's versions."""
    exported = _uv(
        "export",
        "--frozen",
        "--package",
        "adv-channels",
        "--no-default-groups",
        "--no-emit-workspace",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
        online_fallback=False,
    )
    lines = []
    for line in exported.splitlines():
        spec, _, marker = line.partition(";")
        name = spec.split("==")[0].strip()
        if not name or name.startswith(("#", "-")):
            continue
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = spec.split("==")[1].strip()
        lines.append(f"{name}=={version}" + (f" ;{marker}" if marker else ""))
    assert any(line.startswith("torch==") for line in lines)
    assert not any(line.startswith("bnn") for line in lines)
    path.write_text("\n".join(lines) + "\n")


def test_installs_and_samples_in_a_fresh_venv_without_bnn_core(wheels, tmp_path):
    req = tmp_path / "requirements.txt"
    _requirements(req)
    venv = tmp_path / "venv"
    _uv("venv", str(venv), "--python", sys.executable, "--quiet")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _uv(
        "pip",
        "install",
        "--python",
        str(python),
        "--no-deps",
        "-r",
        str(req),
        str(wheels["adv_attacks"]),
        str(wheels["adv_channels"]),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    res = subprocess.run(
        [str(python), "-I", "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "standalone-ok" in res.stdout
