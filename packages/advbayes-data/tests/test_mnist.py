from __future__ import annotations

import numpy as np
import pytest
import torch

import advbayes_data.mnist as mnist_module
from advbayes_data import (
    ENV_VAR,
    ChecksumError,
    DatasetNotFoundError,
    cache_dir,
    load_fashion_mnist,
    load_mnist,
)
from advbayes_data.mnist import FASHION_MNIST_SOURCE, MNIST_SOURCE

STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


@pytest.mark.parametrize(
    ("layout", "gz"),
    [("MNIST/raw", True), ("MNIST/raw", False), ("MNIST", True)],
    ids=["raw-gz", "raw-plain", "flat-gz"],
)
def test_loads_idx_files_as_unit_interval_tensors(tmp_path, write_mnist, layout, gz):
    arrays = write_mnist(tmp_path / layout, gz=gz)
    data = load_mnist(tmp_path, verify=False)
    assert data.name == "mnist" and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    expected = arrays["train-images-idx3-ubyte"].astype(np.float32)[:, None] / 255.0
    np.testing.assert_array_equal(data.x_train.numpy(), expected)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_reads_its_own_folder_only(tmp_path, write_mnist):
    write_mnist(tmp_path / "MNIST" / "raw", seed=1)
    with pytest.raises(DatasetNotFoundError, match="FashionMNIST"):
        load_fashion_mnist(tmp_path, verify=False)
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", seed=2)
    data = load_fashion_mnist(tmp_path, verify=False)
    assert data.name == "fashion-mnist" and data.classes[0] == "T-shirt/top"
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])


def test_verify_rejects_files_that_are_not_the_published_ones(tmp_path, write_mnist):
    write_mnist(tmp_path / "MNIST" / "raw")
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)


def test_verify_checks_the_counts_where_no_digest_is_known(tmp_path, write_mnist):
    # uncompressed FashionMNIST files have no published digest: a 6-image set was accepted
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    with pytest.raises(ChecksumError, match="6 training images, the published FashionMNIST"):
        load_fashion_mnist(tmp_path)
    assert load_fashion_mnist(tmp_path, verify=False).x_train.shape[0] == 6


def test_inconsistent_files_are_value_errors(tmp_path, write_idx, write_mnist):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))  # 6 images
    with pytest.raises(ValueError, match="one per image"):
        load_mnist(tmp_path, verify=False)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(6, 10, np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        load_mnist(tmp_path, verify=False)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((6, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        load_mnist(tmp_path, verify=False)


def test_offline_without_files_says_what_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "mine")
    message = str(info.value)
    for stem in STEMS:
        assert f"{stem}.gz" in message
        assert f"https://ossci-datasets.s3.amazonaws.com/mnist/{stem}.gz" in message
    for needle in (
        "MNIST/raw/",
        str(tmp_path / "mine"),
        "--data-dir",
        str(tmp_path / "env"),
        ENV_VAR,
        str(cache_dir()),
        "download=True",
    ):
        assert needle in message, needle


@pytest.mark.slow
def test_download_with_no_network_fails_with_the_same_help(tmp_path, capsys):
    # The conftest blocks sockets: torchvision's real download fails at once (importing
    # torchvision is what makes this slow).
    pytest.importorskip("torchvision")
    with pytest.raises(DatasetNotFoundError, match="download failed") as info:
        load_mnist(tmp_path, download=True)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "--data-dir" in str(info.value)


def test_failed_torchvision_download_gives_the_same_help(monkeypatch, tmp_path):
    def offline(class_name, root):  # what torchvision raises once every mirror failed
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error>")

    monkeypatch.setattr(mnist_module, "torchvision_download", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed: RuntimeError") as info:
        load_mnist(tmp_path, download=True)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "--data-dir" in str(info.value)


def test_download_writes_under_the_data_dir_and_is_then_read(monkeypatch, tmp_path, write_mnist):
    calls = []

    def fake_download(class_name, root):
        calls.append((class_name, root))
        write_mnist(root / class_name / "raw", seed=4)

    monkeypatch.setattr(mnist_module, "torchvision_download", fake_download)
    data = load_mnist(tmp_path / "d", download=True, verify=False)
    assert calls == [("MNIST", tmp_path / "d")] and data.x_train.shape[0] == 6
    load_fashion_mnist(download=True, verify=False)
    assert calls[-1] == ("FashionMNIST", cache_dir())


@pytest.mark.parametrize(
    ("source", "class_name"), [(MNIST_SOURCE, "MNIST"), (FASHION_MNIST_SOURCE, "FashionMNIST")]
)
def test_sources_match_torchvision(torchvision_constants, source, class_name):
    constants = torchvision_constants("mnist", class_name)
    resources, mirrors = constants["resources"], constants["mirrors"]
    assert len(resources) == 4
    for spec, (filename, md5) in zip(source.files, resources, strict=True):
        assert spec.filename == filename
        assert spec.digests[filename]["md5"] == md5
        assert list(spec.urls) == [f"{mirror}{filename}" for mirror in mirrors]
