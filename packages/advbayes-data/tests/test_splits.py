from __future__ import annotations

import numpy as np
import pytest

from advbayes_data import split_indices, stratified_indices
from advbayes_data.splits import max_splits


@pytest.mark.parametrize(("n", "fraction"), [(768, 0.1), (1599, 0.1), (10, 0.2), (7, 0.5)])
def test_split_is_a_disjoint_cover_of_the_rows(n, fraction):
    train, test = split_indices(n, 0, test_fraction=fraction, seed=3)
    assert len(test) == round(fraction * n)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)


def test_splits_of_one_seed_have_disjoint_test_sets():
    tests = [split_indices(768, k, seed=0)[1] for k in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.intersect1d(tests[i], tests[j]).size == 0


def test_splits_are_reproducible_and_depend_on_the_seed():
    a = split_indices(1000, 1, seed=5)
    b = split_indices(1000, 1, seed=5)
    c = split_indices(1000, 1, seed=6)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_max_splits():
    assert max_splits(1599, 0.1) == 9  # 160 test rows per split
    assert max_splits(768, 0.1) == 9  # 77 test rows per split
    assert max_splits(10, 0.2) == 5


def test_split_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        split_indices(100, 10, test_fraction=0.1)
    with pytest.raises(ValueError, match="split"):
        split_indices(100, -1)
    with pytest.raises(ValueError, match="test_fraction"):
        split_indices(100, 0, test_fraction=1.0)
    with pytest.raises(ValueError, match="n must be"):
        split_indices(2, 0)
    with pytest.raises(TypeError, match="seed"):
        split_indices(100, 0, seed=-1)


def test_stratified_counts_by_hand():
    # classes 0, 1, 2 with 5, 3, 2 rows; size 5: quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1 and
    # one row left, for the largest remainder (0.5, a tie between 0 and 1: the smaller label).
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    rows = stratified_indices(labels, 5, seed=0)
    assert np.bincount(labels[rows], minlength=3).tolist() == [3, 1, 1]
    assert len(np.unique(rows)) == 5


def test_stratified_is_exact_when_divisible_and_random_in_order():
    labels = np.repeat(np.arange(10), 50)
    rows = stratified_indices(labels, 100, seed=1)
    assert np.bincount(labels[rows]).tolist() == [10] * 10
    assert not np.all(np.diff(labels[rows]) >= 0)  # not sorted by class
    np.testing.assert_array_equal(rows, stratified_indices(labels, 100, seed=1))
    assert not np.array_equal(rows, stratified_indices(labels, 100, seed=2))


def test_stratified_edge_sizes_and_errors():
    labels = np.array([1, 1, 2])
    assert stratified_indices(labels, 0).size == 0
    assert sorted(stratified_indices(labels, 3).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="size"):
        stratified_indices(labels, 4)
    with pytest.raises(ValueError, match="labels"):
        stratified_indices(np.array([0.5, 1.0]), 1)
