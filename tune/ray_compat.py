"""Every workaround that reaches into Ray Tune's or its integrations' internals, in one place.

Each was read in and verified against the Ray version below; importing this module with another Ray
version warns once, so a Ray upgrade is checked here rather than discovered as a wrong sweep result.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import warnings
from dataclasses import dataclass
from typing import Any

import ray
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.search.optuna import OptunaSearch

VERIFIED_RAY_VERSION = "2.60.0"
if ray.__version__ != VERIFIED_RAY_VERSION:
    warnings.warn(f"tune/ray_compat.py was verified against Ray {VERIFIED_RAY_VERSION}, this is Ray "
                  f"{ray.__version__}: check OptunaSearch.on_trial_result/on_trial_complete, "
                  f"WandbLoggerCallback._start_logging_actor(trial, exclude_results, **kwargs) and ExperimentAnalysis trial statuses",
                  stacklevel=2)

# A trial that never reported (pending when a sweep was interrupted) has no result file; Ray's analysis
# warns about each one with a stack of paths, which reads like a failure and is not one.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


class TruthfulOptunaSearch(OptunaSearch):
    """OptunaSearch that tells the Optuna study what really happened to each trial.

    Ray 2.60 reports intermediate values at Ray's iteration counter (which lags the epoch for a trial
    whose checkpoint was repaired on resume) and tells every trial that ended with a value COMPLETE,
    so TPE compared 4-epoch values of ASHA-stopped trials with full-budget ones. Here: intermediate values
    at step = epoch; a trial that reached `max_t` epochs is COMPLETE with the objective; one that stopped
    earlier (ASHA) is PRUNED, so Optuna ranks it by its last intermediate value at that step; an errored
    or diverged trial is FAIL.
    """

    def __init__(self, *args, max_t: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_t = max_t

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = result.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)) or result.get("diverged"):
            return
        trial = self._ot_trials[trial_id]
        step = int(result["epoch"])
        if step not in trial._cached_frozen_trial.intermediate_values:
            trial.report(float(value), step)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        from optuna.trial import TrialState

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial = self._ot_trials[trial_id]
        value = (result or {}).get(self.metric)
        if error or not result or result.get("diverged") or value is None or math.isnan(value):
            self._ot_study.tell(trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        # The result ASHA stopped a trial on reaches the searcher here only, not through on_trial_result:
        # record it, so the pruned trial's last intermediate value is its value at that rung.
        self.on_trial_result(trial_id, result)
        if int(result.get("epoch", 0)) >= self.max_t:
            self._ot_study.tell(trial, float(value), state=TrialState.COMPLETE)
        else:
            self._ot_study.tell(trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


class SweepWandbLoggerCallback(WandbLoggerCallback):
    """Ray's W&B callback, with runs a user can read and without leaking the API key.

    Each run's config is the trial's whole TrainConfig (base + sampled, as it trains), tagged with the
    sweep, arm and student backbone; Ray would log only the sampled values. Ray also hands
    WANDB_API_KEY to its logging actor through runtime_env, which Ray writes in plain text to its session
    logs; the actor runs on this node and inherits this process's environment anyway, so the key is hidden
    from runtime_env while the actor starts."""

    def __init__(self, *args, sweep: str, base: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self.sweep, self.base = sweep, base

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        from core.config import config_from_dict
        from tune.trainable import config_of

        cfg = config_of(trial.config, config_from_dict(self.base, source="sweep base config"))
        arm = (trial.config.get("candidate") or trial.config).get("arm", "kd")
        wandb_init_kwargs["config"] = {**cfg.to_dict(), "arm": arm, "sweep": self.sweep,
                                       "trial_params": wandb_init_kwargs.get("config", {})}
        wandb_init_kwargs["tags"] = [self.sweep, f"arm:{arm}", cfg.student_backbone,
                                     wandb_init_kwargs.get("job_type", "trial")]
        key = os.environ.pop("WANDB_API_KEY", None)
        try:
            return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
        finally:
            if key is not None:
                os.environ["WANDB_API_KEY"] = key


@dataclass
class TrialState:
    """A trial as Ray's experiment state on disk records it (not as `Tuner.fit()` returns it)."""

    trial_id: str
    status: str                # PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    config: dict[str, Any]
    last_result: dict[str, Any]
    path: str | None
    checkpoint_path: str | None
    error: str | None
    history: list[dict[str, Any]]   # one entry per reported result: epoch, val_dice, val_iou


def recorded_trials(experiment: str) -> list[TrialState]:
    """The trials of the Ray experiment at `experiment` as its last snapshot records them.

    After a Ctrl-C, `Tuner.fit()` returns trials it has just marked TERMINATED in memory, which reads like
    a finished sweep; Ray snapshots the state before that cleanup, so the snapshot still says which trials
    were RUNNING or PENDING, i.e. interrupted."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(experiment)
    out = []
    for trial in analysis.trials:
        checkpoint = trial.checkpoint
        frame = analysis.trial_dataframes.get(trial.trial_id)
        columns = [c for c in ("epoch", "val_dice", "val_iou") if frame is not None and c in frame]
        history = frame[columns].to_dict("records") if frame is not None and "epoch" in columns else []
        out.append(TrialState(trial.trial_id, trial.status, dict(trial.config), dict(trial.last_result or {}),
                              trial.path, checkpoint.path if checkpoint else None,
                              _read_error(trial) if trial.status == "ERROR" else None, history))
    return out


def _read_error(trial) -> str:
    name = trial.run_metadata.error_filename
    try:
        with trial.storage.storage_filesystem.open_input_stream(posixpath.join(trial.path, name)) as f:
            text = f.read().decode(errors="replace").strip().splitlines()
    except (OSError, TypeError, AttributeError):
        return "errored (Ray recorded no message)"
    # Ray wraps the trial's exception; its last line is the original "Type: message".
    return text[-1] if text else "errored (Ray recorded no message)"
