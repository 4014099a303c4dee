"""tune/statistics.py, tune/sweep/select.py and tune/sweep/verdict.py: confidence intervals, candidates and
the KD-vs-baseline verdict on known numbers."""
import math

import pytest

from tune.objective import Objective
from tune.records import Candidate, Confirmed, TrialRow
from tune.report.tables import format_confirmation
from tune.sampling import Sampled
from tune.statistics import mean_ci95
from tune.sweep.select import choose_candidates
from tune.sweep.verdict import verdict

DICE = Objective("best_val_dice", "max")


def test_student_t_interval_on_known_numbers():
    mean, (lo, hi) = mean_ci95([0.70, 0.72, 0.74])
    # sd 0.02, t(0.975, 2 dof) = 4.302653
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert mean == pytest.approx(0.72) and (lo, hi) == pytest.approx((0.72 - half, 0.72 + half), abs=1e-6)
    assert math.isnan(mean_ci95([0.5])[1][0]) and math.isnan(mean_ci95([])[0])


def confirmed(name, arm, values, seeds=(42, 43, 44)):
    c = Candidate(name, f"t-{name}", Sampled(arm, {"learning_rate": 1e-3}), values[0], 12)
    return Confirmed(c, list(seeds), list(values), list(values), ["ck"] * len(values), ["id"] * len(values))


def test_verdict_is_the_paired_difference_by_seed():
    kd = confirmed("kd-1", "kd", [0.80, 0.75, 0.78])
    base = confirmed("baseline-1", "baseline", [0.78, 0.73, 0.75], seeds=(42, 43, 44))
    v = verdict([base, kd], DICE)
    diffs = [0.02, 0.02, 0.03]
    assert v.kd == "kd-1" and v.baseline == "baseline-1" and v.seeds == 3
    assert v.diff_mean == pytest.approx(sum(diffs) / 3)
    assert v.ci95 == pytest.approx(mean_ci95(diffs)[1])
    assert v.sentence.startswith("distillation +0.023 val Dice (95% CI +0.") and "3 seeds" in v.sentence


def test_no_evidence_when_the_interval_covers_zero():
    kd = confirmed("kd-1", "kd", [0.80, 0.70, 0.78])
    base = confirmed("baseline-1", "baseline", [0.78, 0.73, 0.75])
    assert verdict([kd, base], DICE).sentence.startswith("no evidence that distillation helped")
    assert verdict([kd], DICE) is None


def row(trial_id, arm, end, objective):
    return TrialRow(trial_id, Sampled(arm, {"x": trial_id}), end, 4, objective, objective, objective, 4, objective)


def test_candidates_are_the_best_usable_kd_trials_and_the_best_baseline():
    rows = [row("a", "kd", "interrupted", 0.9), row("b", "kd", "stopped by ASHA", 0.8),
            row("c", "baseline", "finished", 0.7), row("d", "kd", "finished", 0.6),
            row("e", "kd", "diverged", 0.5), row("f", "baseline", "finished", 0.4), row("g", "kd", "finished", 0.3)]
    chosen = choose_candidates(rows, top_k=2, include_baseline=True)
    assert [(c.name, c.trial_id) for c in chosen] == [("kd-1", "b"), ("kd-2", "d"), ("baseline-1", "c")]
    assert chosen[0].params == {"x": "b"}


def test_confirmation_table_ranks_by_confirmed_mean():
    table = format_confirmation([confirmed("kd-1", "kd", [0.5, 0.6, 0.7]),
                                 confirmed("kd-2", "kd", [0.7, 0.8, 0.9])], DICE)
    lines = table.splitlines()
    assert lines[2].startswith("kd-2") and lines[3].startswith("kd-1") and "0.8000" in lines[2]
