"""The Ray boundary: everything the sweep relies on that Ray Tune does not promise (private names, and its
undocumented files, folder names and timings), with Optuna's and W&B's internals met on the way; each was read
in Ray's source of VERIFIED_RAY_VERSION and is checked by tests/test_ray_compat.py, which fails when an upgrade
changes it. Importing this package with another Ray version warns once. Product logic stays outside.

`conventions` (light: the standard library only; readers of a finished sweep use it, never Ray):
  EXPERIMENT_STATE, SEARCHER_STATE, TUNER_FILE,   the state files Tuner.restore reads: TuneController.CKPT_FILE_TMPL,
    STATE_FILES                                   SearchGenerator/Searcher/BasicVariantGenerator/CallbackList
                                                  .CKPT_FILE_TMPL, tuner_internal._TUNER_PKL; staged by the driver
                                                  then copied in place (tuner.pkl written directly)
  newest_state_file                               which one restore reads: the greatest name
                                                  (execution.experiment_state._find_newest_experiment_checkpoint)
  is_json_state                                   experiment_state is JSON, the other state files pickles
  RESULT_FILE                                     a trial's results, JSON a line (air.constants.EXPR_RESULT_FILE)
  CHECKPOINT_DIR_PREFIX, is_checkpoint_dir        checkpoint_NNNNNN (StorageContext._make_checkpoint_dir_name)
  rungs                                           ASHA's milestones (schedulers.async_hyperband._Bracket)
  TUNE_STOP_SIGNAL                                Tune's stop handler on SIGUSR1 (tune.tune._setup_signal_catching)
  TUNE_STOP_WAIT_S                                Tune's 5 s wait for ending trials (TuneController._cleanup_trials)
  wandb_run_id                                    a trial's W&B run id is its id (WandbLoggerCallback.log_trial_start)
  AUTH_TOKEN_FILE, AUTH_TOKEN_PATH_ENV            where a local ray.init writes its auth token, with the umask's mode
                                                  (authentication_token_setup._get_default_token_path)

`optuna_search` (Ray's OptunaSearch and Optuna's trial internals):
  OptunaSearchInternals      OptunaSearch._ot_study/_ot_trials/_completed_trials/_storage/_study_name/_sampler and
                             its restore (the pickled __dict__); optuna Trial.study/.storage, Study._storage
  reported_steps             optuna Trial._cached_frozen_trial
  optuna_trial, storage_id   optuna Trial(study, trial_id), Trial/FrozenTrial._trial_id
  searcher_trials            searcher-state-*.pkl: OptunaSearch.save's pickled __dict__, its `_ot_trials`

`experiment_state` (Ray's record of an experiment):
  recorded_trials            ExperimentAnalysis's trials as last snapshotted (before an interrupted run's cleanup);
                             Trial.run_metadata.error_filename, Trial.storage; the error file's last line is the
                             trial's exception; logger ray.tune.analysis.experiment_analysis
  experiment_folders         Trial.storage (train._internal.storage.StorageContext): experiment_driver_staging_path,
                             storage_filesystem, experiment_fs_path; Callback.get_state is called after the driver
                             staged a snapshot and before it is copied (state_files.KeepGoodStateCopies)
  rerun_from_scratch         experiment_state-*.json's layout (trial_data: [trial JSON, run metadata JSON]; status,
                             stopping_criterion, checkpoint_manager: a cloudpickled train._internal.checkpoint_manager
                             ._CheckpointManager, last_result, error_filename), serialization.TuneFunctionEncoder

`tuner_restore`:
  restore_tuner              Tuner._local_tuner (TunerInternal._run_config/_tune_config), SearchGenerator.set_state/
                             _total_samples/_experiment, train._internal.storage.get_fs_and_path

`local_ray`:
  loopback_only              ray_constants.ENABLE_RAY_CLUSTER (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) read by
                             services.get_node_ip_address: false, a local Ray's node address is 127.0.0.1 and its
                             processes listen there only (ray.init turns an explicit 127.0.0.1 into the node's IP)

`wandb_auth` (no Ray; W&B's internals):
  wandb_key_problem          W&B's check of an API key's format (wandb.sdk.lib.wbauth.validation.check_api_key)

`wandb_actor` (air.integrations.wandb):
  SweepWandbLoggerCallback   WandbLoggerCallback._logger_actor_cls/_start_logging_actor/_cleanup_logging_actor(s)/
                             _signal_logging_actor_stop/_trial_queues/_trial_logging_actors/_trial_logging_futures/
                             _logging_future_to_trial/_upload_timeout/kwargs; Ray's `reinit=True` and WANDB_API_KEY in
                             the actor's runtime_env
  ReusableWandbLoggingActor  _WandbLoggingActor: its constructor's arguments, `_wandb`, `run`
"""

from __future__ import annotations

import importlib.metadata
import warnings

VERIFIED_RAY_VERSION = "2.60.0"


def installed_ray_version() -> str | None:
    """The installed Ray's version, read without importing Ray; None where Ray is not installed."""
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


if installed_ray_version() not in (None, VERIFIED_RAY_VERSION):
    warnings.warn(
        f"tune/sweep/ray_compat was verified against Ray {VERIFIED_RAY_VERSION}, this is Ray "
        f"{installed_ray_version()}: run tests/test_ray_compat.py, which checks each dependency its "
        f"docstring lists",
        stacklevel=2,
    )
