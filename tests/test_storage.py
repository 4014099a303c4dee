"""tune/cluster/storage.py on file:// URIs: a remote file or folder is fetched once per node, and fetched again
when it is replaced at the same URI (the copy is keyed by its size and mtime, not by the URI alone)."""

import json
import os
from pathlib import Path

import pytest

from core.cache import BUILD_LOG
from core.errors import UserError
from tune.cluster import storage


def fetches(cache: Path) -> int:
    log = cache / "remote" / BUILD_LOG
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_remote_file_is_fetched_once_then_again_after_it_is_replaced(tmp_path):
    shared, cache = tmp_path / "bucket", tmp_path / "cache"
    shared.mkdir()
    teacher = shared / "best.pt"
    teacher.write_bytes(b"teacher v1")
    uri = f"file://{teacher}"

    first = storage.local_copy(uri, cache)
    assert Path(first).read_bytes() == b"teacher v1" and Path(first).name == "best.pt"
    assert storage.local_copy(uri, cache) == first and fetches(cache) == 1

    teacher.write_bytes(b"teacher v2 (retrained)")
    second = storage.local_copy(uri, cache)
    assert second != first and Path(second).read_bytes() == b"teacher v2 (retrained)"
    assert fetches(cache) == 2

    # Same size, newer mtime: still a new version.
    teacher.write_bytes(b"teacher v3 (retrained)")
    os.utime(teacher, ns=(teacher.stat().st_atime_ns, teacher.stat().st_mtime_ns + 10**9))
    third = storage.local_copy(uri, cache)
    assert third not in (first, second) and Path(third).read_bytes() == b"teacher v3 (retrained)"
    assert [json.loads(line)["cache"] for line in (cache / "remote" / BUILD_LOG).read_text().splitlines()] == [
        Path(p).parent.name for p in (first, second, third)
    ]


def test_remote_folder_is_keyed_by_every_file_in_it(tmp_path):
    export = tmp_path / "bucket" / "export"
    export.mkdir(parents=True)
    (export / "model.pt").write_bytes(b"weights")
    (export / "config.yaml").write_text("img_size: 64\n")
    uri = f"file://{export}"

    first = Path(storage.local_copy(uri, tmp_path / "cache"))
    assert sorted(p.name for p in first.iterdir()) == ["config.yaml", "model.pt"]
    assert storage.local_copy(uri, tmp_path / "cache") == str(first)
    (export / "model.pt").write_bytes(b"other weights")
    second = Path(storage.local_copy(uri, tmp_path / "cache"))
    assert second != first and (second / "model.pt").read_bytes() == b"other weights"


def test_missing_remote_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not found in the storage"):
        storage.local_copy(f"file://{tmp_path}/nope/best.pt", tmp_path / "cache")


def test_local_paths_are_used_in_place(tmp_path):
    assert storage.local_copy(str(tmp_path / "best.pt"), tmp_path / "cache") == str(tmp_path / "best.pt")
    assert not (tmp_path / "cache").exists()
