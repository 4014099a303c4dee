"""Checkpoint files: atomic save, safe load (`torch.load(weights_only=True)`), and user-facing errors.

A checkpoint is a plain dict of tensors, numbers and strings: the TrainConfig as a dict, the architecture,
history and weights. A training state (last.pt, trial checkpoints) adds optimizer/scheduler/RNG state and
the best-so-far weights; a weights file (best.pt, an export's model.pt) holds only the best weights.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from core.errors import UserError
from core.files import atomic_file

CHECKPOINT_FORMAT = "polyp-kd-tune/checkpoint/v1"
WEIGHTS_FILENAME = "model.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write via a temporary file and rename, so a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def resolve_checkpoint_path(path: str | Path) -> Path:
    """Accept a checkpoint file, or a folder holding best.pt / model.pt (a run dir or an export)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", WEIGHTS_FILENAME, "last.pt"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: folder holds no best.pt, {WEIGHTS_FILENAME} or last.pt; pass a checkpoint file")
    if not path.is_file():
        raise UserError(
            f"{path}: checkpoint not found; check the path (training writes <save_dir>/<experiment_name>/best.pt)"
        )
    return path


def best_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The history entry of the epoch with the highest validation Dice (None for an empty history): the
    epoch whose weights a checkpoint keeps as its best."""
    return max(history, key=lambda h: h["val_dice"], default=None)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """`mmap=True` maps tensors lazily: a cheap way to check a large checkpoint before using it."""
    path = resolve_checkpoint_path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        raise UserError(
            f"{path}: not a polyp-kd-tune checkpoint ({err.__class__.__name__}); "
            f"pass a best.pt/last.pt written by core.train or an exported model.pt"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path}: not a polyp-kd-tune checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
            f"pass a best.pt/last.pt written by core.train or an exported model.pt"
        )
    state["path"] = str(path)
    return state
