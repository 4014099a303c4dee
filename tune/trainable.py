"""The Ray Tune trainable: a thin function around `core.train.Trainer`.

Each epoch it reports validation Dice/IoU, train loss and epoch with a checkpoint of the trainer's full
state; a restarted trial continues from `tune.get_checkpoint()`; the final epoch adds test-set scores.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from core.checkpoint import load_checkpoint
from core.config import config_from_dict
from core.train import Trainer
from tune.recovery import CHECKPOINT_FILE, EPOCH_FILE
from tune.space import trial_config
from tune.storage import local_copy


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
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / CHECKPOINT_FILE))
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


def _test_metrics(trainer: Trainer) -> dict[str, float]:
    """Test-set scores of the best-validation weights, logged for reporting only (never selected on)."""
    report = trainer.evaluate_best()
    out = {f"test/{name}/dice": s["dice"] for name, s in report["test_sets"].items()}
    out.update({f"test/{name}/iou": s["iou"] for name, s in report["test_sets"].items()})
    out.update({"test/mean/dice": report["mean"]["dice"], "test/mean/iou": report["mean"]["iou"]})
    return out
