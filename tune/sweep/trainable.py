"""The Ray Tune trainable: a thin function around `core.train.Trainer`, for search and confirmation trials.

Each epoch it reports validation Dice/IoU, train loss and epoch; at the epochs the sweep names (every N,
ASHA's rungs, the last) the report carries a checkpoint of the trainer's full state, and a restarted trial
continues from `tune.get_checkpoint()`. A trial whose loss diverges ends at once
with `diverged: 1` in its last result (a retry from its checkpoint would diverge again). Test sets are
never scored here: the sweep scores only its confirmed winner and baseline, once, at the end.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.simulated_training import TRAINERS
from core.train import DivergedError, Trainer
from tune.cluster.storage import local_copy
from tune.records import CHECKPOINT_FILE, EPOCH_FILE
from tune.sampling import trial_config

# Ray ends a stopped trial's process without waiting for its training thread, which is then unwinding out of
# `tune.report`; a thread that frees torch tensors while the interpreter shuts down aborts the process
# (SIGABRT and a crash dump in the output, seen at the end of an ASHA run with trial processes reused).
# So the process, not the thread, holds a trial's trainer: the next trial run in this process frees it.
_PROCESS_HELD: dict[str, Trainer] = {}


def train_trial(
    config: dict[str, Any],
    base: TrainConfig,
    checkpoint_epochs: list[int] | None = None,
    latency_ms: dict[str, float] | None = None,
    trainer_kind: str = "torch",
) -> None:
    """`config` is what Ray holds for this trial (tune/sampling.py: a search trial's sample or a confirmation
    run); `base` the sweep's TrainConfig; `checkpoint_epochs` the epochs whose report carries a checkpoint
    (None: every epoch); `latency_ms` each student backbone's measured latency at the deploy target;
    `trainer_kind` the space's `search.trainer` (core/simulated_training.py)."""
    started_at = time.time()
    # Ray logs every persisted checkpoint at INFO; one line per epoch per trial buries the progress table.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    if base.teacher_checkpoint:
        # A teacher in shared storage (a cluster) is fetched once per node into the local cache.
        base = base.replace(teacher_checkpoint=local_copy(base.teacher_checkpoint, base.cache_dir))
    cfg = trial_config(config, base)
    _PROCESS_HELD.clear()  # the previous trial in this process has ended: its thread is gone
    trainer = _PROCESS_HELD["trainer"] = TRAINERS[trainer_kind](cfg)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / CHECKPOINT_FILE))
    context = ray.get_runtime_context()
    # Where and when this run of the trial started, on which node and with which share of a GPU: how a
    # sweep survived lost nodes, and how it was packed, shows in every result. Ray's own `timestamp` is
    # whole seconds, too coarse to order trials that follow each other in one reused process.
    fixed = {
        "restored_from_epoch": trainer.epoch,
        "run_started_at": started_at,
        "node_id": context.get_node_id(),
        "gpus_assigned": float(context.get_assigned_resources().get("GPU", 0.0)),
        "device": str(trainer.device),
        "mode": cfg.mode,
    }
    if latency_ms:
        fixed["latency_ms"] = latency_ms.get(cfg.student_backbone)
    try:
        for result in trainer.epochs():
            epoch = result.to_dict()
            by_source = epoch.pop("val_dice_by_source")
            metrics = {
                **epoch,
                **{f"val_dice/{source}": dice for source, dice in by_source.items()},
                **_best_so_far(trainer),
                **fixed,
                "diverged": 0,
                "is_best": int(result.is_best),
            }
            if checkpoint_epochs is not None and trainer.epoch not in checkpoint_epochs:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as folder:
                trainer.save(Path(folder) / CHECKPOINT_FILE)
                (Path(folder) / EPOCH_FILE).write_text(json.dumps({"epoch": trainer.epoch}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    except DivergedError as err:
        print(f"trial diverged, ended without retry: {err}", flush=True)
        tune.report(
            {
                "epoch": trainer.epoch,
                **_best_so_far(trainer),
                **fixed,
                "diverged": 1,
                "val_dice": 0.0,
                "val_iou": 0.0,
                "error": str(err),
            }
        )


def _best_so_far(trainer: Trainer) -> dict[str, Any]:
    best = trainer.best_epoch or {"val_dice": 0.0, "val_iou": 0.0, "epoch": 0}
    return {"best_val_dice": best["val_dice"], "best_val_iou": best["val_iou"], "best_epoch": best["epoch"]}
