"""Where outputs go and how they are written: a folder is built in a temporary sibling, a file beside
itself, then renamed into place; node-local caches live under `default_cache_dir()`.

Readers never see a half-written folder, and the result has normal permissions (`tempfile.mkdtemp`
creates mode 0700, which hides exports and caches from the other users of a shared machine).

One rule for every command's --out (`check_output`, `output_folder`): an existing output is replaced only
when this project wrote it as the same kind of output (a folder by its manifest, OUTPUT_MANIFEST, which lists
every file the command wrote with its hash; an empty folder is fine), and an output never is, contains or
lies inside one of the command's inputs or the sweep folder it reads. A rerun replaces only the files the
manifest lists: files the user added are carried into the new folder, and one the user edited since, or one
in the way of a new file, stops the rerun before anything changes. Paths are compared resolved (symlinks,
`..`). A failure of the machine while writing (no permission, read-only, disk full, file too large) is one
UserError naming the file, and the earlier output is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import NO_ROOM, NOT_WRITABLE, UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(
    path: str | Path, replace: bool = True, keep: Callable[[Path, Path], list[str]] | None = None
) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it becomes `path` (replacing an existing
    one when `replace`), on any exception it is deleted and `path` is left as it was.

    `keep(old, new)` names the entries (relative paths) of the existing folder to carry into the new one
    before the swap, so that only the rest is replaced; if moving them fails they are moved back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    moved: list[str] = []
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path} exists")
            for rel in keep(path, tmp) if keep else []:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path / rel, tmp / rel)
                moved.append(rel)
            old = path.with_name(f".{path.name}-old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            moved.clear()  # they are at `path` now, where they were
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        for rel in reversed(moved):  # a failure before the swap: the user's files go back where they were
            with contextlib.suppress(OSError):
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, path / rel)
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


OUTPUT_MANIFEST = ".polyp-kd-tune-output.json"


@dataclass(frozen=True)
class OutputKind:
    """A kind of output this project writes, and how to tell one it wrote: a folder by its OUTPUT_MANIFEST
    (written by `output_folder`, naming this kind); a file by `recognise` (None when it is one, else why not)."""

    name: str  # with its article: "an export folder"
    recognise: Callable[[Path], str | None] | None = None

    def why_not_replaceable(self, path: Path) -> str | None:
        """None when `path` may be replaced: absent, an empty folder, or an output of this kind whose files
        are as this project wrote them (the files the user added beside them are kept: `output_folder`)."""
        if not path.exists():
            return None
        if self.recognise is not None:
            return "a folder" if path.is_dir() else self.recognise(path)
        if not path.is_dir():
            return "a file"
        if not any(path.iterdir()):
            return None
        manifest = read_manifest(path)
        if manifest is None:
            return f"no {OUTPUT_MANIFEST}: this project did not write it"
        if manifest.get("kind") != self.name:
            return f"its {OUTPUT_MANIFEST} says {manifest.get('kind')}"
        for rel, expected in manifest["files"].items():
            if file_digest(path / rel) not in (expected, None):
                return f"{rel} changed since it was written"
        return None


def read_manifest(folder: Path) -> dict | None:
    """The OUTPUT_MANIFEST of `folder` ({"kind": ..., "files": {relative path: {size, sha256}}}), or None
    where there is none or it is not one (then nothing in the folder counts as this project's)."""
    try:
        manifest = json.loads((folder / OUTPUT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def file_digest(path: Path) -> dict[str, int | str] | None:
    """Size and SHA-256 of a regular file (not followed through a link); None when there is none."""
    if path.is_symlink() or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _entries(folder: Path) -> list[str]:
    """Every file, link and folder under `folder`, relative, parents first (links are not followed)."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder):
        found.extend(str((Path(top) / name).relative_to(folder)) for name in sorted(dirs) + sorted(files))
    return found


def write_manifest(folder: Path, kind: OutputKind) -> None:
    """Record every file and folder in `folder` as written by this project as `kind` (the last file written)."""
    entries = _entries(folder)
    record = {
        "written_by": "polyp-kd-tune",
        "kind": kind.name,
        "files": {rel: record for rel in entries if (record := file_digest(folder / rel))},
        "folders": [rel for rel in entries if (folder / rel).is_dir() and not (folder / rel).is_symlink()],
    }
    (folder / OUTPUT_MANIFEST).write_text(json.dumps(record, indent=1), encoding="utf-8")


def users_entries(old: Path, new: Path) -> list[str]:
    """The entries of an earlier output `old` that its manifest does not list (what the user put there), to
    carry into `new`: the topmost of each (a folder of their own moves whole). One in the way of a new
    output's file or folder is a UserError, and nothing has moved yet."""
    manifest = read_manifest(old) or {"files": {}}
    ours = {*manifest["files"], *manifest.get("folders", []), OUTPUT_MANIFEST}
    theirs: list[str] = []
    for rel in _entries(old):
        if rel in ours or any(rel.startswith(f"{top}/") for top in theirs):
            continue  # ours, or inside a folder of theirs that moves whole
        theirs.append(rel)
    clash = next((rel for rel in theirs if os.path.lexists(new / rel)), None)
    if clash:
        raise UserError(
            f"{old / clash}: this project did not write it and the new output has a file of that name; move "
            f"it away and run again (nothing was changed)"
        )
    return theirs


def check_output(
    out: str | Path,
    kind: OutputKind,
    protected: Sequence[tuple[str, str | Path]] = (),
    allowed: Sequence[str | Path] = (),
) -> Path:
    """The one rule every command's --out obeys; returns `out` resolved (write there, not through a link).

    `protected` are (label, path) of the command's inputs and the sweep folder: `out` may not be one, contain
    one or lie inside one, except that an `allowed` path (export's default <sweep>/export) may lie inside."""
    given = Path(out).expanduser()
    target = given.resolve()
    exempt = {Path(p).expanduser().resolve() for p in allowed}
    for label, path in protected:
        guarded = Path(path).expanduser().resolve()
        relation = _relation(target, guarded)
        if relation and not (relation == "lies inside" and target in exempt):
            shown = f"{path}" + (f" ({guarded})" if str(guarded) != str(path) else "")
            raise UserError(f"{given}: the output {relation} the {label} {shown}; choose another --out")
    why = kind.why_not_replaceable(target)
    if why:
        raise UserError(f"{given}: not {kind.name} ({why}); choose another --out or remove it")
    return target


def _relation(out: Path, guarded: Path) -> str | None:
    if out == guarded:
        return "is"
    if out in guarded.parents:
        return "contains"
    if guarded in out.parents:
        return "lies inside"
    return None


@contextlib.contextmanager
def output_folder(
    out: str | Path,
    kind: OutputKind,
    protected: Sequence[tuple[str, str | Path]] = (),
    allowed: Sequence[str | Path] = (),
    needed_bytes: int | None = None,
) -> Iterator[Path]:
    """`check_output`, then `atomic_folder` at the resolved path, with the manifest of what was written
    added last and the files the user added to an earlier output carried over. A failure of the machine while
    writing becomes one UserError naming the file (and `needed_bytes`, the expected size, where known)."""
    target = check_output(out, kind, protected, allowed)
    try:
        with atomic_folder(target, keep=users_entries) as tmp:
            yield tmp
            write_manifest(tmp, kind)
    except OSError as err:
        problem = write_failure(err, Path(out), needed_bytes)
        if problem is None:
            raise
        raise problem from None


_NOT_WRITABLE = NOT_WRITABLE
_NO_ROOM = (*NO_ROOM, errno.EIO)  # EIO: how `writing` reports torch.save's failure below
# torch.save(obj, path) writes through its own C++ writer: a full disk or a file size limit arrives as
# RuntimeError("[enforce fail at inline_container.cc:...] . unexpected pos 704 vs 598"), without errno or file
# (measured with torch 2.14 writing to /dev/full and under RLIMIT_FSIZE).
_TORCH_WRITER_FAILURES = ("inline_container.cc", "PytorchStreamWriter", "unexpected pos", "file write failed")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Name `path` in a failure to write it that names no file (a write's OSError, torch.save's RuntimeError)."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise
    except RuntimeError as err:
        if any(sign in str(err) for sign in _TORCH_WRITER_FAILURES):
            raise OSError(errno.EIO, "PyTorch's writer stopped (a full disk or a file size limit)", str(path)) from err
        raise


def write_failure(err: OSError, out: Path, needed_bytes: int | None = None) -> UserError | None:
    """The one-line UserError for a failure of the machine while writing `out`, or None for any other OSError."""
    if err.errno not in _NOT_WRITABLE + _NO_ROOM:
        return None
    where = _shown(err.filename, out)
    reason = err.strerror or os.strerror(err.errno)
    reason = reason.lower() if reason == os.strerror(err.errno) else reason  # the system's words, mid-sentence
    if err.errno in _NOT_WRITABLE:
        return UserError(f"{where}: cannot write there ({reason}); choose another --out or make it writable")
    return UserError(
        f"{where}: {reason} while writing it ({_room(out, needed_bytes)}); {out} is as it was "
        f"before; free some space or choose another --out"
    )


def _shown(filename: str | bytes | None, out: Path) -> Path:
    """Where a write failed, as the user knows it: a file in atomic_folder's temporary sibling is shown
    under `out`, the sibling itself as the folder it was to be made in, atomic_file's temporary as `out`."""
    if filename is None:
        return out
    path = Path(os.fsdecode(filename))
    target = out.expanduser().resolve()
    if path.parent == target.parent and path.name.startswith(f".{target.name}.tmp-"):
        return out
    for folder in (path, *path.parents):
        if folder.parent == target.parent and folder.name.startswith(f".{target.name}-"):
            return target.parent if folder == path else out / path.relative_to(folder)
    return path


def _room(out: Path, needed_bytes: int | None) -> str:
    existing = next(p for p in (out.expanduser().resolve(), *out.expanduser().resolve().parents) if p.exists())
    free = f"{_megabytes(shutil.disk_usage(existing).free)} free in {existing}"
    return f"about {_megabytes(needed_bytes)} needed, {free}" if needed_bytes else free


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


CACHE_ENV = "POLYP_KD_TUNE_CACHE"


def default_cache_dir() -> Path:
    """$POLYP_KD_TUNE_CACHE, else ~/.cache/polyp-kd-tune: on local disk of each node, never shared storage."""
    if os.environ.get(CACHE_ENV):
        # $VARS expand where the cache is used: one setting names a folder per node even where nodes share a
        # disk (tests/test_autoscaling.py keys each fake node's cache by its node id this way).
        return Path(os.path.expandvars(os.environ[CACHE_ENV]))
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "polyp-kd-tune"
