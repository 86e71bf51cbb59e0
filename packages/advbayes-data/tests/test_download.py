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
