"""tune/sweep/search.py's leaderboard: how each trial ended, counted in epochs as ASHA counts them, ranked
by the objective."""

import json
import re

import pytest

from core.errors import UserError
from tune.objective import Objective
from tune.records import TrialState
from tune.sweep.search import leaderboard


def trial(trial_id, status, epoch, best, arm="kd", **extra):
    result = {
        "epoch": epoch,
        "training_iteration": max(epoch - 3, 0),
        "best_val_dice": best,
        "best_val_iou": best / 2,
        "best_epoch": epoch,
        "val_dice": best,
        **extra,
    }
    return TrialState(
        trial_id,
        status,
        {"arm": arm, "learning_rate": 1e-3},
        result,
        f"/t/{trial_id}",
        None,
        "RuntimeError: boom" if status == "ERROR" else None,
        [],
    )


def test_each_trial_end_is_told_apart_and_ranked_by_the_objective():
    rows = leaderboard(
        [
            trial("stopped", "TERMINATED", 4, 0.5),
            trial("full", "TERMINATED", 8, 0.6),
            trial("cut", "RUNNING", 2, 0.9),
            trial("err", "ERROR", 1, 0.95),
            trial("nan", "TERMINATED", 1, 0.99, diverged=1),
            trial("ctl", "TERMINATED", 8, 0.55, arm="baseline"),
        ],
        Objective("best_val_dice", "max"),
        max_t=8,
    )
    assert [(r.trial_id, r.end) for r in rows] == [
        ("full", "finished"),
        ("ctl", "finished"),
        ("stopped", "stopped by ASHA"),
        ("cut", "interrupted"),
        ("err", "errored"),
        ("nan", "diverged"),
    ]
    assert rows[1].arm == "baseline" and rows[0].params == {"learning_rate": 1e-3}
    assert rows[4].error == "RuntimeError: boom"


def test_a_trial_that_never_reported_the_objective_is_an_error_naming_it():
    with pytest.raises(UserError, match=re.escape("objective.metric 'val_iou': trial a never reported it")):
        leaderboard(
            [TrialState("a", "TERMINATED", {}, {"epoch": 1, "val_dice": 0.5}, "/t/a", None, None, [])],
            Objective("val_iou", "max"),
            max_t=4,
        )


def test_a_result_file_whose_last_line_was_cut_still_gives_the_epochs_before_it(tmp_path):
    from tune.records import read_trial_curve

    trial = tmp_path / "trials" / "t1"
    trial.mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "val_dice": 0.1 * e}) for e in (1, 2)]
    (trial / "result.json").write_text("\n".join(lines) + '\n{"epoch": 3, "val_di')
    assert read_trial_curve(tmp_path, "trials/t1") == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
