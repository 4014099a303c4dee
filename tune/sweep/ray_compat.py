"""Every workaround that reaches into Ray Tune's, Optuna's or W&B's internals, in one place.

Each was read in and verified against the Ray version below; importing this module with another Ray
version warns once, so a Ray upgrade is checked here rather than discovered as a wrong sweep result.
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import warnings
from typing import Any

import ray
from optuna.trial import TrialState as OptunaTrialState
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.tune import ExperimentAnalysis
from ray.tune.search.optuna import OptunaSearch

from core.config import TrainConfig
from tune.records import TrialState
from tune.sampling import run_sample, trial_config

VERIFIED_RAY_VERSION = "2.60.0"
if ray.__version__ != VERIFIED_RAY_VERSION:
    warnings.warn(f"tune/ray_compat.py was verified against Ray {VERIFIED_RAY_VERSION}, this is Ray "
                  f"{ray.__version__}: check OptunaSearch.on_trial_result/on_trial_complete, "
                  f"WandbLoggerCallback._start_logging_actor/_cleanup_logging_actor(s), _WandbLoggingActor.run and "
                  f"ExperimentAnalysis trial statuses",
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
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial = self._ot_trials[trial_id]
        value = (result or {}).get(self.metric)
        if error or not result or result.get("diverged") or value is None or math.isnan(value):
            self._ot_study.tell(trial, state=OptunaTrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        # The result ASHA stopped a trial on reaches the searcher here only, not through on_trial_result:
        # record it, so the pruned trial's last intermediate value is its value at that rung.
        self.on_trial_result(trial_id, result)
        if int(result.get("epoch", 0)) >= self.max_t:
            self._ot_study.tell(trial, float(value), state=OptunaTrialState.COMPLETE)
        else:
            self._ot_study.tell(trial, state=OptunaTrialState.PRUNED)
        self._completed_trials.add(trial_id)


class ReusableWandbLoggingActor(_WandbLoggingActor):
    """Ray's W&B logging actor that can log another trial's run after its last one finished."""

    def reset(self, logdir: str, queue, exclude: list[str], to_config: list[str], **kwargs) -> None:
        self.__init__(logdir, queue, exclude, to_config, **kwargs)


class SweepWandbLoggerCallback(WandbLoggerCallback):
    """Ray's W&B callback, with runs a user can read, logging processes reused, and no leaked API key.

    Each run's config is the trial's whole TrainConfig (base + sampled, as it trains), tagged with the
    sweep, arm and student backbone; Ray would log only the sampled values. Ray starts two processes per
    trial (a logging actor and its queue actor, ~3 s of CPU on this project's 2-core machine, where they
    compete with training); here a logging actor whose run finished cleanly logs the next trial's run
    (bench/sweep_overhead.py --wandb). Ray also hands WANDB_API_KEY to its logging actor through
    runtime_env, which Ray writes in plain text to its session logs; the actor runs on this node and
    inherits this process's environment anyway, so the key is hidden from runtime_env while it starts."""

    _logger_actor_cls = ReusableWandbLoggingActor

    def __init__(self, *args, sweep: str, base: TrainConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.sweep, self.base = sweep, base
        self._idle: list[tuple[Any, Any]] = []   # (logging actor, its queue) whose run has finished
        self._failed: set = set()                # trials that errored: Ray may restart them, never reuse
        self._ending = False

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        if trial in self._trial_logging_futures:  # a restarted trial goes on logging to its run
            return None
        cfg = trial_config(trial.config, self.base)
        sampled, _ = run_sample(trial.config)
        arm = sampled.arm
        wandb_init_kwargs["config"] = {**cfg.to_dict(), "arm": arm, "sweep": self.sweep,
                                       "trial_params": sampled.params}
        wandb_init_kwargs["tags"] = [self.sweep, f"arm:{arm}", cfg.student_backbone,
                                     wandb_init_kwargs.get("job_type", "trial")]
        self._cleanup_logging_actors()  # collect runs that have finished since: their actors are free
        if self._idle:
            actor, queue = self._idle.pop()
            actor.reset.remote(logdir=trial.local_path, queue=queue, exclude=exclude_results,
                               to_config=self.AUTO_CONFIG_KEYS, **wandb_init_kwargs)
            self._trial_queues[trial], self._trial_logging_actors[trial] = queue, actor
            future = actor.run.remote()  # an actor runs its calls in order: after reset
            self._trial_logging_futures[trial] = future
            self._logging_future_to_trial[future] = trial
            return None
        key = os.environ.pop("WANDB_API_KEY", None)
        try:
            return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
        finally:
            if key is not None:
                os.environ["WANDB_API_KEY"] = key

    def on_trial_start(self, iteration, trials, trial, **info):
        """A trial's run starts with its first result (`log_trial_result` starts it), an epoch later: by
        then the run of the trial whose process it reuses has finished and its logging actor is free."""

    def log_trial_end(self, trial, failed: bool = False):
        if failed:
            self._failed.add(trial)
        super().log_trial_end(trial, failed=failed)

    def _cleanup_logging_actor(self, trial):
        """Called for a run that finished (or, at the end, timed out): keep a cleanly finished actor."""
        future = self._trial_logging_futures[trial]
        if self._ending or trial in self._failed or not ray.wait([future], timeout=0)[0]:
            return super()._cleanup_logging_actor(trial)
        queue = self._trial_queues.pop(trial)
        while not queue.empty():  # nothing of an earlier trial may land in the next run
            queue.get_nowait()
        self._idle.append((self._trial_logging_actors.pop(trial), queue))
        del self._trial_logging_futures[trial]
        return None

    def on_experiment_end(self, trials, **info):
        """End every trial's run, then wait a bounded time for them to finish writing.

        Ray signals the end of a run only for trials that ended; the run of a trial still running when the
        sweep is interrupted never got it (seen with `reuse_actors`), and Ray then waited its whole
        `upload_timeout` (30 min) for that run: a Ctrl-C that hung the driver. Signalling every open run
        first makes each finish (and stay syncable) with what it logged."""
        self._ending = True
        for trial in list(self._trial_queues):
            self._signal_logging_actor_stop(trial)
        self._cleanup_logging_actors(timeout=self._upload_timeout, kill_on_timeout=True)
        for actor, _ in self._idle:
            ray.kill(actor)
        self._idle.clear()


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
        columns = [c for c in ("epoch", "val_dice", "val_iou", "best_val_dice", "best_val_iou")
                   if frame is not None and c in frame]
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
