"""tune/sweep/ray_compat: each thing the sweep relies on that Ray does not promise (a private name, a file, a
folder name, a timing), checked against the installed Ray. An upgrade that changes one fails here, naming it,
rather than as a wrong sweep result; VERIFIED_RAY_VERSION is raised once this whole file passes.

The tests marked slow share one local Ray and one small experiment (two trials, one of them errored).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import ray
from optuna.distributions import FloatDistribution
from ray import cloudpickle, tune
from ray.air.integrations.wandb import _WandbLoggingActor
from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.storage import StorageContext
from ray.tune.callback import CallbackList
from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
from ray.tune.execution.tune_controller import TuneController
from ray.tune.impl.tuner_internal import _TUNER_PKL
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.search_generator import SearchGenerator
from ray.tune.search.searcher import Searcher
from ray.tune.utils.util import _load_newest_checkpoint

import tune.sweep.ray_compat as ray_compat
from core.config import TrainConfig
from tune.objective import Objective
from tune.records import EPOCH_FILE
from tune.sweep.ray_compat.conventions import (
    AUTH_TOKEN_FILE,
    AUTH_TOKEN_PATH_ENV,
    EXPERIMENT_STATE,
    RESULT_FILE,
    SEARCHER_STATE,
    STATE_FILES,
    TUNE_STOP_SIGNAL,
    TUNE_STOP_WAIT_S,
    TUNER_FILE,
    is_checkpoint_dir,
    is_json_state,
    newest_state_file,
    rungs,
    wandb_run_id,
)
from tune.sweep.ray_compat.experiment_state import experiment_folders, recorded_trials, rerun_from_scratch
from tune.sweep.ray_compat.optuna_search import (
    OptunaSearchInternals,
    optuna_trial,
    reported_steps,
    searcher_trials,
    storage_id,
)
from tune.sweep.ray_compat.tuner_restore import restore_tuner
from tune.sweep.ray_compat.wandb_actor import SweepWandbLoggerCallback
from tune.sweep.ray_compat.wandb_auth import wandb_key_problem
from tune.sweep.signals import GRACE_S
from tune.sweep.study import journal_storage
from tune.tracking.run_settings import TrialRunSettings

SPACE = {"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}
GOOD_LR, FAILING_LR = 0.001, 0.002  # the experiment's two trials: one ends, one raises after its first epoch
# The runs' objective: reported by no trial and no config key, so only its metric definition names it.
OBJECTIVE = Objective("best_val_iou", "max")


def _trainable(config: dict) -> None:
    """Two epochs, each reported with a checkpoint holding its epoch."""
    for epoch in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))
            tune.report(
                {"epoch": epoch, "score": epoch * config["learning_rate"]},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
        if config["learning_rate"] == FAILING_LR:
            raise ValueError("boom")


class StagingProbe(tune.Callback):
    """Records, each time Ray asks its callbacks for their state, what its driver has staged by then (as
    tune.sweep.state_files.KeepGoodStateCopies reads it)."""

    def __init__(self):
        self.trials: list = []
        self.staged: list[tuple[list[str], bytes]] = []  # (staged file names, the staged experiment state)

    def __getstate__(self) -> dict:
        return {"trials": [], "staged": []}  # Ray pickles its callbacks in tuner.pkl

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        self.trials = trials

    def get_state(self) -> None:
        folders = experiment_folders(self.trials)
        if folders is not None:
            names = sorted(os.listdir(folders[0]))
            name = newest_state_file(names, EXPERIMENT_STATE)
            self.staged.append((names, (Path(folders[0]) / name).read_bytes() if name else b""))
        return None


@pytest.fixture(scope="module")
def ray_session():
    # Ray's worker processes cannot import a test module: its trainable and callbacks travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def experiment(ray_session, tmp_path_factory) -> SimpleNamespace:
    """One Tuner run: Ray's OptunaSearch, checkpoints kept one per trial, the sweep's W&B callback offline."""
    root = tmp_path_factory.mktemp("ray_compat")
    probe = StagingProbe()
    wandb_callback = SweepWandbLoggerCallback(
        project="ray-compat",
        mode="offline",
        dir=str(root),
        log_config=False,
        settings=TrialRunSettings("compat", TrainConfig(), OBJECTIVE),
    )
    searcher = OptunaSearch(
        space=SPACE,
        metric="score",
        mode="max",
        points_to_evaluate=[{"learning_rate": GOOD_LR}, {"learning_rate": FAILING_LR}],
    )
    tuner = tune.Tuner(
        _trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            name="exp",
            storage_path=str(root),
            verbose=0,
            callbacks=[probe, wandb_callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()
    trials = {t.config["learning_rate"]: t for t in recorded_trials(str(root / "exp"))}
    return SimpleNamespace(root=root, path=root / "exp", probe=probe, good=trials[GOOD_LR], failed=trials[FAILING_LR])


def newest(folder: Path, pattern: str) -> Path:
    name = newest_state_file(os.listdir(folder), pattern)
    assert name is not None, f"{folder}: no {pattern}"
    return folder / name


# --- the version checked ---------------------------------------------------------------------------------


def test_the_installed_ray_is_the_verified_one():
    assert ray.__version__ == ray_compat.VERIFIED_RAY_VERSION, (
        f"Ray {ray.__version__} is installed, tune/sweep/ray_compat was verified against "
        f"{ray_compat.VERIFIED_RAY_VERSION}: once every test of this file passes, raise VERIFIED_RAY_VERSION"
    )


def test_another_ray_version_warns_on_import_without_importing_ray(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9" if name == "ray" else real(name))
    try:
        with pytest.warns(UserWarning, match="verified against Ray 2.60.0, this is Ray 9.9.9"):
            importlib.reload(ray_compat)
    finally:
        monkeypatch.undo()
        importlib.reload(ray_compat)


# --- conventions: files, folder names, rules, timings ----------------------------------------------------


def test_state_file_names_are_the_ones_ray_writes_and_restores():
    rays = tuple(
        c.CKPT_FILE_TMPL.format("*")
        for c in (TuneController, SearchGenerator, Searcher, BasicVariantGenerator, CallbackList)
    )
    assert (*rays, _TUNER_PKL) == STATE_FILES and _TUNER_PKL == TUNER_FILE
    assert TuneController.CKPT_FILE_TMPL.format("*") == EXPERIMENT_STATE
    assert Searcher.CKPT_FILE_TMPL.format("*") == SEARCHER_STATE


def test_ray_reads_the_state_file_with_the_greatest_name_not_the_newest_one(tmp_path):
    names = ["2026-01-02_10-00-00", "2026-03-01_09-00-00", "2026-02-01_23-59-59"]
    for age, stamp in enumerate(names):  # the greatest name is the oldest file on disk
        for pattern in (EXPERIMENT_STATE, SEARCHER_STATE):
            path = tmp_path / pattern.replace("*", stamp)
            path.write_bytes(cloudpickle.dumps({"stamp": stamp}))
            os.utime(path, (1e9 - age * 1e6, 1e9 - age * 1e6))
    listed = os.listdir(tmp_path)
    assert Path(_find_newest_experiment_checkpoint(str(tmp_path))).name == newest_state_file(listed, EXPERIMENT_STATE)
    expected = newest_state_file(listed, SEARCHER_STATE)
    assert _load_newest_checkpoint(str(tmp_path), SEARCHER_STATE) == {"stamp": expected.split("-", 2)[2][:-4]}


def test_a_local_ray_writes_its_auth_token_where_conventions_say_and_the_sweep_makes_it_owner_only(
    tmp_path, monkeypatch
):
    from ray._private.authentication import authentication_token_setup as token_setup

    from tune.sweep.pipeline import owner_only_token

    monkeypatch.setenv("HOME", str(tmp_path))
    assert token_setup._get_default_token_path() == Path.home().joinpath(*AUTH_TOKEN_FILE)
    monkeypatch.delenv(AUTH_TOKEN_PATH_ENV, raising=False)
    token = Path.home().joinpath(*AUTH_TOKEN_FILE)
    token.parent.mkdir()
    token.write_text("secret")
    token.chmod(0o644)  # as Ray leaves it under the usual umask
    owner_only_token()
    assert token.stat().st_mode & 0o777 == 0o600


def test_rungs_are_rays_milestones():
    for max_t, grace, rf in [(12, 4, 2), (40, 5, 3), (4, 1, 2), (10, 10, 2), (27, 1, 3), (30, 5, 3), (2, 1, 2)]:
        assert rungs(max_t, grace, rf) == sorted(m for m, _ in _Bracket(grace, max_t, rf, 0)._rungs), (max_t, grace, rf)


def test_tune_stops_on_sigusr1_and_leaves_sigint_to_the_driver():
    from ray.tune.tune import _setup_signal_catching

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, TUNE_STOP_SIGNAL)}
    try:
        stopped = _setup_signal_catching()  # what Tune's run loop does when it starts
        handler = signal.getsignal(TUNE_STOP_SIGNAL)
        assert callable(handler) and handler is not before[TUNE_STOP_SIGNAL]
        # TUNE_DISABLE_SIGINT_HANDLER (tune/sweep/__init__.py): Ctrl-C stays with tune/sweep/signals.py
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
        handler(TUNE_STOP_SIGNAL, None)
        assert stopped.is_set()
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


def test_tune_waits_five_seconds_for_ending_trials_and_the_driver_cuts_that_short():
    source = inspect.getsource(TuneController._cleanup_trials)
    waits = re.findall(r"time\.monotonic\(\) - start < (\d+(?:\.\d+)?)", source)
    assert [float(w) for w in waits] == [TUNE_STOP_WAIT_S], source
    assert GRACE_S < TUNE_STOP_WAIT_S


def test_rays_logging_actor_calls_wandb_init_through_its_wandb_attribute():
    """ray_compat.wandb_actor replaces `_wandb` to call `run_started` right after `wandb.init`."""
    assert "self._wandb.init(" in inspect.getsource(_WandbLoggingActor.run)
    assert "self._wandb = wandb" in inspect.getsource(_WandbLoggingActor.__init__)


def test_wandbs_own_key_check_accepts_its_formats_and_words_the_problem_without_the_key():
    """tune.tracking.mode refuses a malformed WANDB_API_KEY before a sweep with W&B's own format check."""
    assert wandb_key_problem("0123456789abcdef" * 2 + "01234567") is None  # 40 hex characters
    assert wandb_key_problem("local-" + "a" * 40) is None  # a self-hosted server's key
    problem = wandb_key_problem("not-a-key")
    assert problem == "API key must have 40+ characters, has 5." and "not-a-key" not in problem


# --- OptunaSearch's and Optuna's internals (no Ray run) --------------------------------------------------


def test_optuna_search_internals_name_what_ray_keeps():
    search = OptunaSearchInternals(space=SPACE, metric="score", mode="max")
    config = search.suggest("t1")
    trial = search.asked("t1")
    assert trial is search.open_trial("t1") and trial.params == config and search.links() == {"t1": trial}
    trial.report(0.3, 1)
    assert reported_steps(trial) == {1: 0.3}
    (frozen,) = search.study.get_trials(deepcopy=False)
    assert storage_id(trial) == storage_id(frozen) == storage_id(optuna_trial(search.study, frozen))
    OptunaSearch.on_trial_complete(search, "t1", {"score": 0.3})  # Ray's own bookkeeping of a told trial
    assert search.open_trial("t1") is None and search.asked("t1") is trial
    search.forget("t1")
    assert search.asked("t1") is None
    search.link("t1", frozen)
    assert storage_id(search.asked("t1")) == storage_id(frozen)


def test_a_restored_optuna_search_writes_its_own_journal_not_the_pickled_one(tmp_path):
    for name in ("first", "copy"):
        (tmp_path / name).mkdir()
    first = OptunaSearchInternals(
        space=SPACE, metric="score", mode="max", study_name="s", storage=journal_storage(tmp_path / "first")
    )
    first.suggest("t1")
    state = tmp_path / "searcher-state-x.pkl"
    first.save(str(state))  # what Ray writes as searcher-state-*.pkl: the searcher, storage included
    journal = (tmp_path / "first" / "optuna.journal").read_bytes()
    (tmp_path / "copy" / "optuna.journal").write_bytes(journal)
    copy = OptunaSearchInternals(
        space=SPACE, metric="score", mode="max", study_name="s", storage=journal_storage(tmp_path / "copy")
    )
    copy.restore(str(state))
    copy.asked("t1").report(0.5, 1)
    (reported,) = optuna.load_study(study_name="s", storage=journal_storage(tmp_path / "copy")).trials
    assert reported.intermediate_values == {1: 0.5}
    assert (tmp_path / "first" / "optuna.journal").read_bytes() == journal
    assert set(searcher_trials(state.read_bytes())) == {"t1"} and searcher_trials(b"cut") == {}


# --- a real run ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_leaves_the_state_files_restore_reads_json_or_pickled(experiment):
    names = os.listdir(experiment.path)
    found = {pattern: newest_state_file(names, pattern) for pattern in STATE_FILES}
    assert found[EXPERIMENT_STATE] and found[SEARCHER_STATE] and found[TUNER_FILE], names
    for name in filter(None, found.values()):
        data = (experiment.path / name).read_bytes()
        if is_json_state(name):
            assert isinstance(json.loads(data), dict), name
        else:
            pickle.loads(data)  # every other state file is a pickle, *.json ones included
    assert tune.Tuner.can_restore(str(experiment.path))


@pytest.mark.slow
def test_callbacks_see_each_snapshot_staged_before_it_reaches_the_experiment_folder(experiment):
    staged = experiment.probe.staged
    assert staged, "Ray never asked its callbacks for their state"
    for names, state in staged:
        assert newest_state_file(names, SEARCHER_STATE) and TUNER_FILE not in names  # tuner.pkl is not staged
        assert isinstance(json.loads(state), dict)
    # The last snapshot the callbacks saw staged is the one Ray copied into the experiment folder.
    assert staged[-1][1] == newest(experiment.path, EXPERIMENT_STATE).read_bytes()


@pytest.mark.slow
def test_a_trial_folder_has_its_results_a_json_line_each_and_checkpoints_numbered_by_report(experiment):
    folder = Path(experiment.good.path)
    results = [json.loads(line) for line in (folder / RESULT_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in results] == [1, 2]
    checkpoints = [p.name for p in folder.iterdir() if p.is_dir()]
    # num_to_keep=1: only the second report's checkpoint is left, named by its index
    assert checkpoints == [StorageContext._make_checkpoint_dir_name(1)] and is_checkpoint_dir(checkpoints[0])
    assert Path(experiment.good.checkpoint_path).name == checkpoints[0]


@pytest.mark.slow
def test_recorded_trials_read_status_history_checkpoint_and_the_trials_own_error(experiment):
    good, failed = experiment.good, experiment.failed
    assert (good.status, failed.status) == ("TERMINATED", "ERROR")
    assert [h["epoch"] for h in good.history] == [1, 2] and good.last_result["epoch"] == 2
    assert good.error is None and failed.error == "ValueError: boom"


@pytest.mark.slow
def test_the_experiment_state_layout_lets_trials_be_rerun_from_scratch(experiment):
    state = json.loads(newest(experiment.path, EXPERIMENT_STATE).read_text())
    for trial_json, meta_json in state["trial_data"]:
        assert {"trial_id", "status", "stopping_criterion"} <= set(json.loads(trial_json))
        assert {"checkpoint_manager", "last_result", "error_filename", "pickled_error_filename"} <= set(
            json.loads(meta_json)
        )
    rerun = rerun_from_scratch(state, {experiment.good.trial_id, experiment.failed.trial_id})
    trials = {json.loads(t)["trial_id"]: (json.loads(t), json.loads(m)) for t, m in rerun["trial_data"]}
    for trial, meta in trials.values():
        assert trial["status"] == "PENDING" and meta["last_result"] == {} and meta["error_filename"] is None
        manager = cloudpickle.loads(bytes.fromhex(meta["checkpoint_manager"]["value"]))
        assert isinstance(manager, _CheckpointManager) and manager.checkpoint_config.num_to_keep == 1
        assert manager.latest_checkpoint_result is None
    assert trials[experiment.good.trial_id][0]["stopping_criterion"]["epoch"] == 2  # ended: stops where it ended
    assert "epoch" not in (trials[experiment.failed.trial_id][0].get("stopping_criterion") or {})


@pytest.mark.slow
def test_the_searcher_state_file_links_each_ray_trial_to_its_optuna_trial(experiment):
    links = searcher_trials(newest(experiment.path, SEARCHER_STATE).read_bytes())
    assert set(links) == {experiment.good.trial_id, experiment.failed.trial_id}
    assert {t.params["learning_rate"] for t in links.values()} == {GOOD_LR, FAILING_LR}


@pytest.mark.slow
def test_each_trial_logs_a_wandb_run_named_by_its_trial_id_with_the_sweeps_settings(experiment):
    runs = {folder.name.rsplit("-", 1)[-1]: folder for folder in (experiment.root / "wandb").glob("offline-run-*")}
    assert set(runs) == {wandb_run_id(experiment.good.trial_id), wandb_run_id(experiment.failed.trial_id)}
    assert OBJECTIVE.metric not in json.dumps(TrainConfig().to_dict())
    for folder in runs.values():
        (log,) = folder.glob("run-*.wandb")
        data = log.read_bytes()
        assert b"trial_params" in data  # the config TrialRunSettings made
        assert OBJECTIVE.metric.encode() in data  # its metric definitions: run_started ran in Ray's actor


@pytest.mark.slow
def test_a_restored_tuner_runs_new_trials_where_the_experiment_is_now(experiment, tmp_path):
    moved = tmp_path / "moved" / "exp"
    shutil.copytree(experiment.path, moved)
    before = sorted(p.relative_to(experiment.path) for p in experiment.path.rglob("*"))
    searcher = OptunaSearch(space=SPACE, metric="score", mode="max")
    tuner = restore_tuner(
        str(moved),
        _trainable,
        callbacks=[],
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=3, max_concurrent_trials=1),
    )
    tuner.fit()
    assert len(recorded_trials(str(moved))) == 3  # the trial count raised on resume
    assert sorted(p.relative_to(experiment.path) for p in experiment.path.rglob("*")) == before  # nothing there


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_local_ray_started_in_loopback_only_listens_on_loopback_only():
    """local_ray.loopback_only: every listening socket of Ray's processes (the driver, GCS, raylet, workers) is
    on a loopback address (`ss -ltnp`); without it Ray 2.60 listens on every interface. In a fresh interpreter:
    this file's tests share one Ray of their own."""
    code = (
        "import json, os, subprocess, ray\n"
        "from tune.sweep.ray_compat.local_ray import LOOPBACK_ENV, loopback_only\n"
        "with loopback_only():\n"
        "    ray.init(address='local', num_cpus=1, include_dashboard=False)\n"
        "    ray.get(ray.remote(lambda: 1).remote())  # a worker too\n"
        "    parents = {}\n"
        "    for d in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            parents[int(d)] = int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "        except (OSError, IndexError, ValueError):\n"
        "            pass\n"
        "    pids, grown = {os.getpid()}, True\n"
        "    while grown:  # this process and every process under it: Ray's\n"
        "        more = {p for p, parent in parents.items() if parent in pids} - pids\n"
        "        pids, grown = pids | more, bool(more)\n"
        "    ss = subprocess.run(['ss', '-ltnpH'], capture_output=True, text=True, check=True).stdout\n"
        "    ray.shutdown()\n"
        "print(json.dumps({'pids': sorted(pids), 'ss': ss, 'env_after': os.environ.get(LOOPBACK_ENV)}))\n"
    )
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    listening = [
        (line.split()[3], int(pid))
        for line in seen["ss"].splitlines()
        for pid in re.findall(r"pid=(\d+)", line)
        if int(pid) in seen["pids"]
    ]
    assert len({pid for _, pid in listening}) >= 3, seen["ss"]  # the driver, GCS, raylet (and a worker)
    exposed = [(address, pid) for address, pid in listening if not re.match(r"(127\.|\[::ffff:127\.|\[::1\])", address)]
    assert not exposed, seen["ss"]
    assert seen["env_after"] is None  # restored: a later `ray start` in the process is not refused
