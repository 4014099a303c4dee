"""Ray's record of an experiment, read and changed: its trials as the last snapshot has them, where the driver
stages the snapshot, and its experiment state (experiment_state-*.json) edited so that Tuner.restore reruns
chosen trials from scratch.
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Any

from ray import cloudpickle
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.tune import ExperimentAnalysis
from ray.tune.utils.serialization import TuneFunctionEncoder

from tune.records import TrialState

# A trial that never reported (pending when a sweep was interrupted) has no result file; Ray's analysis
# warns about each one with a stack of paths, which reads like a failure and is not one.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)

HISTORY_COLUMNS = ("epoch", "val_dice", "val_iou", "best_val_dice", "best_val_iou")
NO_MESSAGE = "errored (Ray recorded no message)"


def recorded_trials(experiment: str) -> list[TrialState]:
    """The trials of the Ray experiment at `experiment` as its last snapshot records them.

    After a Ctrl-C, `Tuner.fit()` returns trials it has just marked TERMINATED in memory, which reads like
    a finished sweep; Ray snapshots the state before that cleanup, so the snapshot still says which trials
    were RUNNING or PENDING, i.e. interrupted."""
    analysis = ExperimentAnalysis(experiment)
    out = []
    for trial in analysis.trials:
        checkpoint = trial.checkpoint
        frame = analysis.trial_dataframes.get(trial.trial_id)
        columns = [c for c in HISTORY_COLUMNS if frame is not None and c in frame]
        history = frame[columns].to_dict("records") if frame is not None and "epoch" in columns else []
        out.append(
            TrialState(
                trial.trial_id,
                trial.status,
                dict(trial.config),
                dict(trial.last_result or {}),
                trial.path,
                checkpoint.path if checkpoint else None,
                _read_error(trial) if trial.status == "ERROR" else None,
                history,
            )
        )
    return out


def _read_error(trial) -> str:
    name = trial.run_metadata.error_filename
    try:
        with trial.storage.storage_filesystem.open_input_stream(posixpath.join(trial.path, name)) as f:
            text = f.read().decode(errors="replace").strip().splitlines()
    except (OSError, TypeError, AttributeError):
        return NO_MESSAGE
    # Ray wraps the trial's exception; its last line is the original "Type: message".
    return text[-1] if text else NO_MESSAGE


def experiment_folders(trials: list) -> tuple[str, Any, str] | None:
    """(the local folder where Ray's driver writes the experiment state, the storage's pyarrow filesystem,
    the experiment folder on it) of a running experiment, read off one of its trials; None before any."""
    if not trials:
        return None
    storage = trials[0].storage
    return storage.experiment_driver_staging_path, storage.storage_filesystem, storage.experiment_fs_path


def rerun_from_scratch(experiment_state: dict[str, Any], trial_ids: set[str]) -> dict[str, Any]:
    """Ray's experiment state (experiment_state-*.json, parsed) with the trials `trial_ids` set to be run
    again from scratch by Tuner.restore: PENDING (an unfinished trial, which restore resumes under its own
    id whatever resume_* says), no checkpoint, no result. A trial that had ended without an error stops where
    it ended (its epoch becomes its stopping criterion): ASHA's state is not restored with the Tuner, so
    without it an ASHA-stopped trial would now run to max_t."""
    data = dict(experiment_state)
    records = []
    for trial_json, meta_json in data["trial_data"]:
        trial = json.loads(trial_json)
        if trial["trial_id"] not in trial_ids:
            records.append([trial_json, meta_json])
            continue
        meta = json.loads(meta_json)
        epoch = (meta.get("last_result") or {}).get("epoch")
        if trial["status"] == "TERMINATED" and epoch:
            trial["stopping_criterion"] = {**(trial.get("stopping_criterion") or {}), "epoch": int(epoch)}
        trial["status"] = "PENDING"
        old = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))
        meta["checkpoint_manager"] = json.loads(
            json.dumps(_CheckpointManager(old.checkpoint_config), cls=TuneFunctionEncoder)
        )
        meta.update(last_result={}, error_filename=None, pickled_error_filename=None)
        records.append([json.dumps(trial, indent=2), json.dumps(meta, indent=2)])
    data["trial_data"] = records
    return data
