"""Every workaround that reaches into Ray Tune's, Optuna's or W&B's internals, in one place.

Each was read in and verified against the Ray version below; importing this module with another Ray
version warns once, so a Ray upgrade is checked here rather than discovered as a wrong sweep result.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import pickle
import posixpath
import warnings
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState as OptunaTrialState
from ray import cloudpickle, tune
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor
from ray.tune import ExperimentAnalysis
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils.serialization import TuneFunctionEncoder
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.storage import get_fs_and_path

from core.config import TrainConfig
from tune.records import TrialState
from tune.objective import Objective
from tune.sampling import run_sample, trial_config
from tune.sweep.study import INFEASIBLE_ATTR, LATENCY_ATTR, LATENCY_CONSTRAINT
from tune.tracking.run_metrics import define_epoch_metrics
from tune.tracking.wandb_sweep import join_sweep

VERIFIED_RAY_VERSION = "2.60.0"
if ray.__version__ != VERIFIED_RAY_VERSION:
    warnings.warn(f"tune/ray_compat.py was verified against Ray {VERIFIED_RAY_VERSION}, this is Ray "
                  f"{ray.__version__}: check OptunaSearch.on_trial_result/on_trial_complete/restore, "
                  f"TunerInternal._tune_config/_run_config, SearchGenerator.set_state/_experiment, "
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

    def __init__(self, *args, max_t: int, arm: str = "kd", wandb_runs: bool = False,
                 latency_ms: dict[str, float] | None = None, budget_ms: float | None = None,
                 base_backbone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.max_t, self.arm, self.wandb_runs = max_t, arm, wandb_runs
        self.latency_ms, self.budget_ms, self.base_backbone = latency_ms or {}, budget_ms, base_backbone

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ray's suggestion, within the latency budget: a proposal whose student is slower is told to the study
        as infeasible (PRUNED, with its latency: the sampler's constraint) and never reaches Ray, so it is never
        trained; the next proposal is asked for. The Optuna trial is also told which Ray trial (and W&B run,
        whose id is the Ray trial id) it is, so the journal, Ray's folders and W&B can be joined."""
        for _ in range(MAX_INFEASIBLE_IN_A_ROW):
            config = super().suggest(trial_id)
            trial = self._ot_trials.get(trial_id)
            if trial is None or not isinstance(config, dict):
                return config
            if not self._ot_study.metric_names:
                with warnings.catch_warnings():  # experimental in Optuna 5; it names the value in the dashboard
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self._ot_study.set_metric_names([self.metric])
            trial.set_user_attr(ARM_ATTR, self.arm)
            backbone = run_sample(config)[0].params.get("student_backbone", self.base_backbone)
            latency = self.latency_ms.get(backbone)
            if latency is not None:
                trial.set_user_attr(LATENCY_ATTR, latency)
                if self.budget_ms is not None:
                    trial.set_constraint(LATENCY_CONSTRAINT, latency - self.budget_ms)
            if latency is None or self.budget_ms is None or latency <= self.budget_ms:
                trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
                if self.wandb_runs:
                    trial.set_user_attr(WANDB_RUN_ATTR, trial_id)
                return config
            trial.set_user_attr(INFEASIBLE_ATTR, True)
            self._ot_study.tell(trial, state=OptunaTrialState.PRUNED)
            print(f"infeasible, not trained: {self.arm} proposal {trial.number} ({backbone}, {latency:.1f} ms) is over "
                  f"the {self.budget_ms:g} ms latency budget", flush=True)
            del self._ot_trials[trial_id]
        raise RuntimeError(f"{MAX_INFEASIBLE_IN_A_ROW} proposals in a row were over the latency budget")

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
        state, value = optuna_end(result, error, self.metric, self.max_t)
        if state != OptunaTrialState.FAIL:
            # The result ASHA stopped a trial on reaches the searcher here only, not through
            # on_trial_result: record it, so the pruned trial's last intermediate value is its value there.
            self.on_trial_result(trial_id, result)
        self._ot_study.tell(trial, value, state=state)
        self._completed_trials.add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore, re-pointed at this searcher's journal; then each trial the journal lost and
        tune.sweep.state_files added back (under a new Optuna id, marked with its Ray trial id) is linked
        again, so its results go to the added trial.

        Ray loads the pickled searcher whole, study storage included: that names the journal of the folder the
        sweep first ran in, so a copied or moved sweep went on writing the original's. This searcher was built
        for the folder the sweep is in now: its storage is kept, and the restored study and trials are
        re-opened on it (the sampler's state is the restored one)."""
        storage = self._storage
        super().restore(checkpoint_path)
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._sampler)
        for trial in self._ot_trials.values():
            trial.study, trial.storage = self._ot_study, self._ot_study._storage
        added = {t.user_attrs[RAY_TRIAL_ATTR]: t for t in self._ot_study.get_trials(deepcopy=False)
                 if RAY_TRIAL_ATTR in t.user_attrs}
        for trial_id, trial in list(self._ot_trials.items()):
            if trial_id in added and added[trial_id]._trial_id != trial._trial_id:
                self._ot_trials[trial_id] = optuna_trial(self._ot_study, added[trial_id])


RAY_TRIAL_ATTR = "ray_trial_id"   # Optuna trial user attributes: the Ray trial it ran as, its arm, its W&B run
ARM_ATTR = "arm"
WANDB_RUN_ATTR = "wandb_run_id"
# With a fast student in the space (the sweep checks that one meets the budget) TPE finds it long before this.
MAX_INFEASIBLE_IN_A_ROW = 200


def optuna_end(result: dict[str, Any] | None, error: bool, metric: str,
               max_t: int) -> tuple[OptunaTrialState, float | None]:
    """What the Optuna study is told about a Ray trial that ended: (state, value to tell).

    Reached `max_t` epochs: COMPLETE with the objective; stopped earlier (ASHA): PRUNED (Optuna takes its
    last intermediate value); errored, diverged or never reported the objective: FAIL."""
    value = (result or {}).get(metric)
    if error or not result or result.get("diverged") or value is None or math.isnan(value):
        return OptunaTrialState.FAIL, None
    if int(result.get("epoch", 0)) >= max_t:
        return OptunaTrialState.COMPLETE, float(value)
    return OptunaTrialState.PRUNED, None


def optuna_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.trial.Trial:
    """A live Optuna trial (report, tell) for a trial already in `study`: Optuna's public API makes one only
    through ask(); its constructor takes the storage's trial id."""
    return optuna.trial.Trial(study, frozen._trial_id)


def storage_id(trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> int:
    """The id an Optuna storage knows a trial by (unique across the journal's studies, unlike `number`)."""
    return trial._trial_id


def searcher_trials(searcher_state: bytes) -> dict[str, optuna.trial.Trial]:
    """{Ray trial id: its Optuna trial} from OptunaSearch's saved state (searcher-state-*.pkl): the link
    OptunaSearch itself uses (`_ot_trials`); each trial's params and distributions are as it sampled them.
    Empty when the state does not unpickle: the caller then matches trials by their parameters."""
    try:
        return dict(pickle.loads(searcher_state)["_ot_trials"])
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError, TypeError, ValueError):
        return {}


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
        if trial["trial_id"] in trial_ids:
            meta = json.loads(meta_json)
            epoch = (meta.get("last_result") or {}).get("epoch")
            if trial["status"] == "TERMINATED" and epoch:
                trial["stopping_criterion"] = {**(trial.get("stopping_criterion") or {}), "epoch": int(epoch)}
            trial["status"] = "PENDING"
            old = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))
            meta["checkpoint_manager"] = json.loads(json.dumps(_CheckpointManager(old.checkpoint_config),
                                                              cls=TuneFunctionEncoder))
            meta.update(last_result={}, error_filename=None, pickled_error_filename=None)
            trial_json, meta_json = json.dumps(trial, indent=2), json.dumps(meta, indent=2)
        records.append([trial_json, meta_json])
    data["trial_data"] = records
    return data



class _EpochChartedWandb:
    """The wandb module as Ray's logging actor calls it, with `init` also declaring the run's metrics
    (Ray's actor offers no hook between `wandb.init` and the first `log`)."""

    def __init__(self, objective: Objective):
        self.objective = objective

    def __getattr__(self, name: str):
        import wandb
        return getattr(wandb, name)

    def init(self, *args, **kwargs):
        import wandb
        run = wandb.init(*args, **kwargs)
        define_epoch_metrics(run, self.objective)
        return run


class ReusableWandbLoggingActor(_WandbLoggingActor):
    """Ray's W&B logging actor that declares its run's metrics, and can log another trial's run after its
    last one finished."""

    def __init__(self, logdir: str, queue, exclude: list[str], to_config: list[str], *args,
                 objective: Objective = Objective(), **kwargs):
        super().__init__(logdir, queue, exclude, to_config, *args, **kwargs)
        self._wandb = _EpochChartedWandb(objective)

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

    def __init__(self, *args, sweep: str, base: TrainConfig, objective: Objective = Objective(),
                 wandb_sweep_id: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sweep, self.base = sweep, base
        self.objective, self.wandb_sweep_id = objective, wandb_sweep_id
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
        wandb_init_kwargs["reinit"] = "finish_previous"  # Ray's `reinit=True` is deprecated by wandb
        wandb_init_kwargs = join_sweep(wandb_init_kwargs, self.wandb_sweep_id)
        wandb_init_kwargs["objective"] = self.objective  # for the actor (define_metric), not for wandb.init
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
        if trial not in self._trial_queues:
            # A restored trial that ends before it logged anything in this run (a seed that had finished
            # when the driver was killed): Ray's callback would raise KeyError and fail the resume.
            return
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


class _RestoredSearch(SearchGenerator):
    """Ray's search generator, restored to where the experiment is now and with this run's trial count.

    Ray restores the generator's pickled experiment, whose storage names the folder the sweep first ran in
    (a copied sweep's new trials were created in the original), and its first trial count (a sweep resumed
    with more trials, `--resume --extend`, never ran them)."""

    def __init__(self, searcher, num_samples: int, storage_path: str):
        super().__init__(searcher)
        self.num_samples = num_samples
        self.storage_path = storage_path   # the folder (or URI) that holds the experiment now

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._total_samples = max(self._total_samples, self.num_samples)
        storage = copy.copy(self._experiment.spec["storage"])
        storage.storage_filesystem, fs_path = get_fs_and_path(self.storage_path, None)
        storage.storage_fs_path = Path(fs_path).as_posix()
        self._experiment.spec["storage"] = self._experiment.storage = storage


def restore_tuner(experiment: str, trainable, callbacks: list, tune_config: tune.TuneConfig | None = None
                  ) -> tune.Tuner:
    """`Tuner.restore` that writes only where the experiment is now.

    Ray re-points trial folders and checkpoints of a moved experiment itself, but runs the restored run's
    pickled callbacks and searcher, which keep the absolute paths of the first run (W&B's folder, the
    Optuna journal): a resumed copy of a sweep wrote into the original. They are replaced here by this run's
    `callbacks` and, for a search, by `tune_config`'s searcher with its trial count."""
    tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    internal = tuner._local_tuner
    internal._run_config.callbacks = callbacks
    if tune_config is not None:
        searcher = tune_config.search_alg
        if tune_config.max_concurrent_trials:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=tune_config.max_concurrent_trials)
        internal._tune_config.search_alg = _RestoredSearch(searcher, tune_config.num_samples,
                                                           internal._run_config.storage_path)
        internal._tune_config.max_concurrent_trials = None  # the limiter above is that setting
    return tuner


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
