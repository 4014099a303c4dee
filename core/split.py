"""The validation split carved from TrainDataset: random, or grouped and stratified by source so that
near-duplicate images never sit on both sides and every source is represented, plus the record of a split
that every checkpoint carries.

CVC-ClinicDB frames come from a few dozen colonoscopy videos and neighbouring frames are near-duplicates;
a random split puts them on both sides and inflates validation Dice. `grouped` keeps each group whole.
Groups come from names and pixels together (`content_groups`): a stem's `video` and `frame` come from
`val_group_pattern` (default: the stem without its trailing number, and that number), and within one video
each frame joins the previous one in frame order, across gaps in the numbering (PraNet took its test frames
out of ClinicDB's sequences), while their `link_similarity` (what the two 32x32 colour thumbnails show once
the source's shared border and look are taken out) is above SEQUENCE_SIMILARITY; any two images of
TrainDataset, whatever their names, whose grey signatures correlate above DUPLICATE_CORRELATION join one
group too (Kvasir-SEG holds a few copies). Thumbnails are computed once per node and cached.

A frame's *source* (the data set it comes from) is the `source` group of `val_source_pattern` (default: the
name prefix before the first `-` or `_`, e.g. `clinicdb-12` -> clinicdb). The grouped split draws each
source's validation part separately, adding groups in a seeded order while each brings that part closer to
`val_fraction` of the source, so each source is represented by its share. A `val_groups` CSV of
`stem,group[,source]` rows replaces the found groups (a stem it does not list is a group of its own) and,
where it has a source column, the sources the pattern gives.
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
DEFAULT_SOURCE_PATTERN = r"^(?P<source>[A-Za-z0-9]+)[-_]"
OTHER_SOURCE = "other"  # the source of a stem the pattern does not match
THUMB_SIDE = 32
THUMB_VERSION = "2"
# Measured on the 550 PraNet ClinicDB training frames against their 29 videos' frame ranges
# (bench/val_split_strata.py holds them; the cuts seen on contact sheets agree): neighbours within a video
# score median 0.88 (5 % below 0.58), the 28 cuts median 0.27 (95 % below 0.55). At 0.35 no in-video link
# breaks and 8 cuts are missed: 21 ClinicDB groups. (The grey correlation used before, median 0.92 against
# 0.59, broke 13 links and missed 11 cuts at its best threshold 0.6: the black border all frames share kept
# different videos alike.)
SEQUENCE_SIMILARITY = 0.35
# No two ClinicDB frames of different videos correlate above 0.973. Kvasir's four copies correlate at
# 0.993-1.0; below 0.98 same-scene frames and different polyps mix (0.967 same, 0.955 other, 0.949 same).
DUPLICATE_CORRELATION = 0.98
_PAIR_BLOCK = 1024  # rows of the all-pairs correlation at a time: memory stays O(block x N)
_GREY = np.array([0.299, 0.587, 0.114], np.float32)
_HUE_SAT_BINS = (18, 8)


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


def source_of(stem: str, pattern: str = DEFAULT_SOURCE_PATTERN) -> str:
    """The data set a training image comes from, by its name: `pattern`'s `source` group, else OTHER_SOURCE."""
    match = re.match(pattern, stem)
    return (match.groupdict().get("source") if match else None) or OTHER_SOURCE


def content_groups(
    pairs: Sequence,
    pattern: str = DEFAULT_GROUP_PATTERN,
    cache_dir: str | Path | None = None,
    sources: dict[str, str] | None = None,
) -> list[list[str]]:
    """SamplePairs (anything with `.stem` and `.image`) grouped by name order and image content (see the
    module docstring); `sources` maps stem -> source (default: `source_of` each stem). Each group sorted,
    the groups sorted by their first stem."""
    ordered = sorted(pairs, key=lambda p: p.stem)
    stems = [p.stem for p in ordered]
    sources = sources or {stem: source_of(stem) for stem in stems}
    thumbs = image_thumbnails(ordered, cache_dir)
    row = {stem: i for i, stem in enumerate(stems)}
    links = {source: LinkFeatures.of(thumbs[rows], rows) for source, rows in _rows_by_source(stems, sources).items()}
    parent = list(range(len(stems)))
    by_video, _ = _frames_by_video(stems, pattern)
    for frames in by_video.values():
        for (_, a), (_, b) in itertools.pairwise(frames):
            if sources[a] == sources[b] and links[sources[a]].similarity(row[a], row[b]) > SEQUENCE_SIMILARITY:
                _union(parent, row[a], row[b])
    for i, j in _similar_pairs(grey_signatures(thumbs), DUPLICATE_CORRELATION):
        _union(parent, i, j)
    groups: dict[int, list[str]] = {}
    for i, stem in enumerate(stems):
        groups.setdefault(_root(parent, i), []).append(stem)
    return sorted(groups.values(), key=lambda g: g[0])


@dataclass
class LinkFeatures:
    """What two frames of one source are compared on: their colour thumbnails with the source's mean image
    taken out (what every frame of the source shares: border, overlay, lighting), and hue-saturation
    histograms of the pixels inside the border (dark in 90 % of the source's frames)."""

    centred: np.ndarray  # rows: unit-length source-centred thumbnails
    histograms: np.ndarray  # rows: square roots of normalised hue-saturation histograms
    index: dict[int, int]  # row of the whole thumbnail array -> row here

    @classmethod
    def of(cls, thumbs: np.ndarray, rows: Sequence[int]) -> LinkFeatures:
        values = thumbs.reshape(len(thumbs), -1).astype(np.float32)
        centred = values - values.mean(axis=0)
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        centred = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 1e-3)
        inside = ~(((thumbs.astype(np.float32) @ _GREY) < 25).mean(axis=0) >= 0.9).ravel()
        histograms = np.stack([_hue_sat_histogram(thumb, inside) for thumb in thumbs])
        return cls(centred, histograms, {r: i for i, r in enumerate(rows)})

    def similarity(self, a: int, b: int) -> float:
        """In [-0.5, 1]: the mean of the centred thumbnails' correlation and the histograms' overlap."""
        i, j = self.index[a], self.index[b]
        return 0.5 * float(self.centred[i] @ self.centred[j]) + 0.5 * float(self.histograms[i] @ self.histograms[j])


def image_thumbnail(image: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> its THUMB_SIDE² area-averaged thumbnail (uint8)."""
    return cv2.resize(image, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)


def grey_signatures(thumbs: np.ndarray) -> np.ndarray:
    """N thumbnails -> N unit-length, zero-mean grey vectors (float32): the dot product of two is their
    normalised correlation. A flat image's is all zeros."""
    vectors = (thumbs.astype(np.float32) @ _GREY).reshape(len(thumbs), -1)
    vectors -= vectors.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 1e-3)


def image_signatures(pairs: Sequence, cache_dir: str | Path | None = None) -> np.ndarray:
    """The grey signatures of the pairs' images, in their order (see grey_signatures)."""
    return grey_signatures(image_thumbnails(pairs, cache_dir))


def image_thumbnails(pairs: Sequence, cache_dir: str | Path | None = None) -> np.ndarray:
    """N x THUMB_SIDE x THUMB_SIDE x 3 thumbnails of the pairs' images, in their order: read from this node's
    cache, which is named by the files' paths, sizes and mtimes, or computed once and written there."""
    shape = (len(pairs), THUMB_SIDE, THUMB_SIDE, 3)
    if not pairs:
        return np.zeros(shape, np.uint8)
    ordered = sorted(range(len(pairs)), key=lambda i: pairs[i].stem)
    digest = hashlib.sha256(f"split thumbnails v{THUMB_VERSION} {THUMB_SIDE}\n".encode())
    for i in ordered:
        stat = Path(pairs[i].image).stat()
        digest.update(f"{Path(pairs[i].image).resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    path = _cache_root(cache_dir) / "split_thumbnails" / f"{digest.hexdigest()[:20]}.npy"
    thumbs = _load_thumbnails(path, shape)
    if thumbs is None:
        thumbs = np.stack([image_thumbnail(_read_rgb(Path(pairs[i].image))) for i in ordered])
        path.parent.mkdir(parents=True, exist_ok=True)
        # Concurrent trials may each build it; every one writes the same bytes, renamed in whole.
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.save(f, thumbs)
    out = np.empty(shape, np.uint8)
    out[ordered] = thumbs
    return out


def csv_groups(path: str | Path, stems: Sequence[str]) -> list[list[str]]:
    """The groups a `val_groups` CSV names, over `stems`; a stem it does not list is a group of its own.
    A stem it lists that is no image's is a UserError naming it (a typo, or a file name with its extension,
    would otherwise leave its frames in groups of one, unseen)."""
    label_of = read_val_groups(path)[0]
    check_listed_stems(path, label_of, stems)
    return _labelled_groups(label_of, stems)


def check_listed_stems(path: str | Path, label_of: dict[str, str], stems: Sequence[str]) -> None:
    known = set(stems)
    strangers = [stem for stem in label_of if stem not in known]
    if not strangers:
        return
    shown = ", ".join(repr(s) for s in strangers[:3])
    shown += f" and {len(strangers) - 3} more" if len(strangers) > 3 else ""
    hint = (
        "; write stems without the file extension"
        if any(Path(s).suffix and Path(s).stem in known for s in strangers)
        else "; list only this data root's training images (TrainDataset/images, names without extension)"
    )
    raise UserError(f"{path}: {len(strangers)} of {len(label_of)} stems name no training image: {shown}{hint}")


def _labelled_groups(label_of: dict[str, str], stems: Sequence[str]) -> list[list[str]]:
    groups: dict[tuple[str, str], list[str]] = {}
    for stem in sorted(stems):
        key = ("file", label_of[stem]) if stem in label_of else ("own", stem)
        groups.setdefault(key, []).append(stem)
    return sorted(groups.values(), key=lambda g: g[0])


def read_val_groups(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(stem -> group, stem -> source) from a CSV of `stem,group` or `stem,group,source` rows (an optional
    header, blank lines allowed); anything else is one UserError naming the file and line."""
    path = Path(path).expanduser()
    fix = (
        "each line must be `stem,group` or `stem,group,source` (the image file name without extension, "
        "then any group name, then optionally the data set it comes from)"
    )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            label_of: dict[str, str] = {}
            source_of_stem: dict[str, str] = {}
            reader = csv.reader(f)
            for row in reader:
                cells = [cell.strip() for cell in row]
                header = [c.lower() for c in cells] in (["stem", "group"], ["stem", "group", "source"])
                if not any(cells) or (reader.line_num == 1 and header):
                    continue
                if len(cells) not in (2, 3) or not all(cells):
                    raise UserError(f"{path}, line {reader.line_num}: {row!r} is not a stem,group row; {fix}")
                stem, label = cells[:2]
                if label_of.setdefault(stem, label) != label:
                    raise UserError(
                        f"{path}, line {reader.line_num}: stem {stem!r} is already in group "
                        f"{label_of[stem]!r}; list each stem once"
                    )
                if len(cells) == 3:
                    source_of_stem[stem] = cells[2]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: val_groups file not readable ({err}); {fix}") from None
    if not label_of:
        raise UserError(f"{path}: val_groups file holds no stem,group rows; {fix}")
    return label_of, source_of_stem


def split_stems(
    stems: Sequence[str],
    val_fraction: float,
    seed: int,
    how: str = "random",
    groups: Sequence[Sequence[str]] | None = None,
    sources: dict[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """(train stems, validation stems), deterministic for the same stems, fraction, seed, method, groups and
    sources. `grouped` draws whole `groups` (a stem in none is a group of its own) per source (`sources`:
    stem -> source, default `source_of`): each source's part is `val_fraction` of its images, or the
    nearest whole groups reach."""
    ordered = sorted(stems)
    if len(ordered) < 2:
        raise UserError("TrainDataset: need at least 2 training images to carve a validation split")
    rng = np.random.default_rng(seed)
    if how == "random":
        n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
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
        val = _stratified_draw(groups, sources or {s: source_of(s) for s in ordered}, val_fraction, rng)
    else:
        raise UserError(f"'val_split' is {how!r}; allowed values: {', '.join(VAL_SPLITS)}")
    return [s for s in ordered if s not in val], [s for s in ordered if s in val]


def _stratified_draw(
    groups: list[list[str]], sources: dict[str, str], val_fraction: float, rng: np.random.Generator
) -> set[str]:
    """Per source (in name order): the groups of a seeded order that fit under `val_fraction` of the source's
    images, then of those left the one that lands closest to it, if that is closer. A group of frames from
    several sources counts for the source most of them come from."""
    by_source: dict[str, list[list[str]]] = {}
    for group in groups:
        counts = {source: sum(sources[s] == source for s in group) for source in sorted({sources[s] for s in group})}
        by_source.setdefault(max(counts, key=lambda source: counts[source]), []).append(group)
    total = sum(len(g) for g in groups)
    val: set[str] = set()
    for source in sorted(by_source):
        candidates = by_source[source]
        target = val_fraction * sum(len(g) for g in candidates)
        taken, left = 0, []
        for group in (candidates[i] for i in rng.permutation(len(candidates)).tolist()):
            if taken + len(group) <= target and len(val) + len(group) < total:  # never leave training empty
                val.update(group)
                taken += len(group)
            else:
                left.append(group)
        closest = min(left, key=lambda g: abs(taken + len(g) - target), default=None)
        if (
            closest is not None
            and abs(taken + len(closest) - target) < abs(taken - target)
            and len(val) + len(closest) < total
        ):
            val.update(closest)
    if not val:  # no group fits anywhere: the smallest, so that validation is not empty
        smallest: list[str] = min(groups, key=len)
        val.update(smallest)
    return val


def split_pairs(
    pairs: Sequence,
    val_fraction: float,
    seed: int,
    how: str = "random",
    pattern: str = DEFAULT_GROUP_PATTERN,
    val_groups: str | Path | None = None,
    cache_dir: str | Path | None = None,
    source_pattern: str = DEFAULT_SOURCE_PATTERN,
) -> tuple[list, list]:
    """`split_stems` over SamplePairs (anything with `.stem` and `.image`); `grouped` groups them by
    `val_groups` when given, else by `content_groups`."""
    train, val, _, _ = _split(pairs, val_fraction, seed, how, pattern, val_groups, cache_dir, source_pattern)
    return train, val


@dataclass
class TrainingSplit:
    """The split a TrainConfig trains on: its pairs, the record a checkpoint stores, the groups drawn (each
    stem its own for `random`) and each stem's source."""

    train: list
    val: list
    record: dict[str, Any]
    groups: list[list[str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


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
    def val_source_pattern(self) -> str: ...
    @property
    def val_groups(self) -> str | None: ...
    @property
    def cache_dir(self) -> str | None: ...


def training_split(cfg: SplitSettings, pairs: Sequence) -> TrainingSplit:
    """The split `cfg` (a TrainConfig: val_fraction, split_seed, val_split, val_group_pattern, val_groups,
    cache_dir, data_root) carves from `pairs`; training, the teacher check, int8 calibration, the report and
    `core.data split` all rebuild it here."""
    train, val, groups, sources = _split(
        pairs,
        cfg.val_fraction,
        cfg.split_seed,
        cfg.val_split,
        cfg.val_group_pattern,
        cfg.val_groups,
        cfg.cache_dir,
        cfg.val_source_pattern,
    )
    record = split_record(
        cfg.data_root, [p.stem for p in val], cfg.val_fraction, cfg.split_seed, cfg.val_split, len(train)
    )
    record["val_sources"] = {
        source: sum(sources[p.stem] == source for p in val) for source in sorted({sources[p.stem] for p in val})
    }
    return TrainingSplit(train, val, record, groups, sources)


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
    source_pattern: str,
) -> tuple[list, list, list[list[str]], dict[str, str]]:
    by_stem = {p.stem: p for p in pairs}
    sources = {stem: source_of(stem, source_pattern) for stem in by_stem}
    if how == "grouped" and val_groups is not None:
        label_of, listed = read_val_groups(val_groups)
        check_listed_stems(val_groups, label_of, list(by_stem))
        groups = _labelled_groups(label_of, list(by_stem))
        sources.update((stem, source) for stem, source in listed.items() if stem in by_stem)
    elif how == "grouped":
        groups = content_groups(list(by_stem.values()), pattern, cache_dir, sources)
    else:
        groups = [[stem] for stem in sorted(by_stem)]
    train, val = split_stems(list(by_stem), val_fraction, seed, how, groups, sources)
    return [by_stem[s] for s in train], [by_stem[s] for s in val], groups, sources


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


def _load_thumbnails(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        thumbs = np.load(path)
    except (OSError, ValueError, EOFError):  # not built yet, or truncated: built again
        return None
    return thumbs if thumbs.shape == shape and thumbs.dtype == np.uint8 else None


def _hue_sat_histogram(thumb: np.ndarray, inside: np.ndarray) -> np.ndarray:
    pixels = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV).reshape(-1, 3)[inside]
    counts, _, _ = np.histogram2d(pixels[:, 0], pixels[:, 1], bins=_HUE_SAT_BINS, range=((0, 180), (0, 256)))
    total = counts.sum()
    return np.sqrt(counts.ravel() / total).astype(np.float32) if total else np.zeros(counts.size, np.float32)


def _rows_by_source(stems: Sequence[str], sources: dict[str, str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for i, stem in enumerate(stems):
        rows.setdefault(sources[stem], []).append(i)
    return rows


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else default_cache_dir()
