"""Shared fixtures for advbayes-data: an isolated environment, no network, file writers."""

from __future__ import annotations

import gzip
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_REPO = Path(__file__).resolve().parents[3]
_REAL = os.environ.get("ADVBAYES_DATA", "").strip()
REAL_DATA_DIR = Path(_REAL) if _REAL else _REPO.parent / "shared" / "data"

WINE_HEADER = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";'
    '"free sulfur dioxide";"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";'
    '"quality"'
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $ADVBAYES_DATA, a private user cache, and no network (downloads must fail fast)."""
    monkeypatch.delenv("ADVBAYES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is disabled in the advbayes-data tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _torchvision_constants(module: str, class_name: str) -> dict[str, object]:
    """Literal class attributes of a torchvision dataset, read from its source (importing
    torchvision takes ~10 s on this machine)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchvision is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / f"{module}.py"
    tree = ast.parse(source.read_text())
    found: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.Assign) and len(item.targets) == 1:
                    target = item.targets[0]
                    if isinstance(target, ast.Name):
                        try:
                            found[target.id] = ast.literal_eval(item.value)
                        except ValueError:
                            pass
    return found


@pytest.fixture
def torchvision_constants() -> Callable[[str, str], dict[str, object]]:
    return _torchvision_constants


@pytest.fixture
def real_data_dir() -> Path:
    """The shared offline copies ($ADVBAYES_DATA or ../shared/data); skip when absent."""
    if not (REAL_DATA_DIR / "uci").is_dir() and not (REAL_DATA_DIR / "MNIST").is_dir():
        pytest.skip(f"no real data copies at {REAL_DATA_DIR}")
    return REAL_DATA_DIR


def _write_idx(path: Path, array: np.ndarray, *, gz: bool | None = None, code: int = 0x08) -> Path:
    """Write ``array`` as IDX (big-endian), gzip-compressed when the name ends in .gz."""
    dtypes = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=dtypes[code]).tobytes()
    if gz if gz is not None else path.name.endswith(".gz"):
        payload = gzip.compress(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


@pytest.fixture
def write_idx() -> Callable[..., Path]:
    return _write_idx


def _write_mnist(
    folder: Path, *, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0
):
    """Tiny MNIST-format files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        _write_idx(folder / (f"{stem}.gz" if gz else stem), array)
    return arrays


@pytest.fixture
def write_mnist() -> Callable[..., dict[str, np.ndarray]]:
    return _write_mnist


def _write_wine(path: Path, rows: np.ndarray) -> Path:
    """A Wine Quality file: semicolon-separated, quoted header, 12 columns."""
    lines = [WINE_HEADER] + [";".join(f"{v:g}" for v in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def write_wine() -> Callable[[Path, np.ndarray], Path]:
    return _write_wine


def wine_rows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.round(rng.uniform(0.0, 20.0, (n, 12)), 3)
    rows[:, -1] = rng.integers(3, 9, n)
    return rows


@pytest.fixture
def make_wine_rows() -> Callable[..., np.ndarray]:
    return wine_rows


def _write_enb_xlsx(path: Path, rows: np.ndarray) -> Path:
    """An ENB2012-style workbook: Greek sheet name, header, rows, trailing empty cells/rows."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Φύλλο1"
    sheet.append(["X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "Y1", "Y2"])
    for row in rows:
        sheet.append([float(v) for v in row])
    sheet.cell(row=len(rows) + 5, column=12, value=None)  # extends the used range, empty
    workbook.create_sheet("Φύλλο2")
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


@pytest.fixture
def write_enb_xlsx() -> Callable[[Path, np.ndarray], Path]:
    return _write_enb_xlsx


def _write_cal_housing(path: Path, rows: np.ndarray) -> Path:
    """cal_housing.data: 9 comma-separated columns with 6 decimals, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(f"{v:.6f}" for v in row) for row in rows) + "\n")
    return path


@pytest.fixture
def write_cal_housing() -> Callable[[Path, np.ndarray], Path]:
    return _write_cal_housing
