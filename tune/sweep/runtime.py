"""What every stage of a running sweep shares (`SweepRun`), and the Ray Tune pieces they are built from:
the trainable with its resources, ASHA, the run config, W&B's callback and mode, and Ray's own settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from core.config import TrainConfig
from tune.records import SweepPaths
from tune.space import SearchSpace, checkpoint_epochs
from tune.sweep.ray_compat.wandb_actor import SweepWandbLoggerCallback
from tune.sweep.signals import StopSignals
from tune.sweep.study import study_name
from tune.sweep.trainable import train_trial
from tune.tracking.mode import RunMode
from tune.tracking.network import run_wait_s, wandb_timeout_s
from tune.tracking.run_settings import TrialRunSettings


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM: Ray saved its state; the same command with --resume continues."""


@dataclass
class SweepRun:
    """One run of the sweep driver: the space, where its files go, whether trials ask for GPUs, where W&B
    runs go (online, offline or disabled; the entity and the W&B Sweep they join) and how it stops."""

    space: SearchSpace
    paths: SweepPaths
    use_gpu: bool
    wandb_mode: RunMode
    signals: StopSignals = field(default_factory=StopSignals)
    stored_name: str = ""  # the name the journal's studies carry (a renamed copy keeps it); default: the space's
    wandb_entity: str | None = None
    wandb_sweep_id: str | None = None  # the W&B Sweep (online only) every trial's run joins
    students: dict[str, dict] | None = None  # each student backbone's latency at the deploy target (latency.json)
    # Free W&B logging actors, kept from one stage to the next (they end with the driver's Ray).
    wandb_actors: list[tuple[Any, Any]] = field(default_factory=list)

    def latency_ms(self) -> dict[str, float]:
        """Student backbone -> latency at the deploy target, ms (empty without a target)."""
        return {b: s["latency_ms"] for b, s in (self.students or {}).items()}

    def study_name(self, arm: str) -> str:
        """The Optuna study of an arm in this sweep's journal."""
        return study_name(self.stored_name or self.space.name, arm)


def wandb_callbacks(run: SweepRun, job_type: str, base: TrainConfig) -> list:
    """One W&B run per trial (`job_type` trial or confirm), grouped by sweep, with its whole config."""
    if run.wandb_mode == "disabled":
        return []
    w = run.space.wandb
    timeout_s = wandb_timeout_s()
    return [
        SweepWandbLoggerCallback(
            project=w.project,
            entity=run.wandb_entity,
            group=w.group or run.space.name,
            mode=run.wandb_mode,
            dir=str(run.paths.sweep_dir),
            job_type=job_type,
            excludes=["is_best", "node_id", "run_started_at"],
            log_config=False,
            settings=TrialRunSettings(run.space.name, base, run.space.objective, run.wandb_sweep_id, timeout_s),
            # Ray's wait at the end of a stage for runs still logging (30 min by default): their start and end.
            upload_timeout=math.ceil(run_wait_s(timeout_s)),
            max_actors=run.space.search.max_concurrent_trials,
            idle=run.wandb_actors,
        )
    ]


def trainable_for(run: SweepRun, base: TrainConfig, rung_epochs: Sequence[int] = ()) -> Callable[..., Any]:
    """The trial function with the sweep's base config, checkpoint epochs and resources bound."""
    space = run.space
    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu if run.use_gpu else 0}
    epochs = checkpoint_epochs(space.search.checkpoint_every, space.asha.max_t, rung_epochs)
    trainable = tune.with_parameters(
        train_trial, base=base, checkpoint_epochs=epochs, latency_ms=run.latency_ms(), trainer_kind=space.search.trainer
    )
    return tune.with_resources(trainable, resources)


def asha_scheduler(space: SearchSpace) -> ASHAScheduler:
    """The space's ASHA, deciding on the epoch each trial reports."""
    a = space.asha
    return ASHAScheduler(
        time_attr="epoch", max_t=a.max_t, grace_period=a.grace_period, reduction_factor=a.reduction_factor
    )


def run_config(run: SweepRun, name: str, callbacks: list) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=run.paths.shared,
        # Each checkpoint holds the last state *and* the best-validation weights: one is enough.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=run.space.search.max_failures),
        callbacks=callbacks,
        verbose=1,
    )
