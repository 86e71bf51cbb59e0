"""Seeded train/test splits: disjoint test folds for tabular data, stratified for labels.

Tabular splits (:func:`split_indices`): one permutation of the rows per ``seed``; split ``k``
tests on the ``k``-th block of ``round(test_fraction * n)`` rows of that permutation and trains
on the rest. Different splits of the same seed therefore have disjoint test sets (like folds
of a cross-validation), which keeps the three ``±`` columns of the paper's tables independent.
"""

from __future__ import annotations

import numpy as np

__all__ = ["max_splits", "split_indices", "stratified_indices"]


def _check_fraction(test_fraction: float) -> None:
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")


def _test_size(n: int, test_fraction: float) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an int >= 3 (rows to split), got {n!r}")
    _check_fraction(test_fraction)
    n_test = round(test_fraction * n)
    return min(max(n_test, 1), n - 2)  # keep >= 2 training rows for a standard deviation


def max_splits(n: int, test_fraction: float) -> int:
    """How many disjoint test blocks of ``round(test_fraction * n)`` rows fit in ``n`` rows.

    Examples:
        >>> max_splits(1599, 0.1)
        9
    """
    return n // _test_size(n, test_fraction)


def split_indices(
    n: int, split: int = 0, *, test_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of one seeded train/test split.

    Args:
        n: The number of rows (>= 3).
        split: Which split, ``0 <= split < max_splits(n, test_fraction)``; different splits of
            one seed have disjoint test sets.
        test_fraction: The test share (default 0.1, the usual UCI protocol of 90/10 splits).
        seed: Seeds the permutation (``numpy.random.default_rng(seed)``).

    Returns:
        ``(train, test)``: sorted int64 index arrays, disjoint, covering ``range(n)``; the test
        set has ``round(test_fraction * n)`` rows.

    Raises:
        ValueError: ``n``, ``split`` or ``test_fraction`` out of range.
        TypeError: ``seed`` is not a non-negative int.

    Examples:
        >>> train, test = split_indices(10, 1, test_fraction=0.2, seed=0)
        >>> len(train), len(test)
        (8, 2)
    """
    _check_seed(seed)
    n_test = _test_size(n, test_fraction)
    count = n // n_test
    if (
        isinstance(split, bool)
        or not isinstance(split, (int, np.integer))
        or not 0 <= split < count
    ):
        raise ValueError(
            f"split must be an int in [0, {count}) for n={n} rows and test_fraction="
            f"{test_fraction}, got {split!r}"
        )
    permutation = np.random.default_rng(seed).permutation(n)
    test = np.sort(permutation[split * n_test : (split + 1) * n_test])
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), test.astype(np.int64)


def stratified_indices(labels: np.ndarray, size: int, *, seed: int = 0) -> np.ndarray:
    """A seeded sample of ``size`` rows with the class proportions of ``labels``.

    Each class ``c`` with ``n_c`` of the ``N`` rows gets ``floor(size * n_c / N)`` rows; the
    rows left over go to the classes with the largest remainders (ties: the smaller label).
    The sample is drawn without replacement and returned in random order.

    Args:
        labels: ``(N,)`` integer class labels.
        size: How many rows, ``0 <= size <= N``.
        seed: Seeds the draw (``numpy.random.default_rng(seed)``).

    Returns:
        ``(size,)`` int64 row indices, distinct, in random order.

    Raises:
        ValueError: ``labels`` is not 1-D integers, or ``size`` is out of range.
        TypeError: ``seed`` is not a non-negative int.

    Examples:
        >>> labels = np.repeat(np.arange(10), 500)
        >>> np.bincount(labels[stratified_indices(labels, 1000)]).tolist()
        [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    _check_seed(seed)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape} of {labels.dtype}"
        )
    total = labels.shape[0]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 <= size <= total:
        raise ValueError(f"size must be an int in [0, {total}], got {size!r}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = size * counts / total
    take = np.floor(quota).astype(np.int64)
    left = size - int(take.sum())
    if left:
        order = np.lexsort((classes, -(quota - take)))  # largest remainder, then smaller label
        take[order[:left]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    sample = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return rng.permutation(sample).astype(np.int64)
