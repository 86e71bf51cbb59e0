from __future__ import annotations

import hashlib
import io
import socket
import tarfile

import pytest

from advbayes_data import ChecksumError, download_url
from advbayes_data.download import extract_member, socket_timeout, torchvision_download

# Downloads are tested on file:// URLs (urllib's own local handler): no network involved.


@pytest.fixture
def served(tmp_path):
    source = tmp_path / "served" / "data.csv"
    source.parent.mkdir()
    source.write_bytes(b"a;b\n1;2\n")
    return source


def test_download_from_the_first_reachable_mirror(tmp_path, served):
    missing = (tmp_path / "served" / "nope.csv").as_uri()
    dest = tmp_path / "out" / "data.csv"
    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    assert download_url([missing, served.as_uri()], dest, sha256=sha) == dest
    assert dest.read_bytes() == served.read_bytes()
    assert not (tmp_path / "out" / "data.csv.part").exists()


def test_download_verifies_md5_when_no_sha256(tmp_path, served):
    md5 = hashlib.md5(served.read_bytes()).hexdigest()
    dest = download_url(served.as_uri(), tmp_path / "x.csv", md5=md5)
    assert dest.is_file()


def test_checksum_mismatch_leaves_no_file(tmp_path, served):
    dest = tmp_path / "out" / "data.csv"
    with pytest.raises(ChecksumError, match="sha256 mismatch") as info:
        download_url(served.as_uri(), dest, sha256="0" * 64)
    assert "0" * 64 in str(info.value)
    assert not dest.exists() and not dest.with_name("data.csv.part").exists()


def test_unreachable_mirrors_give_an_oserror_listing_each_url(tmp_path):
    urls = ["https://example.invalid/a.csv", (tmp_path / "missing.csv").as_uri()]
    with pytest.raises(OSError) as info:
        download_url(urls, tmp_path / "a.csv")
    assert not isinstance(info.value, ChecksumError)
    for url in urls:
        assert url in str(info.value)
    assert not (tmp_path / "a.csv").exists()


def test_download_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="urls"):
        download_url([], tmp_path / "a")
    with pytest.raises(ValueError, match="timeout"):
        download_url("file:///x", tmp_path / "a", timeout=0)


def _tgz(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_member(tmp_path):
    archive = _tgz(tmp_path / "a.tgz", {"Cal/cal.data": b"1,2\n", "Cal/other": b"x"})
    dest = extract_member(archive, "Cal/cal.data", tmp_path / "out" / "cal.data")
    assert dest.read_bytes() == b"1,2\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cal.data"]


def test_extract_member_errors(tmp_path):
    archive = _tgz(tmp_path / "a.tgz", {"Cal/cal.data": b"1,2\n"})
    with pytest.raises(ValueError, match="no member"):
        extract_member(archive, "Cal/missing", tmp_path / "x")
    not_tar = tmp_path / "b.tgz"
    not_tar.write_bytes(b"plain text")
    with pytest.raises(ValueError, match="tar archive"):
        extract_member(not_tar, "Cal/cal.data", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_socket_timeout_is_restored_even_on_error():
    before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError), socket_timeout(7.0):
        assert socket.getdefaulttimeout() == 7.0
        raise RuntimeError("boom")
    assert socket.getdefaulttimeout() == before
    with pytest.raises(ValueError, match="seconds"), socket_timeout(0):
        pass


def test_torchvision_download_rejects_unknown_datasets(tmp_path):
    with pytest.raises(ValueError, match="class_name"):
        torchvision_download("ImageNet", tmp_path)


def test_download_is_cached_when_the_digest_matches(tmp_path, served):
    """pooch keeps a verified file: a second call does not fetch (the source is gone)."""
    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    dest = download_url(served.as_uri(), tmp_path / "c" / "data.csv", sha256=sha)
    url = served.as_uri()
    served.unlink()
    assert download_url(url, dest, sha256=sha) == dest
    # a damaged cached copy is fetched again (and here fails: the source is gone)
    dest.write_bytes(b"damaged")
    with pytest.raises(OSError, match="could not download"):
        download_url(url, dest, sha256=sha)


def test_cifar10_downloads_the_archive_with_pooch_and_extracts_the_batches(tmp_path, monkeypatch):
    import pickle

    import numpy as np

    from advbayes_data import cifar as cifar_module
    from advbayes_data import load_cifar10

    rng = np.random.default_rng(0)
    members = {}
    for name in cifar_module._BATCH_MD5:
        batch = {
            b"labels": rng.integers(0, 10, 2).tolist(),
            b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
        }
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
    (tmp_path / "mirror").mkdir()
    archive = _tgz(tmp_path / "mirror" / "cifar-10-python.tar.gz", members)
    monkeypatch.setattr(cifar_module, "_URL", archive.as_uri())
    monkeypatch.setattr(cifar_module, "_ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    root = tmp_path / "data"
    data = load_cifar10(root, download=True, verify=False)
    assert data.x_train.shape == (10, 3, 32, 32) and data.x_test.shape == (2, 3, 32, 32)
    assert (root / "cifar-10-python.tar.gz").is_file()  # the cached archive
    # a wrong published digest is refused and leaves no batches behind
    monkeypatch.setattr(cifar_module, "_ARCHIVE_MD5", "0" * 32)
    other = tmp_path / "other"
    with pytest.raises(Exception, match="mismatch"):
        load_cifar10(other, download=True, verify=False)
    assert not (other / "cifar-10-batches-py").exists()
