from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from advbayes_data import ChecksumError, DatasetNotFoundError, load_cifar10, read_cifar_batch
from advbayes_data.cifar import CIFAR10_SOURCE

NAMES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]


def _write_batches(folder, n=3, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [*NAMES, "test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_the_python_batches(tmp_path, protocol):
    written = _write_batches(tmp_path / "cifar-10-batches-py", protocol=protocol)
    data = load_cifar10(tmp_path, verify=False)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    first = written["data_batch_1"][0][0]
    # channel-major rows: the first 1024 values are the red plane, row by row
    np.testing.assert_array_equal(data.x_train[0, 0].numpy() * 255, first[:1024].reshape(32, 32))
    np.testing.assert_array_equal(data.x_train[0, 2].numpy() * 255, first[2048:].reshape(32, 32))
    assert data.y_test.tolist() == written["test_batch"][1]
    assert data.y_train[3:6].tolist() == written["data_batch_2"][1]
    assert data.classes[0] == "airplane"


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_the_unpickler_only_rebuilds_arrays(tmp_path, capsys):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load .*print"):
        read_cifar_batch(path)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, "3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 labels"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, r"\[0, 9\]"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "keys"),
        ([1, 2], "dict"),
    ],
)
def test_malformed_batches(tmp_path, batch, match):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=match):
        read_cifar_batch(path)


def test_verify_and_offline(tmp_path):
    _write_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(ChecksumError, match="data_batch_1"):
        load_cifar10(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path / "empty")
    message = str(info.value)
    assert "cifar-10-batches-py/" in message and "cifar-10-python.tar.gz" in message
    assert "test_batch" in message


def test_md5s_match_torchvision(torchvision_constants):
    constants = torchvision_constants("cifar", "CIFAR10")
    expected = dict(constants["train_list"] + constants["test_list"])
    assert len(expected) == 6
    assert {s.filename: s.digests[s.filename]["md5"] for s in CIFAR10_SOURCE.files} == expected
    assert all(s.urls == (constants["url"],) for s in CIFAR10_SOURCE.files)
    assert CIFAR10_SOURCE.layouts[0] == constants["base_folder"]
