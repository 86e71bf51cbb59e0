from __future__ import annotations

import pytest
import torch

from advbayes_data import ClassificationData


def _data(n_train=100, n_test=50):
    g = torch.Generator().manual_seed(0)
    return ClassificationData(
        "toy",
        torch.rand(n_train, 1, 4, 4, generator=g),
        torch.arange(n_train) % 5,
        torch.rand(n_test, 1, 4, 4, generator=g),
        torch.arange(n_test) % 5,
        tuple("abcde"),
    )


def test_subset_is_stratified_seeded_and_consistent():
    data = _data()
    small = data.subset(20, 10, seed=1)
    assert small.x_train.shape == (20, 1, 4, 4) and small.x_test.shape == (10, 1, 4, 4)
    assert torch.bincount(small.y_train).tolist() == [4] * 5
    assert torch.bincount(small.y_test).tolist() == [2] * 5
    # images keep their labels: each kept row is a row of the original with the same label
    for x, y in zip(small.x_train, small.y_train, strict=True):
        match = (data.x_train == x).flatten(1).all(1).nonzero().flatten()
        assert len(match) == 1 and data.y_train[match[0]] == y
    again = data.subset(20, 10, seed=1)
    assert torch.equal(again.x_train, small.x_train) and torch.equal(again.x_test, small.x_test)
    assert not torch.equal(data.subset(20, 10, seed=2).x_train, small.x_train)


def test_subset_none_keeps_everything_and_errors():
    data = _data()
    assert data.subset(n_test=5).x_train is data.x_train
    with pytest.raises(ValueError, match="size"):
        data.subset(101)


def test_properties_and_to():
    data = _data()
    assert data.num_classes == 5 and data.input_shape == (1, 4, 4)
    moved = data.to("cpu")
    assert moved.x_train.device.type == "cpu" and moved.classes == data.classes


def test_validation():
    good = _data()
    with pytest.raises(ValueError, match="x_train"):
        ClassificationData("t", good.x_train.double(), good.y_train, good.x_test, good.y_test, ())
    with pytest.raises(ValueError, match="y_test"):
        ClassificationData("t", good.x_train, good.y_train, good.x_test, good.y_test.int(), ())
    with pytest.raises(ValueError, match="as many rows"):
        ClassificationData("t", good.x_train, good.y_train[:3], good.x_test, good.y_test, ())
    with pytest.raises(ValueError, match="image shape"):
        ClassificationData("t", good.x_train, good.y_train, good.x_test[:, :, :3], good.y_test, ())
