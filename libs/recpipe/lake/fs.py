"""The one filesystem helper: local paths and scheme URIs (``s3://``, ``gs://``, ``file://``, ...)
through ``pyarrow.fs``.

Every "is this a URI or a local path?" decision goes through :func:`is_uri`. Local paths come in
two flavours, kept as the callers always had them:

- :func:`resolved` (``Path.resolve()``: absolute, symlinks followed) for paths shown to the user or
  compared with paths Spark reports;
- :func:`absolute` (``os.path.abspath``: absolute, lexical) for the lake root and run folders;
- neither (``filesystem(path, resolve=False)``) where the path is only opened.

URIs are never rewritten.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import pyarrow.fs as pafs

__all__ = [
    "absolute",
    "exists",
    "filesystem",
    "fs_path",
    "is_uri",
    "join",
    "local_path",
    "make_dirs",
    "read_bytes",
    "resolved",
    "scheme_prefix",
    "with_scheme_of",
    "write_bytes",
]

_SEP = "://"


def is_uri(path: str) -> bool:
    """Whether ``path`` is a scheme URI (``s3://b/k``, ``file:///a``) rather than a local path."""
    return _SEP in path


def scheme_prefix(path: str) -> str:
    """``"s3://"`` of ``s3://b/k``; ``""`` of a local path."""
    return path.split(_SEP, 1)[0] + _SEP if is_uri(path) else ""


def with_scheme_of(path: str, like: str) -> str:
    """A filesystem path (as :func:`filesystem` returns it) as a URI Spark can read: ``path``
    prefixed with the scheme of ``like`` (unchanged when ``like`` is a local path)."""
    return scheme_prefix(like) + path


def local_path(path: str) -> str:
    """A ``file:`` URI (``file:///a/b`` as Spark and delta-rs report files, or ``file:/a/b``) as
    the local path ``/a/b``; anything else unchanged."""
    if path.startswith("file://"):
        return path[len("file://") :]
    if path.startswith("file:"):
        return path[len("file:") :]
    return path


def absolute(path: str) -> str:
    """A URI unchanged; a local path made absolute lexically (``os.path.abspath``)."""
    return path if is_uri(path) else os.path.abspath(path)


def resolved(path: str) -> str:
    """A URI unchanged; a local path made absolute with symlinks followed (``Path.resolve()``)."""
    return path if is_uri(path) else str(Path(path).resolve())


def filesystem(path: str, *, resolve: bool = True) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` of a local path or a URI.

    A URI goes to ``pyarrow.fs.FileSystem.from_uri``; a local path gets the local filesystem and is
    :func:`resolved` (or left exactly as given with ``resolve=False``).
    """
    if is_uri(path):
        fs, inner = pafs.FileSystem.from_uri(path)
        return fs, inner
    return pafs.LocalFileSystem(), resolved(path) if resolve else path


def fs_path(path: str) -> str:
    """The path inside its filesystem: a URI's path part, a local path unchanged."""
    return filesystem(path, resolve=False)[1]


def join(base: str, *names: str) -> str:
    """``base/name/...`` for a local path or a URI (``posixpath.join``: no doubled ``/``)."""
    return posixpath.join(base, *names)


def exists(path: str) -> bool:
    """Whether a file or folder exists at ``path``."""
    fs, p = filesystem(path, resolve=False)
    found: bool = fs.get_file_info(p).type != pafs.FileType.NotFound
    return found


def make_dirs(path: str) -> None:
    """Create the folder ``path`` and its parents (no error when it exists)."""
    fs, p = filesystem(path, resolve=False)
    fs.create_dir(p, recursive=True)


def read_bytes(path: str) -> bytes:
    """The whole file at ``path``, as stored (no decompression by file name).

    Raises ``FileNotFoundError`` when there is no such file.
    """
    fs, p = filesystem(path, resolve=False)
    with fs.open_input_stream(p, compression=None) as fh:
        data: bytes = fh.read()
    return data


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to the file at ``path`` (replaced when it exists; the folder must exist on a
    local filesystem)."""
    fs, p = filesystem(path, resolve=False)
    with fs.open_output_stream(p, compression=None) as fh:
        fh.write(data)
