"""Checks and repairs of a sweep's state files before it resumes: the Optuna journal (a record cut at its
end, tells it lost), each arm's Ray experiment state (a file cut short, replaced by the good copy kept of it
while the sweep ran) and trials whose folder is gone (run again).

Optuna appends to its journal and Ray copies its state into the sweep folder in place, neither atomically:
a full disk or a kill mid-write leaves a file that the next --resume crashed on or, worse, read wrongly
without a word. Each repair here prints one line; what cannot be repaired is one UserError with the fix.
"""

from __future__ import annotations

import json
import math
import pickletools
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pyarrow.fs as pafs
from optuna.trial import TrialState as OptunaTrialState
from ray import tune
from ray.tune import Callback

from core.errors import UserError
from tune.cluster import storage
from tune.cluster.recovery import restore_recorded_checkpoints
from tune.records import JOURNAL_FILE, TrialRow, TrialState, resolve
from tune.sampling import Sampled
from tune.sweep.ray_compat.conventions import (
    EXPERIMENT_STATE,
    SEARCHER_STATE,
    STATE_FILES,
    TUNER_FILE,
    is_json_state,
    newest_state_file,
)
from tune.sweep.ray_compat.experiment_state import experiment_folders, recorded_trials, rerun_from_scratch
from tune.sweep.ray_compat.optuna_search import optuna_trial, searcher_trials, storage_id
from tune.sweep.searcher import RAY_TRIAL_ATTR, optuna_end
from tune.sweep.study import journal_storage

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

GOOD_COPY_SUFFIX = ".good"  # not .json/.pkl: Ray's restore neither reads nor downloads it
ENDED = ("TERMINATED", "ERROR")


def restorable(experiment: str) -> bool:
    """Whether the Ray experiment at `experiment` has a run to resume. Ray writes tuner.pkl as a Tuner starts
    (what Tuner.can_restore looks for) but its first experiment snapshot only later: a run stopped in between
    recorded no trial, and a new Tuner starts the stage over."""
    if not tune.Tuner.can_restore(experiment):
        return False
    fs, root = _filesystem(experiment)
    return _newest(fs, root, EXPERIMENT_STATE) is not None


def prepare_restore(
    sweep_dir: Path, experiment: str, study_name: str | None, objective_metric: str, max_t: int
) -> list[str]:
    """Every check and repair, in order, of one Ray experiment about to be restored (`study_name`: the
    arm's Optuna study, None for the selection and verdict runs); one line per repair."""
    notes = check_experiment(experiment)
    notes += restore_recorded_checkpoints(experiment)
    trials = recorded_trials(experiment)
    if study_name is not None:
        notes += [note for note in [repair_journal(sweep_dir)] if note]
        notes += reconcile_journal(sweep_dir, study_name, trials, objective_metric, max_t, experiment)
    return notes + rerun_missing(experiment, missing_trials(trials))


# --- the Optuna journal --------------------------------------------------------------------------------


def repair_journal(sweep_dir: Path) -> str | None:
    """Make the journal readable again after a write was cut; one line saying what changed, or None.

    Optuna skips a last line that lacks its line end, then appends its next record right after it: the two
    fuse into one line that no reader can parse, and every record after it is lost to Optuna."""
    path = sweep_dir / JOURNAL_FILE
    if not path.is_file():
        return None
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        whole = _journal_record(line)
        if whole and line.endswith(b"\n"):
            continue
        if number < len(lines):
            raise UserError(
                f"{path}: line {number} of {len(lines)} is not an Optuna journal record (damaged in "
                f"the middle, not cut at the end); restore the file from a backup, or continue the "
                f"sweep under a new --name"
            )
        if whole:  # the record was written whole; only its line end was not
            with path.open("ab") as f:
                f.write(b"\n")
            return f"{JOURNAL_FILE}: its last record lacked its line end; completed it"
        with path.open("r+b") as f:
            f.truncate(len(data) - len(line))
        return f"{JOURNAL_FILE}: its last record was cut ({len(line)} bytes); removed it"
    return None


def _journal_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def reconcile_journal(
    sweep_dir: Path,
    study_name: str,
    trials: list[TrialState],
    objective_metric: str,
    max_t: int,
    experiment: str | None = None,
) -> list[str]:
    """Bring the arm's Optuna study in line with Ray's record of the arm's trials (`trials`: all of them,
    as recorded_trials reads them) before its Tuner is restored; one line per trial changed.

    A trial Ray has ended that the study still holds RUNNING (its tell was lost) is told what Ray's record
    implies, by the searcher's own rule (searcher.optuna_end), with the intermediate values it lacks. A
    trial the journal lost entirely is added back, marked with its Ray trial id: ended, as it ended; not
    ended, RUNNING, and TruthfulOptunaSearch.restore links it again. A RUNNING Optuna trial that Ray never
    recorded (asked after Ray's last snapshot) will never report: it is told FAIL."""
    if not trials:
        return []
    study = _load_study(sweep_dir, study_name)
    journal = study.get_trials(deepcopy=False)
    sampled_by_searcher = _searcher_trials(experiment)
    links = _links(trials, journal, sampled_by_searcher)
    notes = []
    for trial in trials:
        frozen = links[trial.trial_id]
        ended = trial.status in ENDED
        if frozen is None:
            state = _add_back(
                study, journal, trial, sampled_by_searcher.get(trial.trial_id), ended, objective_metric, max_t
            )
            notes.append(
                f"{JOURNAL_FILE}: study {study_name} had lost Ray trial {trial.trial_id}; added it back ({state.name})"
            )
        elif frozen.state == OptunaTrialState.RUNNING and ended:
            state, value = optuna_end(trial.last_result, trial.status == "ERROR", objective_metric, max_t)
            live = optuna_trial(study, frozen)
            if state != OptunaTrialState.FAIL:
                for step, step_value in _intermediate_values(trial, objective_metric).items():
                    if step not in frozen.intermediate_values:
                        live.report(step_value, step)
            study.tell(live, value, state=state)
            notes.append(
                f"{JOURNAL_FILE}: trial {frozen.number} of study {study_name} (Ray trial "
                f"{trial.trial_id}) was RUNNING though Ray's record says it ended; told {state.name}"
            )
    linked = {storage_id(f) for f in links.values() if f is not None}
    for frozen in journal:
        if frozen.state == OptunaTrialState.RUNNING and storage_id(frozen) not in linked:
            study.tell(frozen.number, state=OptunaTrialState.FAIL)
            notes.append(
                f"{JOURNAL_FILE}: trial {frozen.number} of study {study_name} was RUNNING but Ray never "
                f"recorded it (asked after Ray's last snapshot); told FAIL"
            )
    return notes


def journal_disagreements(
    sweep_dir: Path,
    study_name: str,
    trials: list[TrialState],
    objective_metric: str,
    max_t: int,
    experiment: str | None = None,
) -> list[str]:
    """After the search: one line if the study's states differ from what Ray's record of its ended trials
    implies (the leaderboard follows Ray's record; TPE learned from the journal), else none."""
    study = _load_study(sweep_dir, study_name)
    links = _links(trials, study.get_trials(deepcopy=False), _searcher_trials(experiment))
    differences = []
    for trial in trials:
        if trial.status not in ENDED:
            continue
        implied, _ = optuna_end(trial.last_result, trial.status == "ERROR", objective_metric, max_t)
        frozen = links[trial.trial_id]
        if frozen is None or frozen.state != implied:
            held = frozen.state.name if frozen is not None else "no trial"
            differences.append(f"{trial.trial_id} (journal: {held}, Ray's record: {implied.name})")
    if not differences:
        return []
    return [
        f"{JOURNAL_FILE}: study {study_name} disagrees with Ray's record on {len(differences)} trial(s): "
        f"{', '.join(differences)}; the leaderboard follows Ray's record"
    ]


def _load_study(sweep_dir: Path, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=journal_storage(sweep_dir))
    except KeyError:
        raise UserError(
            f"{sweep_dir / JOURNAL_FILE}: has no study '{study_name}', though Ray ran its trials; "
            f"restore the file from a backup, or continue the sweep under a new --name"
        ) from None


def _searcher_trials(experiment: str | None) -> dict[str, optuna.trial.Trial]:
    if experiment is None:
        return {}
    fs, root = _filesystem(experiment)
    name = _newest(fs, root, SEARCHER_STATE)
    return searcher_trials(_read(fs, posixpath.join(root, name))) if name else {}


def _links(
    trials: list[TrialState],
    journal: list[optuna.trial.FrozenTrial],
    sampled_by_searcher: dict[str, optuna.trial.Trial],
) -> dict[str, optuna.trial.FrozenTrial | None]:
    """Each Ray trial's Optuna trial (None: the journal lost it): the one added back for it, else the one
    the searcher's saved state names, else the first unclaimed trial with exactly its parameters. A trial
    whose parameters differ from the Ray trial's is never its link (its id was reused after a loss)."""
    by_id = {storage_id(f): f for f in journal}
    added = {f.user_attrs[RAY_TRIAL_ATTR]: f for f in journal if RAY_TRIAL_ATTR in f.user_attrs}
    links: dict[str, optuna.trial.FrozenTrial | None] = {}
    for trial in trials:
        frozen = added.get(trial.trial_id)
        if frozen is None and trial.trial_id in sampled_by_searcher:
            frozen = by_id.get(storage_id(sampled_by_searcher[trial.trial_id]))
        links[trial.trial_id] = frozen if frozen is not None and frozen.params == _params(trial) else None
    claimed = {storage_id(f) for f in links.values() if f is not None}
    for trial in trials:
        if links[trial.trial_id] is None:
            same = [f for f in journal if storage_id(f) not in claimed and f.params == _params(trial)]
            if same:
                links[trial.trial_id] = same[0]
                claimed.add(storage_id(same[0]))
    return links


def _params(trial: TrialState) -> dict[str, Any]:
    return Sampled.from_ray(trial.config).values


def _intermediate_values(trial: TrialState, metric: str) -> dict[int, float]:
    """{epoch: objective} as the searcher reports them (the last report of an epoch wins: a trial restored
    from a checkpoint reports its epochs again); from the last result alone where the history is gone."""
    values: dict[int, float] = {}
    for result in [*trial.history, trial.last_result]:
        value = result.get(metric)
        if "epoch" in result and value is not None and not math.isnan(value) and not result.get("diverged"):
            values[int(result["epoch"])] = float(value)
    return dict(sorted(values.items()))


def _add_back(
    study: optuna.Study,
    journal: list[optuna.trial.FrozenTrial],
    trial: TrialState,
    sampled: optuna.trial.Trial | None,
    ended: bool,
    metric: str,
    max_t: int,
) -> OptunaTrialState:
    """Add a trial the journal lost, with its parameters' distributions as the searcher saved them, else as
    other trials of the study record them."""
    params = _params(trial)
    distributions = dict(sampled.distributions) if sampled is not None else {}
    for frozen in journal:
        for name, distribution in frozen.distributions.items():
            distributions.setdefault(name, distribution)
    unknown = sorted(set(params) - set(distributions))
    if unknown:
        raise UserError(
            f"{JOURNAL_FILE} (study {study.study_name}): lost Ray trial {trial.trial_id}, and no "
            f"record says how its {', '.join(unknown)} was sampled; restore the file from a backup, or "
            f"continue the sweep under a new --name"
        )
    state, value = (
        optuna_end(trial.last_result, trial.status == "ERROR", metric, max_t)
        if ended
        else (OptunaTrialState.RUNNING, None)
    )
    steps = _intermediate_values(trial, metric) if state != OptunaTrialState.FAIL else {}
    if state == OptunaTrialState.PRUNED and steps:
        value = steps[max(steps)]  # as Optuna's tell records a pruned trial: its last intermediate value
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=value,
            params=params,
            distributions={k: distributions[k] for k in params},
            intermediate_values=steps,
            user_attrs={RAY_TRIAL_ATTR: trial.trial_id},
        )
    )
    return state


# --- Ray's experiment state ----------------------------------------------------------------------------


class KeepGoodStateCopies(Callback):
    """Keeps, beside each of Ray's state files in the experiment folder, a copy that reads whole
    (`<name>.good`), written atomically at each of Ray's snapshots; `check_experiment` falls back on it.

    Ray calls its callbacks' get_state right after it wrote the snapshot in its driver's staging folder and
    before it copies that into the experiment folder in place: the staged files are complete (checked) and
    as new as any. A copy that fails (a full disk) keeps the previous good copy and says so once."""

    def __init__(self) -> None:
        self._trials: list[Trial] = []
        self._kept: dict[str, tuple[int, int]] = {}  # file name: (size, mtime) of the staged file copied
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trials": [], "_kept": {}}  # Ray pickles its callbacks in tuner.pkl

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._trials = trials

    def get_state(self) -> None:
        folders = experiment_folders(self._trials)
        if folders is not None:
            self.keep_copies(*folders)
        return None  # no state of its own: Ray writes no callback-states file for it

    def keep_copies(self, staging: str, fs: pafs.FileSystem, experiment: str) -> None:
        local = pafs.LocalFileSystem()
        sources = [(local, staging, pattern) for pattern in STATE_FILES if pattern != TUNER_FILE]
        sources.append((fs, experiment, TUNER_FILE))  # written once, in the experiment folder itself
        for source_fs, folder, pattern in sources:
            name = _newest(source_fs, folder, pattern)
            if name is None:
                continue
            info = source_fs.get_file_info(posixpath.join(folder, name))
            if self._kept.get(name) == (info.size, info.mtime_ns):
                continue
            try:
                data = _read(source_fs, info.path)
                if _reads_whole(name, data):
                    _write_atomic(fs, posixpath.join(experiment, name + GOOD_COPY_SUFFIX), data)
                    self._kept[name] = (info.size, info.mtime_ns)
            except OSError as err:
                if not self._warned:
                    print(f"{experiment}: could not keep a good copy of {name} ({err}); the previous one stays")
                    self._warned = True


def check_experiment(experiment: str) -> list[str]:
    """Before Tuner.restore (and before anything reads the experiment): each state file Ray will read that
    does not read whole is replaced by its good copy, one line each; without one, a UserError."""
    fs, root = _filesystem(experiment)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    notes = []
    for pattern in STATE_FILES:
        name = _newest(fs, root, pattern)
        if name is None:
            continue
        path = posixpath.join(root, name)
        data = _read(fs, path)
        if _reads_whole(name, data):
            continue
        good_path = path + GOOD_COPY_SUFFIX
        good = _read(fs, good_path) if fs.get_file_info(good_path).type == pafs.FileType.File else None
        if good is None or not _reads_whole(name, good):
            raise UserError(
                f"{storage.join(experiment, name)}: Ray's state, cut short ({len(data)} bytes), and no "
                f"good copy of it was kept; continue the sweep under a new --name (this one's trials "
                f"stay readable in its folder)"
            )
        _write_atomic(fs, path, good)
        notes.append(
            f"{_folder_name(experiment)}/{name}: cut short ({len(data)} of {len(good)} bytes); replaced "
            f"it with the copy kept at Ray's last snapshot"
        )
    return notes


def _reads_whole(name: str, data: bytes) -> bool:
    """Whether a state file is complete: experiment_state is JSON; the others are pickles (Ray's
    *_state-*.json included), checked to their STOP opcode without unpickling anything."""
    if is_json_state(name):
        try:
            return isinstance(json.loads(data), dict)
        except ValueError:
            return False
    try:
        ops = list(pickletools.genops(data))
    except (ValueError, EOFError):
        return False
    return bool(ops) and ops[-1][0].name == "STOP" and ops[-1][2] == len(data) - 1


# --- trials whose folder is gone -----------------------------------------------------------------------


def missing_trials(trials: list[TrialState]) -> list[TrialState]:
    """Trials that reported or checkpointed but whose folder, or recorded checkpoint, is gone (local
    storage only: a trial in remote storage is not checked here). Run after restore_recorded_checkpoints,
    which gives a trial whose recorded checkpoint was replaced by a newer one its checkpoint back."""
    out = []
    for trial in trials:
        if not trial.path or not posixpath.isabs(trial.path) or not (trial.last_result or trial.checkpoint_path):
            continue
        if not Path(trial.path).is_dir() or (trial.checkpoint_path and not Path(trial.checkpoint_path).is_dir()):
            out.append(trial)
    return out


def missing_rows(rows: list[TrialRow], sweep_dir: Path) -> list[TrialRow]:
    """Leaderboard rows (search.json) whose trial folder or checkpoint is gone from this machine."""

    def gone(path: str) -> bool:
        return bool(path) and "://" not in path and not Path(resolve(path, sweep_dir)).exists()

    return [r for r in rows if gone(r.trial_dir) or gone(r.checkpoint)]


def rerun_missing(experiment: str, missing: list[TrialState]) -> list[str]:
    """Mark `missing` in Ray's experiment state so that Tuner.restore runs each again from scratch, under
    its own trial id and to the epoch it had reached; one line each."""
    if not missing:
        return []
    fs, root = _filesystem(experiment)
    name = _newest(fs, root, EXPERIMENT_STATE)
    assert name is not None, "the missing trials were read from this experiment state"
    path = posixpath.join(root, name)
    state = rerun_from_scratch(json.loads(_read(fs, path)), {t.trial_id for t in missing})
    _write_atomic(fs, path, json.dumps(state).encode())
    return [
        f"trial {t.trial_id}: its folder or checkpoint is gone ({t.path}); it runs again from scratch" for t in missing
    ]


# --- files on a local or remote filesystem -------------------------------------------------------------


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if storage.is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), location


def _folder_name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _newest(fs: pafs.FileSystem, folder: str, pattern: str) -> str | None:
    """The file Ray reads of `pattern` in `folder`."""
    names = [
        info.base_name
        for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        if info.type == pafs.FileType.File
    ]
    return newest_state_file(names, pattern)


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def _write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Written beside, then moved into place: a rename on a local disk; on an object store the object
    appears whole when its upload completes."""
    tmp = f"{path}.tmp"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        fs.move(tmp, path)
    except OSError:
        if fs.get_file_info(tmp).type == pafs.FileType.File:
            fs.delete_file(tmp)  # a partial copy (a full disk) is never left behind
        raise
