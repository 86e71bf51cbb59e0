"""The UCI regression benchmarks: Wine Quality, Energy Efficiency, California Housing.

Choices (the paper leaves them open; docs/theory.md, 'Data and experiments'):

* ``"wine"`` is the **red** wine table (1,599 rows, 11 inputs), as in the standard UCI
  regression benchmarks (Hernández-Lobato & Adams 2015); ``"wine-white"`` (4,898 rows) and
  ``"wine-combined"`` (6,497 rows, with a 12th input ``is_red`` in {0, 1}) are available.
* ``"energy"`` predicts **Y1, the heating load** (768 rows, 8 inputs); ``"energy-cooling"``
  predicts Y2.
* ``"california-housing"`` predicts ``medianHouseValue`` in dollars from the other 8 columns
  (20,640 rows).
* Splits: 90 % train / 10 % test; split ``k`` of a seed tests on the ``k``-th disjoint block of
  one seeded permutation (:func:`advbayes_data.splits.split_indices`); the tables use splits
  0, 1, 2 of seed 0.
* Inputs and target are standardised with the training rows' mean and population standard
  deviation (:class:`advbayes_data.standardize.Standardizer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path

import numpy as np
import torch

from advbayes_data.download import download_url, extract_member
from advbayes_data.errors import ChecksumError
from advbayes_data.regression_data import RegressionData
from advbayes_data.sources import DatasetSource, FileSpec, fetch
from advbayes_data.splits import split_indices
from advbayes_data.standardize import Standardizer
from advbayes_data.uci_files import (
    CAL_HOUSING_COLUMNS,
    read_cal_housing,
    read_delimited,
    read_enb2012,
)

__all__ = [
    "NUM_SPLITS",
    "TEST_FRACTION",
    "UCI_SOURCES",
    "UCIDataset",
    "UCITable",
    "load_uci",
    "load_uci_table",
    "uci_splits",
]

NUM_SPLITS = 3
"""Train/test splits per dataset for the mean ± std columns of the paper's tables."""

TEST_FRACTION = 0.1
"""The default test share of a split."""


class UCIDataset(StrEnum):
    """The regression datasets; plain strings and a few aliases are accepted.

    Aliases (case-insensitive, ``_`` or ``-``): ``"wine"``, ``"wine-quality"`` → ``WINE_RED``;
    ``"energy"``, ``"energy-efficiency"``, ``"enb2012"`` → ``ENERGY_HEATING``; ``"housing"``,
    ``"california"``, ``"cal-housing"`` → ``CALIFORNIA_HOUSING``.
    """

    WINE_RED = "wine-red"
    """Red Wine Quality: 1,599 rows, 11 inputs, target ``quality`` (the default ``"wine"``)."""
    WINE_WHITE = "wine-white"
    """White Wine Quality: 4,898 rows, 11 inputs, target ``quality``."""
    WINE_COMBINED = "wine-combined"
    """Red then white: 6,497 rows, 12 inputs (the 12th, ``is_red``, is 1 for red wines)."""
    ENERGY_HEATING = "energy-heating"
    """Energy Efficiency: 768 rows, inputs X1..X8, target Y1 heating load (``"energy"``)."""
    ENERGY_COOLING = "energy-cooling"
    """Energy Efficiency: 768 rows, inputs X1..X8, target Y2 cooling load."""
    CALIFORNIA_HOUSING = "california-housing"
    """California Housing: 20,640 rows, 8 inputs, target ``medianHouseValue`` (dollars)."""

    @classmethod
    def _missing_(cls, value: object) -> UCIDataset | None:
        if not isinstance(value, str):
            return None
        key = value.strip().lower().replace("_", "-").replace(" ", "-")
        aliases = {
            "wine": cls.WINE_RED,
            "wine-quality": cls.WINE_RED,
            "red-wine": cls.WINE_RED,
            "white-wine": cls.WINE_WHITE,
            "energy": cls.ENERGY_HEATING,
            "energy-efficiency": cls.ENERGY_HEATING,
            "enb2012": cls.ENERGY_HEATING,
            "housing": cls.CALIFORNIA_HOUSING,
            "california": cls.CALIFORNIA_HOUSING,
            "cal-housing": cls.CALIFORNIA_HOUSING,
        }
        for member in cls:
            if member.value == key:
                return member
        return aliases.get(key)


def _dataset(name: UCIDataset | str) -> UCIDataset:
    if not isinstance(name, str):
        raise TypeError(f"name must be a UCIDataset or str, got {type(name).__name__}")
    try:
        return UCIDataset(name)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in UCIDataset)
        raise ValueError(
            f"name must be one of {choices} (or 'wine', 'energy', 'housing'), got {name!r}"
        ) from None


_UCI_ARCHIVE = "https://archive.ics.uci.edu/ml/machine-learning-databases"
_WINE_RED = FileSpec(
    names=("winequality-red.csv",),
    urls=(f"{_UCI_ARCHIVE}/wine-quality/winequality-red.csv",),
    digests={
        "winequality-red.csv": {
            "sha256": "4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e"
        }
    },
)
_WINE_WHITE = FileSpec(
    names=("winequality-white.csv",),
    urls=(f"{_UCI_ARCHIVE}/wine-quality/winequality-white.csv",),
    digests={
        "winequality-white.csv": {
            "sha256": "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836"
        }
    },
)
_ENERGY = FileSpec(
    names=("ENB2012_data.xlsx", "ENB2012_data.csv"),
    urls=(f"{_UCI_ARCHIVE}/00242/ENB2012_data.xlsx",),
    digests={
        "ENB2012_data.xlsx": {
            "sha256": "ce80fba0fdf4be0e2f2e709fd01ff9c807246947fe666e18710d5105af7970b6"
        },
        "ENB2012_data.csv": {
            "sha256": "980c65961ca4c3c5c9122192ec6a9b0f58046760397e6b8fae5320c0c1156668"
        },
    },
)
_CAL_HOUSING = FileSpec(
    names=("cal_housing.data",),
    urls=(
        "https://www.dcc.fc.up.pt/~ltorgo/Regression/cal_housing.tgz",
        "https://ndownloader.figshare.com/files/5976036",
    ),
    digests={
        "cal_housing.data": {
            "sha256": "a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214"
        }
    },
    archive_member="CaliforniaHousing/cal_housing.data",
)
_LAYOUTS = ("uci", "")
_HOW = "that downloads the files above into uci/ under data_dir (else the user cache)."

UCI_SOURCES: dict[UCIDataset, DatasetSource] = {
    UCIDataset.WINE_RED: DatasetSource("Wine Quality (red)", _LAYOUTS, (_WINE_RED,), _HOW),
    UCIDataset.WINE_WHITE: DatasetSource("Wine Quality (white)", _LAYOUTS, (_WINE_WHITE,), _HOW),
    UCIDataset.WINE_COMBINED: DatasetSource(
        "Wine Quality (red and white)", _LAYOUTS, (_WINE_RED, _WINE_WHITE), _HOW
    ),
    UCIDataset.ENERGY_HEATING: DatasetSource("Energy Efficiency", _LAYOUTS, (_ENERGY,), _HOW),
    UCIDataset.ENERGY_COOLING: DatasetSource("Energy Efficiency", _LAYOUTS, (_ENERGY,), _HOW),
    UCIDataset.CALIFORNIA_HOUSING: DatasetSource(
        "California Housing", _LAYOUTS, (_CAL_HOUSING,), _HOW
    ),
}
"""Each dataset's files (URLs, sha256 digests) and the layouts searched (``uci/`` or the root)."""

_ENERGY_NAMES = (
    "relative compactness",
    "surface area",
    "wall area",
    "roof area",
    "overall height",
    "orientation",
    "glazing area",
    "glazing area distribution",
)


@dataclass(frozen=True, eq=False)
class UCITable:
    """A regression table as read from its files, before splitting or standardising.

    Attributes:
        name: The dataset (a ``UCIDataset`` value).
        x: ``(N, D)`` float64 inputs.
        y: ``(N,)`` float64 target.
        feature_names: ``D`` input names.
        target_name: The target's name.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str


def _download_uci(source: DatasetSource, verify: bool, root: Path) -> None:
    folder = root / source.layouts[0]
    for spec in source.files:
        dest = folder / spec.filename
        if dest.is_file():
            continue
        digest = spec.digest(spec.filename) if verify else None
        sha256 = digest[1] if digest and digest[0] == "sha256" else None
        if spec.archive_member is None:
            download_url(spec.urls, dest, sha256=sha256)
            continue
        archive = folder / (spec.filename + ".tgz")
        try:
            download_url(spec.urls, archive)
            extract_member(archive, spec.archive_member, dest)
        finally:
            archive.unlink(missing_ok=True)
        if digest is not None:
            try:
                spec.verify(dest)
            except ChecksumError:
                dest.unlink(missing_ok=True)
                raise


def _wine(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names, values = read_delimited(path, 12, header=True)
    names = tuple(names or ())
    if names[-1] != "quality":
        raise ValueError(f"{path}: the last column must be 'quality', got {names[-1]!r}")
    return values[:, :-1], values[:, -1], names[:-1]


def load_uci_table(
    name: UCIDataset | str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> UCITable:
    """A UCI regression table as stored (float64, unsplit, unstandardised).

    Args:
        name: A :class:`UCIDataset` or its string (``"wine"``, ``"energy"``, ``"housing"``, ...).
        data_dir: A directory searched first (the scripts' ``--data-dir``), then
            ``$ADVBAYES_DATA``, then the user cache; each in ``uci/`` or at its top level.
        download: When nothing local is found, download from the original addresses (UCI
            archive; Torgo's ``cal_housing.tgz``) into ``data_dir`` (or the user cache).
        verify: Check the files against their sha256 digests.

    Returns:
        The table: ``x`` ``(N, D)``, ``y`` ``(N,)``, with names.

    Raises:
        DatasetNotFoundError: No local copy, and no download (disabled or failed).
        ChecksumError: A file differs from its published digest.
        ValueError: ``name`` is unknown, or a file does not have the expected format.

    Examples:
        >>> load_uci_table("energy").x.shape  # doctest: +SKIP
        (768, 8)
    """
    dataset = _dataset(name)
    source = UCI_SOURCES[dataset]
    paths = fetch(
        source,
        data_dir,
        download=download,
        verify=verify,
        downloader=partial(_download_uci, source, verify),
    )
    if dataset in (UCIDataset.WINE_RED, UCIDataset.WINE_WHITE):
        x, y, features = _wine(paths[0])
        return UCITable(dataset.value, x, y, features, "quality")
    if dataset is UCIDataset.WINE_COMBINED:
        x_red, y_red, features = _wine(paths[0])
        x_white, y_white, white_features = _wine(paths[1])
        if white_features != features:
            raise ValueError(f"{paths[1]}: its columns differ from those of {paths[0]}")
        is_red = np.concatenate([np.ones(len(y_red)), np.zeros(len(y_white))])[:, None]
        x = np.hstack([np.vstack([x_red, x_white]), is_red])
        y = np.concatenate([y_red, y_white])
        return UCITable(dataset.value, x, y, (*features, "is_red"), "quality")
    if dataset in (UCIDataset.ENERGY_HEATING, UCIDataset.ENERGY_COOLING):
        _, values = read_enb2012(paths[0])
        column = 8 if dataset is UCIDataset.ENERGY_HEATING else 9
        target = "heating load" if column == 8 else "cooling load"
        return UCITable(dataset.value, values[:, :8], values[:, column], _ENERGY_NAMES, target)
    values = read_cal_housing(paths[0])
    return UCITable(
        dataset.value, values[:, :8], values[:, 8], CAL_HOUSING_COLUMNS[:8], CAL_HOUSING_COLUMNS[8]
    )


def _split(table: UCITable, split: int, seed: int, test_fraction: float) -> RegressionData:
    train, test = split_indices(len(table.y), split, test_fraction=test_fraction, seed=seed)
    x_scaler = Standardizer.fit(table.x[train])
    y_scaler = Standardizer.fit(table.y[train])

    def standardized(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = x_scaler.transform(torch.from_numpy(table.x[rows]))  # float64 arithmetic
        y = y_scaler.transform(torch.from_numpy(table.y[rows]))
        return x.to(torch.float32), y.to(torch.float32)

    x_train, y_train = standardized(train)
    x_test, y_test = standardized(test)
    return RegressionData(
        name=table.name,
        split=split,
        seed=seed,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        x_scaler=x_scaler,
        y_scaler=y_scaler,
        feature_names=table.feature_names,
        target_name=table.target_name,
        train_index=torch.from_numpy(train),
        test_index=torch.from_numpy(test),
    )


def load_uci(
    name: UCIDataset | str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: int = 0,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    download: bool = False,
    verify: bool = True,
) -> RegressionData:
    """One seeded train/test split of a UCI regression dataset, standardised.

    Inputs and target standardised (docs/theory.md, 'Data and experiments'); the tables report
    mean ± std over splits 0, 1, 2.

    Args:
        name: A :class:`UCIDataset` or its string: ``"wine"`` (red), ``"wine-white"``,
            ``"wine-combined"``, ``"energy"`` (Y1 heating), ``"energy-cooling"``,
            ``"california-housing"`` (or ``"housing"``).
        data_dir: A directory searched first (the scripts' ``--data-dir``), then
            ``$ADVBAYES_DATA``, then the user cache.
        split: Which split, ``0 <= split < max_splits(N, test_fraction)`` (9 for Wine and
            Energy at 0.1); test sets of different splits are disjoint.
        seed: Seeds the permutation the splits are cut from.
        test_fraction: The test share (default 0.1).
        download: Download the original files when nothing local is found.
        verify: Check the files against their sha256 digests.

    Returns:
        ``x_train`` ``(N, D)``, ``y_train`` ``(N,)``, ``x_test`` ``(M, D)``, ``y_test``
        ``(M,)`` float32, all standardised with the training rows' statistics (kept in
        ``x_scaler``/``y_scaler`` to undo it).

    Raises:
        DatasetNotFoundError: No local copy, and no download (disabled or failed).
        ChecksumError: A file differs from its published digest.
        ValueError: Unknown ``name``, ``split`` or ``test_fraction`` out of range, or a
            malformed file.

    Examples:
        >>> data = load_uci("energy", split=1)  # doctest: +SKIP
        >>> data.x_train.shape, data.x_test.shape  # doctest: +SKIP
        (torch.Size([691, 8]), torch.Size([77, 8]))
    """
    table = load_uci_table(name, data_dir, download=download, verify=verify)
    return _split(table, split, seed, test_fraction)


def uci_splits(
    name: UCIDataset | str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    num_splits: int = NUM_SPLITS,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    download: bool = False,
    verify: bool = True,
) -> list[RegressionData]:
    """Splits ``0 .. num_splits - 1`` of :func:`load_uci`, reading the files once.

    Args:
        name: As :func:`load_uci`.
        data_dir: As :func:`load_uci`.
        num_splits: How many splits (default 3, the tables' ± columns).
        seed: As :func:`load_uci`.
        test_fraction: As :func:`load_uci`.
        download: As :func:`load_uci`.
        verify: As :func:`load_uci`.

    Returns:
        ``num_splits`` :class:`RegressionData`, with disjoint test sets.

    Raises:
        ValueError: ``num_splits`` < 1 or more than the disjoint test blocks that fit.

    Examples:
        >>> for data in uci_splits("wine"):  # doctest: +SKIP
        ...     print(data.split, data.x_test.shape)
    """
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(f"num_splits must be an int >= 1, got {num_splits!r}")
    table = load_uci_table(name, data_dir, download=download, verify=verify)
    return [_split(table, k, seed, test_fraction) for k in range(num_splits)]
