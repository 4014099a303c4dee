"""Before a sweep resumes after a lost driver: give each unfinished trial back the checkpoint Ray recorded.

Ray deletes a trial's older checkpoint as soon as a newer one arrives (`num_to_keep`) and snapshots its
experiment state only afterwards; a driver killed in between leaves a snapshot naming a deleted (or half
deleted) folder, and Ray then refuses to restore that trial. The newer checkpoint still sits beside it, so
it is moved to the recorded name. Every checkpoint carries `epoch.json`: "newer" never depends on names.
"""

from __future__ import annotations

import json
import posixpath

import pyarrow.fs as pafs
from ray.tune import ExperimentAnalysis

from tune.records import CHECKPOINT_FILE, EPOCH_FILE
from tune.sweep.ray_compat.conventions import is_checkpoint_dir


def checkpoint_epoch(fs: pafs.FileSystem, folder: str) -> int | None:
    """The epoch a checkpoint folder holds, or None where it is missing or incomplete."""
    state = fs.get_file_info(posixpath.join(folder, CHECKPOINT_FILE))
    if state.type != pafs.FileType.File or not state.size:
        return None
    try:
        with fs.open_input_stream(posixpath.join(folder, EPOCH_FILE)) as f:
            return int(json.loads(f.read())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_checkpoint_beside(fs: pafs.FileSystem, folder: str) -> str | None:
    """The complete checkpoint with the highest epoch in `folder`'s trial directory, other than `folder`."""
    folder = folder.rstrip("/")
    best = None
    for info in fs.get_file_info(pafs.FileSelector(posixpath.dirname(folder), allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not is_checkpoint_dir(info.base_name):
            continue
        epoch = checkpoint_epoch(fs, info.path)
        if info.path.rstrip("/") != folder and epoch is not None and (best is None or epoch > best[0]):
            best = (epoch, info.path)
    return best[1] if best else None


def restore_recorded_checkpoints(experiment: str) -> list[str]:
    """Repair every unfinished trial of the Ray experiment at `experiment` (a path or URI); one line each."""
    notes = []
    for trial in ExperimentAnalysis(experiment).trials:
        checkpoint = trial.checkpoint
        if trial.status == "TERMINATED" or checkpoint is None:
            continue
        fs, recorded = checkpoint.filesystem, checkpoint.path
        assert fs is not None  # Ray's Checkpoint resolves one from its path; the attribute is typed Optional
        if checkpoint_epoch(fs, recorded) is not None:
            continue
        newer = newest_checkpoint_beside(fs, recorded)
        if newer is None:
            notes.append(f"trial {trial.trial_id}: its checkpoint {recorded} is gone and no other survives")
            continue
        if fs.get_file_info(recorded).type != pafs.FileType.NotFound:
            fs.delete_dir(recorded)
        fs.create_dir(recorded, recursive=True)
        # Copy then delete, not move: object stores (s3://, gs://) cannot rename a folder.
        pafs.copy_files(newer, recorded, source_filesystem=fs, destination_filesystem=fs)
        fs.delete_dir(newer)
        notes.append(
            f"trial {trial.trial_id}: resumes from epoch {checkpoint_epoch(fs, recorded)} "
            f"(Ray's record named a checkpoint it had already deleted)"
        )
    return notes
