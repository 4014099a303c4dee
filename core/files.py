"""Where outputs go and how they are written: a folder is built in a temporary sibling, a file beside
itself, then renamed into place; node-local caches live under `default_cache_dir()`.

Readers never see a half-written folder, and the result has normal permissions (`tempfile.mkdtemp`
creates mode 0700, which hides exports and caches from the other users of a shared machine).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(path: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it becomes `path` (replacing an existing
    one when `replace`), on any exception it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path} exists")
            old = path.with_name(f".{path.name}-old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it becomes `path`, on any exception it is
    deleted and `path` is left as it was. A reader, or a crash, never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_file_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write a file whole or not at all (text as UTF-8)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


CACHE_ENV = "POLYP_KD_TUNE_CACHE"


def default_cache_dir() -> Path:
    """$POLYP_KD_TUNE_CACHE, else ~/.cache/polyp-kd-tune: on local disk of each node, never shared storage."""
    if os.environ.get(CACHE_ENV):
        # $VARS expand where the cache is used: one setting names a folder per node even where nodes share a
        # disk (tests/test_autoscaling.py keys each fake node's cache by its node id this way).
        return Path(os.path.expandvars(os.environ[CACHE_ENV]))
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyp-kd-tune"
