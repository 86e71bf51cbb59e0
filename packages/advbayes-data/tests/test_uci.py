from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import advbayes_data.uci as uci_module
from advbayes_data import (
    ENV_VAR,
    ChecksumError,
    DatasetNotFoundError,
    UCIDataset,
    cache_dir,
    load_uci,
    load_uci_table,
    uci_splits,
)


@pytest.fixture
def uci_dir(tmp_path, write_wine, make_wine_rows, write_enb_xlsx, write_cal_housing):
    folder = tmp_path / "data" / "uci"
    rng = np.random.default_rng(0)
    tables = {
        "red": make_wine_rows(40, seed=1),
        "white": make_wine_rows(30, seed=2),
        "enb": np.round(rng.uniform(0, 50, (25, 10)), 2),
        "cal": np.round(rng.uniform(1, 1000, (50, 9)), 3),
    }
    write_wine(folder / "winequality-red.csv", tables["red"])
    write_wine(folder / "winequality-white.csv", tables["white"])
    write_enb_xlsx(folder / "ENB2012_data.xlsx", tables["enb"])
    write_cal_housing(folder / "cal_housing.data", tables["cal"])
    return folder.parent, tables


@pytest.mark.parametrize(
    ("name", "key", "n", "d", "target_column"),
    [
        ("wine", "red", 40, 11, 11),
        ("wine-white", "white", 30, 11, 11),
        ("energy", "enb", 25, 8, 8),
        ("energy-cooling", "enb", 25, 8, 9),
        ("housing", "cal", 50, 8, 8),
    ],
)
def test_tables_read_inputs_and_target(uci_dir, name, key, n, d, target_column):
    root, tables = uci_dir
    table = load_uci_table(name, root, verify=False)
    assert table.x.shape == (n, d) and table.y.shape == (n,) and len(table.feature_names) == d
    np.testing.assert_array_equal(table.x, tables[key][:, :d])
    np.testing.assert_array_equal(table.y, tables[key][:, target_column])


def test_wine_combined_stacks_red_then_white_with_an_indicator(uci_dir):
    root, tables = uci_dir
    table = load_uci_table("wine-combined", root, verify=False)
    assert table.x.shape == (70, 12) and table.feature_names[-1] == "is_red"
    np.testing.assert_array_equal(table.x[:, -1], [1.0] * 40 + [0.0] * 30)
    np.testing.assert_array_equal(table.y, np.concatenate([tables["red"], tables["white"]])[:, -1])


def test_standardised_with_training_statistics_only(uci_dir):
    root, tables = uci_dir
    data = load_uci("housing", root, split=1, seed=2, verify=False)
    raw = tables["cal"]
    train, test = data.train_index.numpy(), data.test_index.numpy()
    mean, std = raw[train].mean(0), raw[train].std(0)  # float64 reference
    np.testing.assert_allclose(
        data.x_train.numpy(), (raw[train, :8] - mean[:8]) / std[:8], atol=1e-5
    )
    np.testing.assert_allclose(data.x_test.numpy(), (raw[test, :8] - mean[:8]) / std[:8], atol=1e-5)
    np.testing.assert_allclose(data.y_test.numpy(), (raw[test, 8] - mean[8]) / std[8], atol=1e-5)
    np.testing.assert_allclose(data.y_scaler.mean.numpy(), mean[8], rtol=1e-6)
    np.testing.assert_allclose(data.y_scaler.std.numpy(), std[8], rtol=1e-6)
    torch.testing.assert_close(
        data.y_scaler.inverse(data.y_test.double()), torch.from_numpy(raw[test, 8])
    )
    assert data.x_train.dtype == torch.float32 and data.y_train.shape == (45,)
    assert data.x_test.shape == (5, 8)


def test_changing_test_rows_does_not_change_the_training_data(uci_dir, write_cal_housing):
    root, tables = uci_dir
    before = load_uci("housing", root, split=0, verify=False)
    changed = tables["cal"].copy()
    changed[before.test_index.numpy()] *= 100.0
    write_cal_housing(root / "uci" / "cal_housing.data", changed)
    after = load_uci("housing", root, split=0, verify=False)
    torch.testing.assert_close(after.x_train, before.x_train)
    torch.testing.assert_close(after.y_scaler.mean, before.y_scaler.mean)
    assert not torch.allclose(after.x_test, before.x_test)


def test_splits_are_seeded_disjoint_and_reproducible(uci_dir):
    root, _ = uci_dir
    splits = uci_splits("wine", root, verify=False)
    assert [s.split for s in splits] == [0, 1, 2]
    for s in splits:
        train, test = set(s.train_index.tolist()), set(s.test_index.tolist())
        assert not train & test and train | test == set(range(40)) and len(test) == 4
    tests = [set(s.test_index.tolist()) for s in splits]
    assert not (tests[0] & tests[1] or tests[0] & tests[2] or tests[1] & tests[2])
    again = load_uci("wine", root, split=2, verify=False)
    torch.testing.assert_close(again.x_test, splits[2].x_test)
    other = load_uci("wine", root, split=2, seed=1, verify=False)
    assert not torch.equal(other.test_index, splits[2].test_index)


def test_names_and_aliases():
    assert UCIDataset("wine") is UCIDataset.WINE_RED
    assert UCIDataset("Energy_Efficiency") is UCIDataset.ENERGY_HEATING
    assert UCIDataset("cal_housing") is UCIDataset.CALIFORNIA_HOUSING
    assert UCIDataset(UCIDataset.WINE_WHITE) is UCIDataset.WINE_WHITE
    assert UCIDataset.WINE_RED == "wine-red"


def test_bad_arguments(uci_dir):
    root, _ = uci_dir
    with pytest.raises(ValueError, match="name must be one of"):
        load_uci("boston", root)
    with pytest.raises(TypeError, match="name"):
        load_uci(3, root)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_uci("wine", root, split=10, verify=False)
    with pytest.raises(ValueError, match="test_fraction"):
        load_uci("wine", root, test_fraction=0.0, verify=False)
    with pytest.raises(ValueError, match="num_splits"):
        uci_splits("wine", root, num_splits=0, verify=False)


def test_verify_rejects_files_that_are_not_the_published_ones(uci_dir):
    root, _ = uci_dir
    with pytest.raises(ChecksumError, match="winequality-red.csv"):
        load_uci("wine", root)


def test_offline_message_names_files_urls_and_places(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "shared"))
    for name, needles in {
        "wine": ["winequality-red.csv", "wine-quality/winequality-red.csv", "4a402cf0"],
        "energy": ["ENB2012_data.xlsx or ENB2012_data.csv", "00242/ENB2012_data.xlsx"],
        "housing": [
            "extract CaliforniaHousing/cal_housing.data",
            "ltorgo/Regression/cal_housing.tgz",
        ],
    }.items():
        with pytest.raises(DatasetNotFoundError) as info:
            load_uci(name, tmp_path / "mine")
        message = str(info.value)
        for needle in [
            *needles,
            "<DIR>/uci/",
            str(tmp_path / "mine"),
            "--data-dir",
            f"${ENV_VAR}: {tmp_path / 'shared'}",
            str(cache_dir()),
            "download=True",
        ]:
            assert needle in message, (name, needle)


def test_download_with_no_network_fails_with_the_same_help(tmp_path):
    # urllib against the blocked sockets of the conftest
    with pytest.raises(DatasetNotFoundError, match="download failed") as info:
        load_uci("wine", tmp_path, download=True)
    assert "archive.ics.uci.edu" in str(info.value) and "--data-dir" in str(info.value)
    assert not (tmp_path / "uci" / "winequality-red.csv").exists()


def test_download_writes_verified_files_into_the_cache(
    monkeypatch, tmp_path, write_wine, make_wine_rows
):
    served = write_wine(tmp_path / "served.csv", make_wine_rows(12))
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    calls = []

    def fake_download(urls, dest, *, sha256=None, md5=None):
        calls.append((tuple(urls), dest, sha256))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(served.read_bytes())
        return dest

    monkeypatch.setattr(uci_module, "download_url", fake_download)
    red_spec = uci_module.UCI_SOURCES[UCIDataset.WINE_RED].files[0]
    monkeypatch.setitem(red_spec.digests, "winequality-red.csv", {"sha256": digest})
    data = load_uci("wine", download=True)
    assert data.x_train.shape[0] + data.x_test.shape[0] == 12
    urls, dest, sha256 = calls[0]
    assert dest == cache_dir() / "uci" / "winequality-red.csv" and sha256 == digest
    assert urls[0].startswith("https://archive.ics.uci.edu/")


def test_cal_housing_download_extracts_and_verifies(monkeypatch, tmp_path, write_cal_housing):
    import io
    import tarfile

    content = write_cal_housing(tmp_path / "x.data", np.ones((5, 9))).read_bytes()
    archive = tmp_path / "cal_housing.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("CaliforniaHousing/cal_housing.data")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))

    def fake_download(urls, dest, *, sha256=None, md5=None):
        assert sha256 is None  # the archive has no published digest; its member does
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read_bytes())
        return dest

    monkeypatch.setattr(uci_module, "download_url", fake_download)
    target = tmp_path / "d"
    with pytest.raises(ChecksumError, match="cal_housing.data"):
        load_uci("housing", target, download=True)  # not the published bytes
    assert not (target / "uci" / "cal_housing.data").exists()
    assert not (target / "uci" / "cal_housing.data.tgz").exists()
    data = load_uci_table("housing", target, download=True, verify=False)
    np.testing.assert_array_equal(data.x, np.ones((5, 8)))
