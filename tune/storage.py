"""Where a sweep's shared files live: a local folder, or a URI (s3://, gs://, file://) that every node
of a cluster reaches. Ray Tune writes trials there itself; these helpers move the sweep's own files
(report, teacher checkpoint) and fetch a remote file into a node-local cache once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.fs as pafs

from core.cache import build_once, default_cache_dir


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    return "/".join([str(location).rstrip("/"), *parts])


def resolve(location: str | Path) -> str:
    """An absolute local path (Ray needs one) or the URI unchanged."""
    return str(location) if is_uri(location) else str(Path(location).expanduser().resolve())


def upload(local: Path, location: str) -> None:
    """Copy a local file or folder to `location` (a path or URI)."""
    fs, path = pafs.FileSystem.from_uri(location) if is_uri(location) else (pafs.LocalFileSystem(), location)
    fs.create_dir(path.rsplit("/", 1)[0] if local.is_file() else path, recursive=True)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def exists(location: str) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    fs, path = pafs.FileSystem.from_uri(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def local_copy(location: str, cache_dir: str | Path | None = None) -> str:
    """A local path for `location`: itself if local, else a copy fetched once per node into the cache."""
    if not is_uri(location):
        return location
    name = location.rstrip("/").rsplit("/", 1)[-1]
    folder = Path(cache_dir or default_cache_dir()) / "remote" / hashlib.sha256(location.encode()).hexdigest()[:20]

    def fetch(tmp: Path) -> None:
        fs, path = pafs.FileSystem.from_uri(location)
        pafs.copy_files(path, str(tmp / name), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())

    build_once(folder, fetch)
    return str(folder / name)
