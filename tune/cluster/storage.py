"""Where a sweep's shared files live: a local folder, or a URI (s3://, gs://, file://) that every node
of a cluster reaches. Ray Tune writes trials there itself; these helpers move the sweep's own files
(report, teacher checkpoint) and fetch a remote file into a node-local cache once per version of it.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pyarrow.fs as pafs

from core.cache import build_once
from core.errors import UserError, cli_errors
from core.files import default_cache_dir


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(location: str, *parts: str) -> str:
    """A path or URI (s3://, gs://, file://) joined with '/'."""
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
    """A local path for `location`: itself if local, else a copy fetched once per node into the cache.

    The copy is keyed by the location *and* its version (size and modification time of the file, or of
    every file under a folder: S3's LastModified, GCS's update time), so a teacher replaced at the same URI
    is fetched again, and the teacher-logit cache (keyed by the checkpoint's bytes) follows it."""
    if not is_uri(location):
        return location
    fs, path = pafs.FileSystem.from_uri(location)
    name = location.rstrip("/").rsplit("/", 1)[-1]
    key = hashlib.sha256(f"{location}\n{version(fs, path, location)}".encode()).hexdigest()[:20]
    folder = Path(cache_dir or default_cache_dir()) / "remote" / key

    def fetch(tmp: Path) -> None:
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            (tmp / name).mkdir()  # pyarrow copies a folder's files but does not create the folder
        pafs.copy_files(path, str(tmp / name), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())

    build_once(folder, fetch)
    return str(folder / name)


def version(fs: pafs.FileSystem, path: str, location: str) -> str:
    """What changes when the object at `path` is replaced: its size and mtime (a folder: each file's)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"{location}: not found in the storage; check the URI (and that this node may read it)")
    if info.type == pafs.FileType.File:
        return f"{info.size} {info.mtime_ns}"
    files = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    return "\n".join(f"{i.path[len(path) :]} {i.size} {i.mtime_ns}" for i in sorted(files, key=lambda i: i.path))


def main(argv: list[str] | None = None) -> None:
    """`python -m tune.cluster.storage upload LOCAL LOCATION`: copy a local file or folder to a path or URI (what
    ./launch.sh sweep does with a teacher trained on this machine); an existing LOCATION is left as it is."""
    parser = argparse.ArgumentParser(prog="python -m tune.cluster.storage", description=main.__doc__)
    parser.add_argument("command", choices=["upload"])
    parser.add_argument("local", type=Path)
    parser.add_argument("location")
    args = parser.parse_args(argv)
    with cli_errors():
        if not args.local.exists():
            raise UserError(f"{args.local}: not found; nothing to upload")
        if exists(args.location):
            print(f"{args.location}: already in the storage")
            return
        upload(args.local, args.location)
        print(f"uploaded {args.local} -> {args.location}")


if __name__ == "__main__":
    main()
