"""The Ray Tune trainable: a thin function around `core.train.Trainer`.

Each epoch it reports validation Dice/IoU, train loss and epoch with a checkpoint of the trainer's full
state; a restarted trial continues from its newest checkpoint that survives; the final epoch adds
test-set scores.
"""
from __future__ import annotations

import json
import logging
import posixpath
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune

from core.checkpoint import load_checkpoint
from core.config import config_from_dict
from core.errors import UserError
from core.train import Trainer
from tune.space import trial_config
from tune.storage import local_copy

CHECKPOINT_FILE = "trainer.pt"
EPOCH_FILE = "epoch.json"  # beside trainer.pt: which epoch a checkpoint holds, readable without loading it


def train_trial(config: dict[str, Any], base: dict[str, Any]) -> None:
    """`config` holds the values Optuna sampled; `base` the sweep's fixed TrainConfig values."""
    # Ray logs every persisted checkpoint at INFO; one line per epoch per trial buries the progress table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if base.get("teacher_checkpoint"):
        # A teacher in shared storage (a cluster) is fetched once per node into the local cache.
        base = {**base, "teacher_checkpoint": local_copy(base["teacher_checkpoint"], base.get("cache_dir"))}
    cfg = trial_config(config_from_dict(base, source="sweep base config"), config)
    trainer = Trainer(cfg)
    checkpoint = tune.get_checkpoint()
    state = load_trial_state(checkpoint) if checkpoint is not None else None
    if state is not None:
        trainer.load_state_dict(state)
    # Where this run of the trial started and on which node: how a sweep survived lost nodes shows here.
    restored_from_epoch = trainer.epoch
    node_id = ray.get_runtime_context().get_node_id()
    for result in trainer.epochs():
        best = trainer.best_epoch
        metrics = {**result.to_dict(), "is_best": int(result.is_best), "best_val_dice": best["val_dice"],
                   "best_val_iou": best["val_iou"], "best_epoch": best["epoch"],
                   "restored_from_epoch": restored_from_epoch, "node_id": node_id}
        if trainer.epoch == cfg.epochs:
            metrics.update(_test_metrics(trainer))
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / CHECKPOINT_FILE)
            (Path(folder) / EPOCH_FILE).write_text(json.dumps({"epoch": trainer.epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def load_trial_state(checkpoint: tune.Checkpoint) -> dict[str, Any] | None:
    """The training state to resume from: Ray's recorded checkpoint, or the trial's newest surviving one.

    Ray deletes a trial's older checkpoints (num_to_keep) as soon as a new one arrives but saves its
    experiment state only every few seconds; a driver killed in between resumes the trial from a folder
    that is gone. Every newer checkpoint of the trial sits beside it, so the newest readable one is used.
    """
    for candidate in [checkpoint, *_newer_first(checkpoint)]:
        try:
            with candidate.as_directory() as folder:
                state = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
        except (UserError, FileNotFoundError, OSError):
            continue  # gone, or cut short by a node lost mid-upload
        if candidate is not checkpoint:
            print(f"{checkpoint.path} is gone (deleted after Ray last saved its experiment state); "
                  f"resuming from {candidate.path} (epoch {state['epoch']})", flush=True)
        return state
    print(f"no checkpoint of this trial survives beside {checkpoint.path}; starting it again", flush=True)
    return None


def _newer_first(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """The other checkpoints in the trial's folder, highest epoch first."""
    fs, trial_dir = checkpoint.filesystem, posixpath.dirname(checkpoint.path.rstrip("/"))
    found = []
    for info in fs.get_file_info(pafs.FileSelector(trial_dir, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        try:
            with fs.open_input_stream(posixpath.join(info.path, EPOCH_FILE)) as f:
                epoch = json.loads(f.read())["epoch"]
        except (OSError, ValueError, KeyError):
            continue
        if info.path.rstrip("/") != checkpoint.path.rstrip("/"):
            found.append((epoch, tune.Checkpoint(info.path, filesystem=fs)))
    return [c for _, c in sorted(found, key=lambda pair: pair[0], reverse=True)]


def _test_metrics(trainer: Trainer) -> dict[str, float]:
    """Test-set scores of the best-validation weights, logged for reporting only (never selected on)."""
    report = trainer.evaluate_best()
    out = {f"test/{name}/dice": s["dice"] for name, s in report["test_sets"].items()}
    out.update({f"test/{name}/iou": s["iou"] for name, s in report["test_sets"].items()})
    out.update({"test/mean/dice": report["mean"]["dice"], "test/mean/iou": report["mean"]["iou"]})
    return out
