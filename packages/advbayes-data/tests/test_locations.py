from __future__ import annotations

from pathlib import Path

import pytest

from advbayes_data import ENV_VAR, cache_dir, data_roots
from advbayes_data.locations import ORIGIN_ARGUMENT, ORIGIN_CACHE, ORIGIN_ENV, download_root


def test_cache_dir_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "advbayes"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "advbayes"


def test_roots_are_argument_then_env_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    roots = data_roots(tmp_path / "arg")
    assert [r.path for r in roots] == [tmp_path / "arg", tmp_path / "env", cache_dir()]
    assert [r.origin for r in roots] == [ORIGIN_ARGUMENT, ORIGIN_ENV, ORIGIN_CACHE]


def test_roots_without_argument_or_env(tmp_path):
    assert [r.path for r in data_roots()] == [cache_dir()]


def test_a_directory_given_twice_is_listed_once(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "same"))
    roots = data_roots(str(tmp_path / "same"))
    assert [r.origin for r in roots] == [ORIGIN_ARGUMENT, ORIGIN_CACHE]


def test_download_root_is_the_argument_else_the_cache(tmp_path):
    assert download_root(tmp_path / "d") == tmp_path / "d"
    assert download_root() == cache_dir()


def test_bad_data_dir(tmp_path):
    with pytest.raises(TypeError, match="data_dir"):
        data_roots(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_dir"):
        data_roots("")
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    with pytest.raises(ValueError, match="data_dir must be a directory"):
        data_roots(Path(afile))
