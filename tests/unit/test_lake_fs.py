"""recpipe.lake.fs: local paths (absolute and relative), file:// URIs, missing files."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from recpipe.lake import fs


def test_is_uri_and_scheme_prefix():
    assert fs.is_uri("s3://bucket/key") and fs.is_uri("file:///tmp/a")
    assert not fs.is_uri("/tmp/a") and not fs.is_uri("rel/a")
    assert fs.scheme_prefix("s3://bucket/key") == "s3://"
    assert fs.scheme_prefix("/tmp/a") == ""
    assert fs.with_scheme_of("bucket/events", "s3://bucket") == "s3://bucket/events"
    assert fs.with_scheme_of("/data/events", "/data") == "/data/events"


def test_local_absolute_path_round_trip(tmp_path):
    path = str(tmp_path / "a.bin")
    fs.write_bytes(path, b"\x00abc")
    assert fs.read_bytes(path) == b"\x00abc"
    assert fs.exists(path) and fs.exists(str(tmp_path))
    filesystem, inner = fs.filesystem(path)
    assert isinstance(filesystem, pafs.LocalFileSystem) and inner == str(Path(path).resolve())
    assert fs.fs_path(path) == path


def test_relative_path_resolves_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fs.make_dirs("sub/dir")
    fs.write_bytes("sub/dir/a.txt", b"hello")
    assert (tmp_path / "sub" / "dir" / "a.txt").read_bytes() == b"hello"
    assert fs.read_bytes("sub/dir/a.txt") == b"hello"
    # resolved: Path.resolve(); absolute: os.path.abspath; resolve=False: as given
    assert fs.filesystem("sub/dir")[1] == str(Path("sub/dir").resolve())
    assert fs.resolved("sub/../sub/dir") == str(Path("sub/dir").resolve())
    assert fs.absolute("sub/dir") == os.path.abspath("sub/dir")
    assert fs.filesystem("sub/dir", resolve=False)[1] == "sub/dir"
    assert fs.fs_path("sub/dir") == "sub/dir"


def test_uris_are_left_unchanged():
    assert fs.resolved("s3://bucket/a/../b") == "s3://bucket/a/../b"
    assert fs.absolute("s3://bucket/a") == "s3://bucket/a"


def test_file_uri(tmp_path):
    uri = (tmp_path / "b.json").as_uri()
    assert uri.startswith("file://")
    fs.write_bytes(uri, b"{}")
    assert (tmp_path / "b.json").read_bytes() == b"{}"
    assert fs.read_bytes(uri) == b"{}" and fs.exists(uri)
    filesystem, inner = fs.filesystem(uri)
    assert isinstance(filesystem, pafs.LocalFileSystem) and inner == str(tmp_path / "b.json")
    assert fs.fs_path(uri) == str(tmp_path / "b.json")


def test_join():
    assert fs.join("s3://b/models", "run", "model.keras") == "s3://b/models/run/model.keras"
    assert fs.join("/m/", "x") == "/m/x"


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.json")
    assert not fs.exists(missing)
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(missing)
    with pytest.raises(FileNotFoundError):
        fs.read_bytes((tmp_path / "nope.json").as_uri())


def test_local_path_of_file_uris():
    """Spark and delta-rs report local files as ``file:`` URIs; one helper turns them into paths."""
    assert fs.local_path("file:///data/lake/part-0.parquet") == "/data/lake/part-0.parquet"
    assert fs.local_path("file:/data/lake") == "/data/lake"
    assert fs.local_path("/data/lake") == "/data/lake"
    assert fs.local_path("s3://bucket/lake") == "s3://bucket/lake"
