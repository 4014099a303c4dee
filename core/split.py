"""The validation split carved from TrainDataset: random, or grouped so that near-duplicate video frames
never sit on both sides, plus the record of a split that every checkpoint carries.

CVC-ClinicDB frames come from a few dozen colonoscopy videos and consecutive frames are near-duplicates;
a random split puts neighbours on both sides and inflates validation Dice. `grouped` keeps each group
whole. A file's group comes from its stem by `val_group_pattern`: the named groups `video` (default: the
stem without its trailing number) and `frame` (the trailing number); files of one video whose frame
numbers run on without a gap form one group (PraNet's ClinicDB training frames have gaps exactly where
its test frames were taken out). A stem the pattern does not match is a group of its own.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

VAL_SPLITS = ("random", "grouped")
DEFAULT_GROUP_PATTERN = r"^(?P<video>.*?)(?P<frame>\d+)$"


def frame_groups(stems: Sequence[str], pattern: str = DEFAULT_GROUP_PATTERN) -> list[list[str]]:
    """Stems partitioned into groups (each sorted), in a deterministic order."""
    regex = re.compile(pattern)
    by_video: dict[str, list[tuple[int, str]]] = {}
    groups: list[list[str]] = []
    for stem in sorted(stems):
        match = regex.match(stem)
        if match is None or match.groupdict().get("frame") is None:
            groups.append([stem])
            continue
        video = match.groupdict().get("video") or ""
        by_video.setdefault(video, []).append((int(match.group("frame")), stem))
    for video in sorted(by_video):
        run: list[str] = []
        previous = None
        for frame, stem in sorted(by_video[video]):
            if previous is not None and frame > previous + 1:
                groups.append(run)
                run = []
            run.append(stem)
            previous = frame
        groups.append(run)
    return sorted(groups, key=lambda g: g[0])


def split_stems(stems: Sequence[str], val_fraction: float, seed: int, how: str = "random",
                pattern: str = DEFAULT_GROUP_PATTERN) -> tuple[list[str], list[str]]:
    """(train stems, validation stems), deterministic for the same stems, fraction, seed and method."""
    ordered = sorted(stems)
    if len(ordered) < 2:
        raise UserError("TrainDataset: need at least 2 training images to carve a validation split")
    n_val = min(len(ordered) - 1, max(1, round(len(ordered) * val_fraction)))
    rng = np.random.default_rng(seed)
    if how == "random":
        val = {ordered[i] for i in rng.permutation(len(ordered))[:n_val].tolist()}
    elif how == "grouped":
        groups = frame_groups(ordered, pattern)
        if len(groups) < 2:
            raise UserError(f"val_split grouped: every training image falls into one group under "
                            f"val_group_pattern {pattern!r}; use val_split=random or a pattern that tells "
                            f"videos apart")
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


def split_pairs(pairs: Sequence, val_fraction: float, seed: int, how: str = "random",
                pattern: str = DEFAULT_GROUP_PATTERN) -> tuple[list, list]:
    """`split_stems` over SamplePairs (anything with a `.stem`)."""
    by_stem = {p.stem: p for p in pairs}
    train, val = split_stems(list(by_stem), val_fraction, seed, how, pattern)
    return [by_stem[s] for s in train], [by_stem[s] for s in val]


@dataclass
class TrainingSplit:
    """The split a TrainConfig trains on: its pairs, and the record a checkpoint stores."""

    train: list
    val: list
    record: dict[str, Any]


def training_split(cfg, pairs: Sequence) -> TrainingSplit:
    """The split `cfg` (a TrainConfig: val_fraction, split_seed, val_split, val_group_pattern, data_root)
    carves from `pairs`; training, the teacher check, int8 calibration and the report all rebuild it here."""
    train, val = split_pairs(pairs, cfg.val_fraction, cfg.split_seed, cfg.val_split, cfg.val_group_pattern)
    record = split_record(cfg.data_root, [p.stem for p in val], cfg.val_fraction, cfg.split_seed, cfg.val_split,
                          len(train))
    return TrainingSplit(train, val, record)


def split_record(data_root: str | Path, val_stems: Sequence[str], val_fraction: float, seed: int,
                 how: str, n_train: int) -> dict[str, Any]:
    """What a checkpoint stores about the split it was trained on; `val_sha256` identifies the
    validation files, so another run can tell whether it saw them in training."""
    digest = hashlib.sha256("\n".join(sorted(val_stems)).encode()).hexdigest()
    return {"data_root": str(Path(data_root).expanduser().resolve()), "val_split": how,
            "val_fraction": val_fraction, "split_seed": seed, "n_train": n_train, "n_val": len(val_stems),
            "val_sha256": digest}


def check_teacher_split(teacher: dict[str, Any] | None, student: dict[str, Any], teacher_path: str) -> None:
    """Refuse a teacher that was trained on the students' validation images: its soft targets would carry
    them into training and the validation Dice the sweep selects on would be inflated."""
    fix = ("train the teacher with the students' data_root, val_fraction, val_split and split_seed "
           "(e.g. `python -m tune.search --space teacher.yaml` on the same data), then export it")
    if teacher is None:
        raise UserError(f"{teacher_path}: records no training split (written by an older version), so it may "
                        f"have been trained on the students' validation images; {fix}")
    if teacher["val_sha256"] != student["val_sha256"]:
        raise UserError(f"{teacher_path}: this teacher was trained on a different split "
                        f"({teacher['val_split']}, val_fraction {teacher['val_fraction']}, split_seed "
                        f"{teacher['split_seed']}, {teacher['data_root']}) that includes some of the students' "
                        f"validation images; {fix}")
