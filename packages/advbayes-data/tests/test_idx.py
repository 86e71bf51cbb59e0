from __future__ import annotations

import gzip

import numpy as np
import pytest

from advbayes_data import read_idx


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize(
    ("code", "dtype", "shape"),
    [
        pytest.param(0x08, np.uint8, (5, 28, 28), id="uint8-images"),
        pytest.param(0x08, np.uint8, (7,), id="uint8-labels"),
        pytest.param(0x09, np.int8, (3, 4), id="int8"),
        pytest.param(0x0B, np.int16, (2, 3), id="int16"),
        pytest.param(0x0C, np.int32, (4,), id="int32"),
        pytest.param(0x0D, np.float32, (2, 2, 2), id="float32"),
        pytest.param(0x0E, np.float64, (3,), id="float64"),
    ],
)
def test_round_trip(tmp_path, write_idx, gz, code, dtype, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        array = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    else:
        array = rng.standard_normal(shape).astype(dtype)
    path = write_idx(tmp_path / "data.idx", array, gz=gz, code=code)
    out = read_idx(path)
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_big_endian_values_by_hand(tmp_path):
    # magic 0x00000C01 (int32, 1 dim), size 2, values 258 and -1, big-endian
    raw = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 2, 0xFF, 0xFF, 0xFF, 0xFF])
    path = tmp_path / "by-hand-idx1"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_idx(path), [258, -1])


def test_gzip_is_recognised_by_content_not_name(tmp_path, write_idx):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = write_idx(tmp_path / "no-suffix", array, gz=True)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        pytest.param(b"\x00\x00", "shorter than the magic", id="too-short"),
        pytest.param(bytes([1, 0, 8, 1, 0, 0, 0, 0]), "magic number", id="nonzero-lead"),
        pytest.param(bytes([0, 0, 0x0A, 1, 0, 0, 0, 0]), "magic number", id="unknown-type"),
        pytest.param(bytes([0, 0, 8, 0]), "0 dimensions", id="zero-dims"),
        pytest.param(bytes([0, 0, 8, 3, 0, 0, 0, 1]), "truncated IDX header", id="short-header"),
        pytest.param(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "payload is 2 bytes", id="truncated"),
        pytest.param(bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "expected 1", id="trailing-bytes"),
    ],
)
def test_malformed_files_are_rejected_naming_the_file(tmp_path, raw, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_is_a_value_error(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))[:-6])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)
