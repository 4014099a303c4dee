"""A sweep's state files broken as disks and users break them (a journal cut mid-record or missing its last
tells, Ray's experiment state cut short, a trial folder deleted) are repaired before --resume, each repair
said in one line; what cannot be repaired is one error naming the file and the fix."""

import json
import shutil
from pathlib import Path

import optuna
import pyarrow.fs as pafs
import pytest
import yaml
from ray import tune
from ray.tune import ExperimentAnalysis
from test_sweep import read_rows, tiny_space

from core.errors import UserError
from tune import search as search_cli
from tune.records import read_search
from tune.sweep import search as search_stage
from tune.sweep.ray_compat.experiment_state import recorded_trials
from tune.sweep.searcher import TruthfulOptunaSearch
from tune.sweep.state_files import (
    KeepGoodStateCopies,
    check_experiment,
    journal_disagreements,
    missing_rows,
    missing_trials,
    prepare_restore,
    reconcile_journal,
    repair_journal,
)
from tune.sweep.study import journal_storage, state_counts, study_name

pytestmark = pytest.mark.slow  # every test here starts Ray or a sweep driver

NAME = "st"


@pytest.fixture(scope="module")
def pristine(demo_root, tmp_path_factory):
    """One finished 2-trial sweep (max_t 2, no control arm, no confirmation), run with the good-copy
    callback wired in as the search stage will wire it, and a pristine copy of its folder."""
    tmp = tmp_path_factory.mktemp("state_files")
    space = tiny_space(
        demo_root, num_samples=2, max_t=2, cache_dir=tmp / "cache", name=NAME, control=None, confirm=None
    )
    # Both trials finish on every CPU: ASHA's first rung is max_t, so no trial value can stop one.
    space["asha"]["grace_period"] = space["asha"]["max_t"]
    (tmp / "s.yaml").write_text(yaml.safe_dump(space))
    with pytest.MonkeyPatch.context() as patch:
        keep_good_copies(patch)
        search_cli.main(cli_args(tmp))
    shutil.copytree(tmp / "results" / NAME, tmp / "pristine")
    return tmp


@pytest.fixture
def sweep(pristine) -> Path:
    """The sweep folder as the finished sweep left it, in place: the paths Ray and the searcher recorded
    (the journal's among them) are this folder's."""
    folder = pristine / "results" / NAME
    shutil.rmtree(folder)
    shutil.copytree(pristine / "pristine", folder)
    return folder


def keep_good_copies(patch: pytest.MonkeyPatch) -> None:
    """The search stage's callbacks (of a new Tuner and of a restored one) with KeepGoodStateCopies."""
    original = search_stage.wandb_callbacks
    patch.setenv("WANDB_MODE", "disabled")
    patch.setattr(
        search_stage,
        "wandb_callbacks",
        lambda run, job_type, base: [*original(run, job_type, base), KeepGoodStateCopies()],
    )


def cli_args(tmp: Path) -> list[str]:
    return ["--space", str(tmp / "s.yaml"), "--storage", str(tmp / "results"), "--num-cpus", "2"]


def resume_with_checks(tmp: Path, monkeypatch) -> None:
    """`--resume` with prepare_restore called where search_arm restores an arm's Tuner."""
    original = search_stage.search_arm

    def search_arm(run, base, arm, num_samples, experiment):
        if tune.Tuner.can_restore(experiment):
            for note in prepare_restore(
                run.paths.sweep_dir,
                experiment,
                study_name(run.space.name, arm),
                run.space.objective.metric,
                run.space.asha.max_t,
            ):
                print(note)
        original(run, base, arm, num_samples, experiment)

    keep_good_copies(monkeypatch)
    monkeypatch.setattr(search_stage, "search_arm", search_arm)
    search_cli.main([*cli_args(tmp), "--resume"])


def unfinish_search(sweep: Path) -> None:
    """Back to a sweep whose search stage has not written its result (as after an interrupt)."""
    for name in ("search.json", "best.json"):
        (sweep / name).unlink()


def load(sweep: Path) -> optuna.Study:
    return optuna.load_study(study_name=NAME, storage=journal_storage(sweep))


def ray_trials(sweep: Path):
    return recorded_trials(str(sweep / "trials"))


def assert_journal_matches_ray(sweep: Path) -> None:
    study = load(sweep)
    rows = {r["trial_id"]: r for r in read_rows(sweep)}
    assert state_counts(study) == {"COMPLETE": 2}
    assert sorted(t.value for t in study.trials) == sorted(float(r["objective"]) for r in rows.values())
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    assert journal_disagreements(sweep, NAME, ray_trials(sweep), "best_val_dice", 2) == []


def journal_lines(sweep: Path) -> list[str]:
    return (sweep / "optuna.journal").read_text().splitlines(keepends=True)


# --- the Optuna journal --------------------------------------------------------------------------------


def test_journal_cut_mid_record_loses_that_record_only_and_its_study_is_told_again(sweep):
    journal = sweep / "optuna.journal"
    data = journal.read_bytes()
    last = data[:-1].rsplit(b"\n", 1)[1] + b"\n"  # the last trial's tell
    cut = data[: len(data) - len(last) // 2]
    journal.write_bytes(cut)
    assert repair_journal(sweep) == (
        f"optuna.journal: its last record was cut ({len(cut) - len(data) + len(last)} bytes); removed it"
    )
    assert journal.read_bytes() == data[: len(data) - len(last)]
    assert state_counts(load(sweep)) == {"COMPLETE": 1, "RUNNING": 1}
    (note,) = reconcile_journal(sweep, NAME, ray_trials(sweep), "best_val_dice", 2, str(sweep / "trials"))
    assert "was RUNNING though Ray's record says it ended; told COMPLETE" in note
    assert_journal_matches_ray(sweep)  # Optuna appended after the repaired end: the file reads whole
    assert repair_journal(sweep) is None


def test_journal_record_missing_only_its_line_end_is_kept(sweep):
    journal = sweep / "optuna.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-1])
    assert repair_journal(sweep) == "optuna.journal: its last record lacked its line end; completed it"
    assert journal.read_bytes() == data


def test_journal_damaged_in_the_middle_is_one_error_naming_the_file_and_line(sweep):
    lines = journal_lines(sweep)
    lines[3] = lines[3][:20] + "\n"
    (sweep / "optuna.journal").write_text("".join(lines))
    with pytest.raises(
        UserError,
        match=rf"optuna.journal: line 4 of {len(lines)} is not an Optuna journal "
        r"record .*new --name",
    ):
        repair_journal(sweep)


def test_lost_tells_are_told_from_rays_record_when_the_search_resumes(sweep, pristine, monkeypatch, capsys):
    lines = journal_lines(sweep)
    first_tell = next(i for i, line in enumerate(lines) if json.loads(line)["op_code"] == 6)
    (sweep / "optuna.journal").write_text("".join(lines[:first_tell]))
    assert state_counts(load(sweep)) == {"RUNNING": 2}
    (line,) = journal_disagreements(sweep, NAME, ray_trials(sweep), "best_val_dice", 2)
    assert line.startswith(f"optuna.journal: study {NAME} disagrees with Ray's record on 2 trial(s)")
    unfinish_search(sweep)
    resume_with_checks(pristine, monkeypatch)
    out = capsys.readouterr().out
    assert out.count("was RUNNING though Ray's record says it ended; told COMPLETE") == 2
    assert_journal_matches_ray(sweep)
    assert (sweep / "best.json").is_file()


def test_trial_the_journal_lost_is_added_back_and_an_unfinished_one_linked_again(sweep):
    lines = journal_lines(sweep)
    second = [i for i, line in enumerate(lines) if json.loads(line)["op_code"] == 4][1]
    (sweep / "optuna.journal").write_text("".join(lines[:second]))  # the second trial's creation on: lost
    trials = ray_trials(sweep)
    assert len(load(sweep).trials) == 1
    notes = reconcile_journal(sweep, NAME, trials, "best_val_dice", 2, str(sweep / "trials"))
    assert len(notes) == 2 and any("had lost Ray trial" in n and "(COMPLETE)" in n for n in notes)
    assert_journal_matches_ray(sweep)
    # A trial asked after Ray's last snapshot, which Ray never recorded, will never report.
    orphan = load(sweep).ask()
    (note,) = reconcile_journal(sweep, NAME, trials, "best_val_dice", 2, str(sweep / "trials"))
    assert note == (
        f"optuna.journal: trial {orphan.number} of study {NAME} was RUNNING but Ray never recorded it "
        f"(asked after Ray's last snapshot); told FAIL"
    )
    assert state_counts(load(sweep)) == {"COMPLETE": 2, "FAIL": 1}
    # Every trial names its Ray trial (the searcher marks it when it proposes); the one added back comes last.
    added = [t for t in load(sweep).trials if "ray_trial_id" in t.user_attrs][-1]

    # The same loss while that trial was still running in Ray: added back RUNNING, and the restored
    # searcher sends its results there (not to the trial id the journal lost).
    (sweep / "optuna.journal").write_text("".join(lines[:second]))
    lost = next(t for t in trials if t.trial_id == added.user_attrs["ray_trial_id"])
    lost.status, ended = "PENDING", lost.last_result
    reconcile_journal(sweep, NAME, trials, "best_val_dice", 2, str(sweep / "trials"))
    assert state_counts(load(sweep)) == {"COMPLETE": 1, "RUNNING": 1}
    searcher = TruthfulOptunaSearch(
        max_t=2, metric="best_val_dice", mode="max", study_name=NAME, storage=journal_storage(sweep)
    )
    searcher.restore(str(next((sweep / "trials").glob("searcher-state-*.pkl"))))
    searcher._completed_trials.discard(lost.trial_id)  # it had ended in the run that saved this state
    searcher.on_trial_complete(lost.trial_id, ended)
    assert_journal_matches_ray(sweep)


# --- Ray's experiment state ----------------------------------------------------------------------------


def test_cut_experiment_state_is_replaced_by_the_good_copy_kept_while_the_sweep_ran(sweep):
    trials = sweep / "trials"
    state = next(trials.glob("experiment_state-*.json"))
    searcher = next(trials.glob("searcher-state-*.pkl"))
    for path in (state, searcher, trials / "tuner.pkl"):  # kept at Ray's last snapshot: the same bytes
        assert Path(f"{path}.good").read_bytes() == path.read_bytes(), path
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError):  # what --resume crashed on
        ExperimentAnalysis(str(trials))
    notes = check_experiment(str(trials))
    assert len(notes) == 3 and all("replaced it with the copy kept at Ray's last snapshot" in n for n in notes)
    assert notes[0].startswith(f"trials/{state.name}: cut short (")
    assert tune.Tuner.can_restore(str(trials))
    assert [t.status for t in ray_trials(sweep)] == ["TERMINATED", "TERMINATED"]
    assert check_experiment(str(trials)) == []


def test_good_copy_that_cannot_be_written_keeps_the_previous_one_and_says_so_once(sweep, tmp_path, capsys):
    trials = sweep / "trials"
    state = next(trials.glob("experiment_state-*.json"))
    good = Path(f"{state}.good")
    kept = good.read_bytes()
    staging = tmp_path / "driver_artifacts"  # Ray's next snapshot, written in its driver's staging folder
    staging.mkdir()
    snapshot = json.loads(state.read_text())
    snapshot["stats"]["start_time"] += 1
    (staging / state.name).write_text(json.dumps(snapshot))
    Path(f"{good}.tmp").mkdir()  # where the copy is written first: unwritable, as on a full disk
    callback = KeepGoodStateCopies()
    for _ in range(2):
        callback.keep_copies(str(staging), pafs.LocalFileSystem(), str(trials))
    out = capsys.readouterr().out
    assert out.count(f"could not keep a good copy of {state.name}") == 1 and "the previous one stays" in out
    assert good.read_bytes() == kept
    Path(f"{good}.tmp").rmdir()  # space freed: the next snapshot is kept
    callback.keep_copies(str(staging), pafs.LocalFileSystem(), str(trials))
    assert json.loads(good.read_text()) == snapshot and not Path(f"{good}.tmp").exists()
    (staging / state.name).write_text(json.dumps(snapshot)[:-10])  # a staged file cut short is never kept
    callback.keep_copies(str(staging), pafs.LocalFileSystem(), str(trials))
    assert json.loads(good.read_text()) == snapshot


def test_cut_experiment_state_without_a_good_copy_is_one_error_naming_it_and_the_fix(sweep):
    trials = sweep / "trials"
    for good in trials.glob("*.good"):
        good.unlink()
    state = next(trials.glob("experiment_state-*.json"))
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(
        UserError,
        match=rf"{state}: Ray's state, cut short \(100 bytes\), and no good copy .*"
        r"new --name",
    ):
        check_experiment(str(trials))


# --- trials whose folder is gone -----------------------------------------------------------------------


def test_trial_whose_folder_was_deleted_runs_again_on_resume(sweep, pristine, monkeypatch, capsys):
    rows = read_search(sweep)
    winner, other = rows[0], rows[1]
    shutil.rmtree(sweep / winner.trial_dir)
    assert [r.trial_id for r in missing_rows(rows, sweep)] == [winner.trial_id]
    assert [t.trial_id for t in missing_trials(ray_trials(sweep))] == [winner.trial_id]
    kept = (sweep / other.trial_dir / "progress.csv").read_text()
    unfinish_search(sweep)
    resume_with_checks(pristine, monkeypatch)
    assert f"trial {winner.trial_id}: its folder or checkpoint is gone" in capsys.readouterr().out
    results = [json.loads(line) for line in (sweep / winner.trial_dir / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in results] == [1, 2] and results[0]["restored_from_epoch"] == 0
    assert (sweep / winner.trial_dir / "progress.csv").is_file()
    assert (sweep / other.trial_dir / "progress.csv").read_text() == kept  # not re-run
    assert {r["trial_id"]: r["end"] for r in read_rows(sweep)} == {
        winner.trial_id: "finished",
        other.trial_id: "finished",
    }
    assert missing_rows(read_search(sweep), sweep) == [] and (sweep / "best.json").is_file()
    assert_journal_matches_ray(sweep)
