from __future__ import annotations

import hashlib

import pytest

from advbayes_data import ENV_VAR, ChecksumError, DatasetNotFoundError, cache_dir
from advbayes_data.sources import DatasetSource, FileSpec, fetch, locate

GOOD = b"the real bytes\n"
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()

TOY = DatasetSource(
    name="Toy",
    layouts=("toy", ""),
    files=(
        FileSpec(
            names=("a.txt", "a.csv"),
            urls=("https://example.org/a.txt", "https://mirror.example.org/a.txt"),
            digests={"a.txt": {"sha256": GOOD_SHA}},
        ),
        FileSpec(names=("b.txt",), urls=("https://example.org/b.tgz",), archive_member="B/b.txt"),
    ),
    how_to_download="it fetches the toy files.",
)


def _put(folder, a=GOOD, a_name="a.txt"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / a_name).write_bytes(a)
    (folder / "b.txt").write_text(str(folder))
    return folder


def _origin(paths):
    return paths[1].read_text()


def test_resolution_order_argument_then_env_then_cache(monkeypatch, tmp_path):
    arg, env, cache = tmp_path / "arg", tmp_path / "env", cache_dir()
    for root in (arg, env, cache):
        _put(root / "toy")
    monkeypatch.setenv(ENV_VAR, str(env))
    assert _origin(locate(TOY, arg)) == str(arg / "toy")
    (arg / "toy" / "b.txt").unlink()  # incomplete: the next root is used
    assert _origin(locate(TOY, arg)) == str(env / "toy")
    (env / "toy" / "a.txt").unlink()
    assert _origin(locate(TOY, arg)) == str(cache / "toy")
    monkeypatch.delenv(ENV_VAR)
    _put(env / "toy")
    assert _origin(locate(TOY, arg)) == str(cache / "toy")  # env unset: not searched


def test_layouts_in_order_and_alternative_names(tmp_path):
    _put(tmp_path)  # the root itself is the second layout
    assert _origin(locate(TOY, tmp_path)) == str(tmp_path)
    _put(tmp_path / "toy", a_name="a.csv")  # an alternative name, in the preferred layout
    paths = locate(TOY, tmp_path)
    assert paths[0].name == "a.csv" and _origin(paths) == str(tmp_path / "toy")


def test_verify_checks_known_digests(tmp_path):
    _put(tmp_path / "toy", a=b"tampered\n")
    with pytest.raises(ChecksumError, match="a.txt"):
        locate(TOY, tmp_path)
    assert locate(TOY, tmp_path, verify=False) is not None


def test_offline_message_names_files_urls_and_places(monkeypatch, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        fetch(TOY, tmp_path / "given", download=False, verify=True, downloader=_never)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needle in (
        "Toy",
        "download=False",
        "a.txt or a.csv",
        "https://example.org/a.txt",
        "https://mirror.example.org/a.txt",
        GOOD_SHA,
        "extract B/b.txt from https://example.org/b.tgz",
        "<DIR>/toy/",
        str(tmp_path / "given"),
        "--data-dir",
        f"${ENV_VAR}: not set",
        str(cache_dir()),
        "download=True",
    ):
        assert needle in message, needle
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        fetch(TOY, None, download=False, verify=True, downloader=_never)
    assert f"${ENV_VAR}: {tmp_path / 'env'}" in str(info.value)
    assert "data_dir argument (the scripts' --data-dir): not given" in str(info.value)


def _never(root):
    raise AssertionError("must not download")


def test_download_goes_to_the_argument_else_the_cache(tmp_path):
    calls = []

    def downloader(root):
        calls.append(root)
        _put(root / "toy")

    paths = fetch(TOY, tmp_path / "given", download=True, verify=True, downloader=downloader)
    assert calls == [tmp_path / "given"] and _origin(paths) == str(tmp_path / "given" / "toy")
    paths = fetch(TOY, None, download=True, verify=True, downloader=downloader)
    assert calls[-1] == cache_dir() and _origin(paths) == str(cache_dir() / "toy")
    # found locally now: no second download
    fetch(TOY, None, download=True, verify=True, downloader=_never)


@pytest.mark.parametrize(
    "error",
    [OSError("unreachable"), RuntimeError("Error downloading"), ImportError("no torchvision")],
)
def test_failed_download_is_a_not_found_error_with_the_reason(tmp_path, error):
    def downloader(root):
        raise error

    with pytest.raises(DatasetNotFoundError, match="download failed") as info:
        fetch(TOY, tmp_path, download=True, verify=True, downloader=downloader)
    assert str(error) in str(info.value) and "https://example.org/a.txt" in str(info.value)
    assert info.value.__cause__ is error


def test_download_that_writes_nothing_or_bad_bytes(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="still missing"):
        fetch(TOY, tmp_path, download=True, verify=True, downloader=lambda root: None)
    with pytest.raises(ChecksumError):
        fetch(
            TOY,
            tmp_path,
            download=True,
            verify=True,
            downloader=lambda root: _put(root / "toy", a=b"bad"),
        )
