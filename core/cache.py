"""Node-local caches that every trial on a machine shares: the training pool decoded and resized once
(uint8, memory-mapped), and the frozen teacher's logits on it (fp16, memory-mapped).

Each cache lives in a folder named by a hash of its inputs (file list with sizes and mtimes, img_size,
and for logits the teacher checkpoint's bytes), so a changed input means a new cache, never a stale one.
Builders take a file lock, so concurrent trials build a cache once and the rest wait and map it.
Each folder records its files' sizes and checksums when built; one that no longer matches (a truncated
file) is rebuilt, never mapped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from core.checkpoint import resolve_checkpoint_path
from core.config import TrainConfig
from core.data import SamplePair, normalize, read_image, read_mask, to_tensor
from core.errors import UserError
from core.files import CACHE_ENV, atomic_folder, default_cache_dir

# 2: files decoded completely (truncation is an error), 0/1 masks read as binary, TIFFs via tifffile.
# 3: a mask drawn only in the alpha channel is read from it (was all background).
CACHE_VERSION = "3"
BUILD_RECORD = "complete.json"  # written last: {file: {size, ends_sha256}} of a finished build
BUILD_LOG = "builds.jsonl"  # one line per finished build, beside the cache folders of its kind


@dataclass
class DecodedSamples:
    """The training pool at img_size: images N×S×S×3 RGB uint8, masks N×S×S in {0, 1}."""

    images: np.ndarray
    masks: np.ndarray
    stems: list[str]
    key: str
    folder: Path

    def index_of(self, pairs: Sequence[SamplePair]) -> list[int]:
        position = {stem: i for i, stem in enumerate(self.stems)}
        return [position[p.stem] for p in pairs]


def samples_key(pairs: Sequence[SamplePair], img_size: int) -> str:
    digest = hashlib.sha256(f"decoded v{CACHE_VERSION} {img_size}\n".encode())
    for pair in pairs:
        for path in (pair.image, pair.mask):
            stat = path.stat()
            digest.update(f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def decoded_samples(
    pairs: Sequence[SamplePair], img_size: int, cache_dir: str | Path, progress: bool = False
) -> DecodedSamples:
    """Decode and resize every pair once per node; later calls (any process) only map the files."""
    pairs = sorted(pairs, key=lambda p: p.stem)
    key = samples_key(pairs, img_size)
    folder = Path(cache_dir) / "decoded" / key

    def build(tmp: Path) -> None:
        n = len(pairs)
        require_free_disk(tmp, n * img_size * img_size * 4, f"decoded images ({n} at {img_size}px)")
        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, img_size, img_size, 3))
        masks = np.lib.format.open_memmap(tmp / "masks.npy", "w+", np.uint8, (n, img_size, img_size))
        for i, pair in enumerate(
            tqdm(pairs, desc=f"decoding {n} images at {img_size}px", disable=not progress, unit="img")
        ):
            images[i] = cv2.resize(read_image(pair.image), (img_size, img_size), interpolation=cv2.INTER_LINEAR)
            masks[i] = cv2.resize(read_mask(pair.mask), (img_size, img_size), interpolation=cv2.INTER_NEAREST)
        images.flush()
        masks.flush()
        del images, masks
        (tmp / "stems.json").write_text(json.dumps([p.stem for p in pairs]))

    build_once(folder, build)
    return DecodedSamples(
        np.load(folder / "images.npy", mmap_mode="r"),
        np.load(folder / "masks.npy", mmap_mode="r"),
        json.loads((folder / "stems.json").read_text()),
        key,
        folder,
    )


def training_caches(
    cfg: TrainConfig, train_pairs: Sequence[SamplePair], device: torch.device, progress: bool = False
) -> tuple[DecodedSamples, np.ndarray | None]:
    """What a run of `cfg` maps from this node's cache: the decoded training pool, and the teacher's
    logits when it distils from cached logits. A sweep calls it once before its trials, which then only map."""
    cache_dir = cfg.cache_dir or default_cache_dir()
    samples = decoded_samples(train_pairs, cfg.img_size, cache_dir, progress)
    if cfg.mode != "distillation" or cfg.teacher_logits != "cached":
        return samples, None
    from core.models import named_teacher

    teacher = named_teacher(cfg.teacher_checkpoint)
    return samples, teacher_logits(teacher, samples, cache_dir, device, cfg.batch_size, progress)


def teacher_logits(
    teacher_checkpoint: str | Path,
    samples: DecodedSamples,
    cache_dir: str | Path,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """The teacher's logits (N×S×S fp16) on the un-augmented cached images, computed once per node."""
    from core.models import load_frozen_teacher

    teacher_checkpoint = resolve_checkpoint_path(teacher_checkpoint)  # a run folder names its best.pt
    key = hashlib.sha256(f"logits v{CACHE_VERSION} {file_sha256(teacher_checkpoint)} {samples.key}".encode())
    folder = Path(cache_dir) / "teacher_logits" / key.hexdigest()[:20]

    def build(tmp: Path) -> None:
        teacher = load_frozen_teacher(str(teacher_checkpoint), device)
        n, size = samples.images.shape[:2]
        require_free_disk(tmp, n * size * size * 2, f"teacher logits ({n} at {size}px)")
        out = np.lib.format.open_memmap(tmp / "logits.npy", "w+", np.float16, (n, size, size))
        amp = device.type == "cuda"
        with torch.no_grad():
            for start in tqdm(range(0, n, batch_size), desc="teacher logits", disable=not progress, unit="batch"):
                images = samples.images[start : start + batch_size]
                batch = normalize(torch.stack([to_tensor(np.array(image)) for image in images]))
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    logits = teacher(batch.to(device))
                out[start : start + len(batch)] = logits[:, 0].float().cpu().numpy().astype(np.float16)
        out.flush()
        del out
        (tmp / "source.json").write_text(
            json.dumps({"teacher_checkpoint": str(teacher_checkpoint), "decoded": samples.key})
        )

    build_once(folder, build)
    return np.load(folder / "logits.npy", mmap_mode="r")


def require_free_disk(folder: Path, needed: int, what: str) -> None:
    """One UserError, before anything is allocated, when `folder`'s disk has less than `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(
            f"{folder.parent}: the cache of {what} needs {_size(needed)} and its disk has {_size(free)} free; free "
            f"some space, or point cache_dir (or ${CACHE_ENV}) at a larger disk"
        )


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def build_once(folder: Path, build: Callable[[Path], None]) -> None:
    """Run `build(tmp)` in a temporary sibling renamed to `folder`, unless `folder` holds an intact build;
    one builder at a time. A folder whose files differ from what was recorded at build time (sizes, and
    checksums of each file's ends) is rebuilt, saying so in one line: mapping it would crash or mislead."""
    if _damage(folder) is None:
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder.parent / f"{folder.name}.lock"):
        damage = _damage(folder)
        if damage is None:
            return
        if folder.exists():
            print(f"cache {folder}: {damage}; rebuilding it", file=sys.stderr)
        started = time.time()
        with atomic_folder(folder) as tmp:
            build(tmp)
            record = {str(p.relative_to(tmp)): _fingerprint(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            (tmp / BUILD_RECORD).write_text(json.dumps(record, indent=1))
        # Who built what, when: how a cluster's nodes show that each built its caches once.
        with open(folder.parent / BUILD_LOG, "a") as log:
            log.write(
                json.dumps(
                    {
                        "cache": folder.name,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "started": started,
                        "seconds": round(time.time() - started, 3),
                    }
                )
                + "\n"
            )


def _fingerprint(path: Path) -> dict[str, int | str]:
    # Size catches truncation; the ends' checksum catches an overwritten header or tail. Hashing whole
    # files (hundreds of MB of decoded images) at every trial start would cost more than it protects.
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
        digest.update(f.read())
    return {"size": size, "ends_sha256": digest.hexdigest()}


def _damage(folder: Path) -> str | None:
    """None if `folder` holds a finished build whose files match its record, else what is wrong."""
    if not folder.is_dir():
        return "not built"
    try:
        record = json.loads((folder / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return f"no readable {BUILD_RECORD} (an unfinished or older build)"
    for name, expected in record.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} is {size} bytes but was {expected['size']} when built"
        if _fingerprint(path) != expected:
            return f"{name} differs from what was built (checksum)"
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
