"""The validation split carved from TrainDataset: random, or grouped so that near-duplicate images never sit
on both sides, plus the record of a split that every checkpoint carries.

CVC-ClinicDB frames come from a few dozen colonoscopy videos and neighbouring frames are near-duplicates;
a random split puts them on both sides and inflates validation Dice. `grouped` keeps each group whole.
Groups come from names and pixels together (`content_groups`): a stem's `video` and `frame` come from
`val_group_pattern` (default: the stem without its trailing number, and that number), and within one video
each frame joins the previous one in frame order, across gaps in the numbering (PraNet took its test frames
out of ClinicDB's sequences), while their signatures (32x32 grey thumbnails, mean-subtracted, normalised)
correlate above SEQUENCE_CORRELATION; any two images of TrainDataset, whatever their names, whose
signatures correlate above DUPLICATE_CORRELATION join one group too (Kvasir-SEG holds a few copies).
Signatures are computed once per node and cached. A `val_groups` CSV of `stem,group` rows replaces all of
this with the groups it names (a stem it does not list is a group of its own).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from core import image_files
from core.errors import UserError
from core.files import atomic_file, default_cache_dir

VAL_SPLITS = ("random", "grouped")
DEFAULT_GROUP_PATTERN = r"^(?P<video>.*?)(?P<frame>\d+)$"
SIGNATURE_SIDE = 32
SIGNATURE_VERSION = "1"
# Measured on the 550 PraNet ClinicDB training frames (29 videos, cuts located by eye): neighbours in one
# video correlate at median 0.92 (5 % below 0.66, gaps included), across the 28 video cuts at median 0.59.
# At 0.6, 14 of 521 in-video links break and 12 cuts are missed: 31 ClinicDB groups. The black octagon
# border all ClinicDB frames share keeps different videos correlated: this signature allows no cleaner cut.
SEQUENCE_CORRELATION = 0.6
# No two ClinicDB frames of different videos correlate above 0.973. Kvasir's four copies correlate at
# 0.993-1.0; below 0.98 same-scene frames and different polyps mix (0.967 same, 0.955 other, 0.949 same).
DUPLICATE_CORRELATION = 0.98
_PAIR_BLOCK = 1024  # rows of the all-pairs correlation at a time: memory stays O(block x N)


def frame_groups(stems: Sequence[str], pattern: str = DEFAULT_GROUP_PATTERN) -> list[list[str]]:
    """The groups names alone give (before content signatures): runs of one video whose frame numbers
    follow without a gap. On ClinicDB they cut at every frame PraNet moved to its test set."""
    by_video, unmatched = _frames_by_video(stems, pattern)
    groups = [[stem] for stem in unmatched]
    for frames in by_video.values():
        run = [frames[0][1]]
        for (previous, _), (frame, stem) in itertools.pairwise(frames):
            if frame > previous + 1:
                groups.append(run)
                run = []
            run.append(stem)
        groups.append(run)
    return sorted(groups, key=lambda g: g[0])


def content_groups(
    pairs: Sequence, pattern: str = DEFAULT_GROUP_PATTERN, cache_dir: str | Path | None = None
) -> list[list[str]]:
    """SamplePairs (anything with `.stem` and `.image`) grouped by name order and image signature (see the
    module docstring); each group sorted, the groups sorted by their first stem."""
    ordered = sorted(pairs, key=lambda p: p.stem)
    stems = [p.stem for p in ordered]
    signatures = image_signatures(ordered, cache_dir)
    parent = list(range(len(stems)))
    by_video, _ = _frames_by_video(stems, pattern)
    row = {stem: i for i, stem in enumerate(stems)}
    for frames in by_video.values():
        for (_, a), (_, b) in itertools.pairwise(frames):
            if float(signatures[row[a]] @ signatures[row[b]]) > SEQUENCE_CORRELATION:
                _union(parent, row[a], row[b])
    for i, j in _similar_pairs(signatures, DUPLICATE_CORRELATION):
        _union(parent, i, j)
    groups: dict[int, list[str]] = {}
    for i, stem in enumerate(stems):
        groups.setdefault(_root(parent, i), []).append(stem)
    return sorted(groups.values(), key=lambda g: g[0])


def image_signature(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> the unit-length, zero-mean SIGNATURE_SIDE² grey thumbnail (float32): the dot
    product of two signatures is their normalised correlation. A flat image's signature is all zeros."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (SIGNATURE_SIDE, SIGNATURE_SIDE), interpolation=cv2.INTER_AREA)
    vector = thumb.astype(np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-3 else np.zeros_like(vector)


def image_signatures(pairs: Sequence, cache_dir: str | Path | None = None) -> np.ndarray:
    """N x SIGNATURE_SIDE² signatures of the pairs' images, in their order: read from this node's cache,
    which is named by the files' paths, sizes and mtimes, or computed once and written there."""
    shape = (len(pairs), SIGNATURE_SIDE**2)
    if not pairs:
        return np.zeros(shape, np.float32)
    ordered = sorted(range(len(pairs)), key=lambda i: pairs[i].stem)
    digest = hashlib.sha256(f"split signatures v{SIGNATURE_VERSION} {SIGNATURE_SIDE}\n".encode())
    for i in ordered:
        stat = Path(pairs[i].image).stat()
        digest.update(f"{Path(pairs[i].image).resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    path = _cache_root(cache_dir) / "split_signatures" / f"{digest.hexdigest()[:20]}.npy"
    signatures = _load_signatures(path, shape)
    if signatures is None:
        signatures = np.stack([image_signature(_read_rgb(Path(pairs[i].image))) for i in ordered])
        path.parent.mkdir(parents=True, exist_ok=True)
        # Concurrent trials may each build it; every one writes the same bytes, renamed in whole.
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.save(f, signatures)
    out = np.empty(shape, np.float32)
    out[ordered] = signatures
    return out


def csv_groups(path: str | Path, stems: Sequence[str]) -> list[list[str]]:
    """The groups a `val_groups` CSV names, over `stems`; a stem it does not list is a group of its own
    (and a stem it lists that is not among `stems` is ignored: one file may cover more data)."""
    label_of = read_val_groups(path)
    groups: dict[tuple[str, str], list[str]] = {}
    for stem in sorted(stems):
        key = ("file", label_of[stem]) if stem in label_of else ("own", stem)
        groups.setdefault(key, []).append(stem)
    return sorted(groups.values(), key=lambda g: g[0])


def read_val_groups(path: str | Path) -> dict[str, str]:
    """stem -> group from a CSV of `stem,group` rows (an optional `stem,group` header, blank lines allowed);
    anything else is one UserError naming the file and line."""
    path = Path(path).expanduser()
    fix = "each line must be `stem,group` (the image file name without extension, then any group name)"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            label_of: dict[str, str] = {}
            reader = csv.reader(f)
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells) or (reader.line_num == 1 and [c.lower() for c in cells] == ["stem", "group"]):
                    continue
                if len(cells) != 2 or not all(cells):
                    raise UserError(f"{path}, line {reader.line_num}: {row!r} is not a stem,group row; {fix}")
                stem, label = cells
                if label_of.setdefault(stem, label) != label:
                    raise UserError(
                        f"{path}, line {reader.line_num}: stem {stem!r} is already in group "
                        f"{label_of[stem]!r}; list each stem once"
                    )
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: val_groups file not readable ({err}); {fix}") from None
    if not label_of:
        raise UserError(f"{path}: val_groups file holds no stem,group rows; {fix}")
    return label_of


def split_stems(
    stems: Sequence[str],
    val_fraction: float,
    seed: int,
    how: str = "random",
    groups: Sequence[Sequence[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(train stems, validation stems), deterministic for the same stems, fraction, seed, method and
    groups. `grouped` draws whole `groups` (a stem in none is a group of its own) until the fraction is met."""
    ordered = sorted(stems)
    if len(ordered) < 2:
        raise UserError("TrainDataset: need at least 2 training images to carve a validation split")
    n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    rng = np.random.default_rng(seed)
    if how == "random":
        val = {ordered[i] for i in rng.permutation(len(ordered))[:n_val].tolist()}
    elif how == "grouped":
        if groups is None:
            raise ValueError("split_stems(how='grouped') needs the groups (see content_groups, csv_groups)")
        groups = _cover(groups, ordered)
        if len(groups) < 2:
            raise UserError(
                "val_split grouped: every training image falls into one group (by val_group_pattern "
                "and near-duplicate images, or by val_groups); use val_split=random, or a "
                "val_groups file or val_group_pattern that tells videos apart"
            )
        val = set()
        for index in rng.permutation(len(groups)).tolist():
            if len(val) >= n_val:
                break
            if len(val) + len(groups[index]) >= len(ordered):
                continue  # never leave training empty
            val.update(groups[index])
    else:
        raise UserError(f"'val_split' is {how!r}; allowed values: {', '.join(VAL_SPLITS)}")
    return [s for s in ordered if s not in val], [s for s in ordered if s in val]


def split_pairs(
    pairs: Sequence,
    val_fraction: float,
    seed: int,
    how: str = "random",
    pattern: str = DEFAULT_GROUP_PATTERN,
    val_groups: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[list, list]:
    """`split_stems` over SamplePairs (anything with `.stem` and `.image`); `grouped` groups them by
    `val_groups` when given, else by `content_groups`."""
    train, val, _ = _split(pairs, val_fraction, seed, how, pattern, val_groups, cache_dir)
    return train, val


@dataclass
class TrainingSplit:
    """The split a TrainConfig trains on: its pairs, the record a checkpoint stores, and the groups drawn
    (each stem its own for `random`)."""

    train: list
    val: list
    record: dict[str, Any]
    groups: list[list[str]] = field(default_factory=list)


class SplitSettings(Protocol):
    """The TrainConfig fields a split depends on (core.config imports this module, so not TrainConfig itself)."""

    @property
    def data_root(self) -> str: ...
    @property
    def val_fraction(self) -> float: ...
    @property
    def split_seed(self) -> int: ...
    @property
    def val_split(self) -> str: ...
    @property
    def val_group_pattern(self) -> str: ...
    @property
    def val_groups(self) -> str | None: ...
    @property
    def cache_dir(self) -> str | None: ...


def training_split(cfg: SplitSettings, pairs: Sequence) -> TrainingSplit:
    """The split `cfg` (a TrainConfig: val_fraction, split_seed, val_split, val_group_pattern, val_groups,
    cache_dir, data_root) carves from `pairs`; training, the teacher check, int8 calibration, the report and
    `core.data split` all rebuild it here."""
    train, val, groups = _split(
        pairs, cfg.val_fraction, cfg.split_seed, cfg.val_split, cfg.val_group_pattern, cfg.val_groups, cfg.cache_dir
    )
    record = split_record(
        cfg.data_root, [p.stem for p in val], cfg.val_fraction, cfg.split_seed, cfg.val_split, len(train)
    )
    return TrainingSplit(train, val, record, groups)


def split_record(
    data_root: str | Path, val_stems: Sequence[str], val_fraction: float, seed: int, how: str, n_train: int
) -> dict[str, Any]:
    """What a checkpoint stores about the split it was trained on; `val_sha256` identifies the
    validation files, so another run can tell whether it saw them in training."""
    digest = hashlib.sha256("\n".join(sorted(val_stems)).encode()).hexdigest()
    return {
        "data_root": str(Path(data_root).expanduser().resolve()),
        "val_split": how,
        "val_fraction": val_fraction,
        "split_seed": seed,
        "n_train": n_train,
        "n_val": len(val_stems),
        "val_sha256": digest,
    }


def check_teacher_split(teacher: dict[str, Any] | None, student: dict[str, Any], teacher_path: str) -> None:
    """Refuse a teacher that was trained on the students' validation images: its soft targets would carry
    them into training and the validation Dice the sweep selects on would be inflated."""
    fix = (
        "train the teacher with the students' data_root, val_fraction, val_split and split_seed "
        "(e.g. `python -m tune.search --space teacher.yaml` on the same data), then export it"
    )
    if teacher is None:
        raise UserError(
            f"{teacher_path}: records no training split (written by an older version), so it may "
            f"have been trained on the students' validation images; {fix}"
        )
    if teacher["val_sha256"] != student["val_sha256"]:
        raise UserError(
            f"{teacher_path}: this teacher was trained on a different split "
            f"({teacher['val_split']}, val_fraction {teacher['val_fraction']}, split_seed "
            f"{teacher['split_seed']}, {teacher['data_root']}) that includes some of the students' "
            f"validation images; {fix}"
        )


def _split(
    pairs: Sequence,
    val_fraction: float,
    seed: int,
    how: str,
    pattern: str,
    val_groups: str | Path | None,
    cache_dir: str | Path | None,
) -> tuple[list, list, list[list[str]]]:
    by_stem = {p.stem: p for p in pairs}
    if how == "grouped":
        groups = (
            csv_groups(val_groups, list(by_stem))
            if val_groups is not None
            else content_groups(list(by_stem.values()), pattern, cache_dir)
        )
    else:
        groups = [[stem] for stem in sorted(by_stem)]
    train, val = split_stems(list(by_stem), val_fraction, seed, how, groups)
    return [by_stem[s] for s in train], [by_stem[s] for s in val], groups


def _frames_by_video(stems: Sequence[str], pattern: str) -> tuple[dict[str, list[tuple[int, str]]], list[str]]:
    """video -> [(frame, stem)] in frame order, and the stems the pattern does not match."""
    regex = re.compile(pattern)
    by_video: dict[str, list[tuple[int, str]]] = {}
    unmatched = []
    for stem in sorted(stems):
        match = regex.match(stem)
        if match is None or match.groupdict().get("frame") is None:
            unmatched.append(stem)
            continue
        by_video.setdefault(match.groupdict().get("video") or "", []).append((int(match.group("frame")), stem))
    return {video: sorted(frames) for video, frames in sorted(by_video.items())}, unmatched


def _similar_pairs(signatures: np.ndarray, threshold: float) -> Iterator[tuple[int, int]]:
    """Every (i, j), i < j, whose signatures correlate above `threshold`: one matrix product per block."""
    for start in range(0, len(signatures), _PAIR_BLOCK):
        block = signatures[start : start + _PAIR_BLOCK] @ signatures.T
        rows, cols = np.nonzero(block > threshold)
        for i, j in zip((rows + start).tolist(), cols.tolist()):
            if i < j:
                yield i, j


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving keeps later finds short
        i = parent[i]
    return i


def _union(parent: list[int], a: int, b: int) -> None:
    ra, rb = _root(parent, a), _root(parent, b)
    parent[max(ra, rb)] = min(ra, rb)


def _cover(groups: Sequence[Sequence[str]], stems: Sequence[str]) -> list[list[str]]:
    """`groups` restricted to `stems`, plus one group per stem in none; sorted, so the draw is deterministic."""
    wanted = set(stems)
    out = [sorted(set(g) & wanted) for g in groups]
    covered = {s for g in out for s in g}
    out += [[s] for s in stems if s not in covered]
    return sorted((g for g in out if g), key=lambda g: g[0])


def _read_rgb(path: Path) -> np.ndarray:
    # core.data.read_image's decoding; core.data's CLI imports this module, so this one cannot import it.
    try:
        return image_files.to_rgb8(image_files.decode(path))
    except image_files.ImageFileError as err:
        raise UserError(f"{path}: truncated or corrupt image ({err}); replace or remove the file") from None


def _load_signatures(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        signatures = np.load(path)
    except (OSError, ValueError, EOFError):  # not built yet, or truncated: built again
        return None
    return signatures if signatures.shape == shape and signatures.dtype == np.float32 else None


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir()
