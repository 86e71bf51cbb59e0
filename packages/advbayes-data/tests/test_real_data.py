"""The shared offline copies load with the row counts and digests stated in their README."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advbayes_data import load_mnist, load_uci, load_uci_table, sha256sum
from advbayes_data.uci_files import read_enb2012

# Copied from the data README (not from the package's constants, so a typo in either shows).
README_SHA256 = {
    "MNIST/raw/train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "MNIST/raw/train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "MNIST/raw/t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "MNIST/raw/t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    "uci/winequality-red.csv": ("4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e"),
    "uci/winequality-white.csv": (
        "76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836"
    ),
    "uci/ENB2012_data.xlsx": ("ce80fba0fdf4be0e2f2e709fd01ff9c807246947fe666e18710d5105af7970b6"),
    "uci/ENB2012_data.csv": ("980c65961ca4c3c5c9122192ec6a9b0f58046760397e6b8fae5320c0c1156668"),
    "uci/cal_housing.data": ("a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214"),
}


@pytest.mark.parametrize("relative", sorted(README_SHA256))
def test_checksums(real_data_dir, relative):
    path = real_data_dir / relative
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    assert sha256sum(path) == README_SHA256[relative]


def test_mnist(real_data_dir):
    if not (real_data_dir / "MNIST").is_dir():
        pytest.skip("no MNIST copy")
    data = load_mnist(real_data_dir)  # verify=True: the package's digests agree too
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert torch.bincount(data.y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


@pytest.mark.parametrize(
    ("name", "rows", "quality"),
    [
        ("wine-red", 1599, {3: 10, 4: 53, 5: 681, 6: 638, 7: 199, 8: 18}),
        ("wine-white", 4898, {3: 20, 4: 163, 5: 1457, 6: 2198, 7: 880, 8: 175, 9: 5}),
    ],
)
def test_wine(real_data_dir, name, rows, quality):
    table = load_uci_table(name, real_data_dir)
    assert table.x.shape == (rows, 11)
    values, counts = np.unique(table.y, return_counts=True)
    assert dict(zip(values.astype(int).tolist(), counts.tolist(), strict=True)) == quality


def test_energy(real_data_dir):
    table = load_uci_table("energy", real_data_dir)
    assert table.x.shape == (768, 8)
    assert table.y.min() == pytest.approx(6.01) and table.y.max() == pytest.approx(43.10)
    assert table.y.mean() == pytest.approx(22.307, abs=5e-4)
    cooling = load_uci_table("energy-cooling", real_data_dir).y
    assert cooling.min() == pytest.approx(10.90) and cooling.mean() == pytest.approx(
        24.588, abs=5e-4
    )
    _, from_csv = read_enb2012(real_data_dir / "uci" / "ENB2012_data.csv")
    _, from_xlsx = read_enb2012(real_data_dir / "uci" / "ENB2012_data.xlsx")
    np.testing.assert_array_equal(from_csv, from_xlsx)


def test_california_housing(real_data_dir):
    table = load_uci_table("housing", real_data_dir)
    assert table.x.shape == (20640, 8)
    assert table.y.min() == 14999 and table.y.max() == 500001
    assert table.y.mean() == pytest.approx(206855.82, abs=0.01)


def test_three_standardised_splits_of_real_wine(real_data_dir):
    splits = [load_uci("wine", real_data_dir, split=k) for k in range(3)]
    for data in splits:
        assert data.x_train.shape == (1439, 11) and data.x_test.shape == (160, 11)
        torch.testing.assert_close(data.x_train.mean(0), torch.zeros(11), atol=1e-5, rtol=0)
        torch.testing.assert_close(data.y_train.std(unbiased=False), torch.tensor(1.0))
