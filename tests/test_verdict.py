"""tune/statistics.py, tune/sweep/select.py and tune/sweep/verdict.py on known numbers: intervals and power,
seeds, candidates at an equal budget, the same-student baseline and the verdict's outcomes."""

import math

import pytest

from core.config import config_from_dict
from tune.objective import Objective
from tune.records import Candidate, Confirmed, TrialRow
from tune.report.tables import format_confirmation
from tune.sampling import Sampled
from tune.statistics import mde80, mean_ci95
from tune.sweep.select import choose_candidates, common_budget, seed_plan
from tune.sweep.verdict import paired_verdict, partner_for

DICE = Objective("best_val_dice", "max")
SEEDS = (50, 51, 52, 53)


def test_student_t_interval_on_known_numbers():
    mean, (lo, hi) = mean_ci95([0.70, 0.72, 0.74])
    # sd 0.02, t(0.975, 2 dof) = 4.302653
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert mean == pytest.approx(0.72) and (lo, hi) == pytest.approx((0.72 - half, 0.72 + half), abs=1e-6)
    assert math.isnan(mean_ci95([0.5])[1][0]) and math.isnan(mean_ci95([])[0])


def test_minimum_detectable_effect_at_80_percent_power():
    # t(0.975, 7) = 2.364624, t(0.80, 7) = 0.896031: (2.3646 + 0.8960) * 0.015 / sqrt(8)
    assert mde80(0.015, 8) == pytest.approx((2.364624 + 0.896031) * 0.015 / math.sqrt(8), rel=1e-5)
    assert mde80(0.015, 32) < mde80(0.015, 8) and math.isnan(mde80(0.015, 1))


def test_selection_and_verdict_seeds_are_disjoint_from_the_search_seed_and_each_other():
    selection, verdict = seed_plan(42, 3, 8)
    assert selection == [43, 44, 45] and verdict == list(range(46, 54))
    assert 42 not in selection + verdict and not set(selection) & set(verdict)


def runs(name, arm, values, seeds=SEEDS, backbone="mobilenet_v2"):
    c = Candidate(name, f"t-{name}", Sampled(arm, {"learning_rate": 1e-3, "student_backbone": backbone}), values[0], 12)
    return Confirmed(c, list(seeds), list(values), list(values), ["ck"] * len(values), ["id"] * len(values))


def test_helped_when_the_interval_is_above_zero():
    v = paired_verdict(
        runs("kd-1", "kd", [0.80, 0.75, 0.78, 0.77]),
        runs("baseline-1", "baseline", [0.78, 0.73, 0.75, 0.76]),
        DICE,
        "mobilenet_v2",
    )
    assert v.outcome == "helped" and v.n_valid == 4 and v.diff_mean == pytest.approx(0.02)
    assert (
        v.sentence.startswith("distillation helped: +0.020 val Dice (95% CI +0.")
        and "on mobilenet_v2, 4 seeds" in v.sentence
    )


def test_hurt_when_the_interval_is_below_zero():
    kd = runs("kd-1", "kd", [0.70, 0.65, 0.68, 0.66])
    base = runs("baseline-1", "baseline", [0.80, 0.74, 0.78, 0.77])
    v = paired_verdict(kd, base, DICE, "resnet18")
    assert v.outcome == "hurt" and v.ci95[1] < 0 and v.sentence.startswith("distillation hurt: -0.100")


def test_inconclusive_says_what_the_seeds_could_detect():
    kd = runs("kd-1", "kd", [0.80, 0.70, 0.78, 0.74])
    base = runs("baseline-1", "baseline", [0.78, 0.73, 0.75, 0.76])
    v = paired_verdict(kd, base, DICE, "mobilenet_v2")
    diffs = [0.02, -0.03, 0.03, -0.02]
    assert v.outcome == "inconclusive" and v.ci95[0] < 0 < v.ci95[1]
    import statistics

    assert v.mde80 == pytest.approx(mde80(statistics.stdev(diffs), 4))
    assert (
        v.sentence.startswith("inconclusive:")
        and f"4 seeds could detect a difference of ±{v.mde80:.3f} with 80% power" in v.sentence
    )


def test_zero_variance_is_reported_and_never_a_win():
    kd = runs("kd-1", "kd", [0.80, 0.75, 0.78, 0.77])
    base = runs("baseline-1", "baseline", [0.79, 0.74, 0.77, 0.76])  # every difference exactly +0.01
    v = paired_verdict(kd, base, DICE, "mobilenet_v2")
    assert v.outcome == "none" and "zero variance" in v.sentence and math.isnan(v.ci95[0])


def test_a_failed_seed_is_excluded_and_counted():
    kd = runs("kd-1", "kd", [0.80, math.nan, 0.78, 0.77])
    base = runs("baseline-1", "baseline", [0.78, 0.73, 0.75, math.nan])
    v = paired_verdict(kd, base, DICE, "mobilenet_v2")
    assert v.n_valid == 2 and v.excluded == [51, 53] and "seeds 51, 53 excluded" in v.sentence
    assert v.diff_mean == pytest.approx((0.02 + 0.03) / 2)


def test_fewer_than_two_valid_pairs_is_no_verdict():
    kd = runs("kd-1", "kd", [0.80, math.nan, math.nan, 0.70])
    base = runs("baseline-1", "baseline", [0.78, 0.73, 0.75, math.nan])
    v = paired_verdict(kd, base, DICE, "mobilenet_v2")
    assert v.outcome == "none" and v.n_valid == 1 and v.sentence.startswith("no verdict on mobilenet_v2: only 1 seed")


def test_a_minimised_objective_reads_its_sign_the_other_way():
    kd = runs("kd-1", "kd", [0.20, 0.25, 0.22, 0.23])
    base = runs("baseline-1", "baseline", [0.30, 0.34, 0.33, 0.31])
    assert paired_verdict(kd, base, Objective("val_dice", "min"), "m").outcome == "helped"


BASE = config_from_dict({"student_backbone": "mobilenet_v2", "encoder_weights": None}, source="test")


def test_the_baseline_partner_is_the_same_student():
    kd = runs("kd-1", "kd", [0.8, 0.8, 0.8, 0.8], backbone="resnet18")
    other = runs("baseline-1", "baseline", [0.9, 0.9, 0.9, 0.9], backbone="mobilenet_v2")
    same = runs("baseline-2", "baseline", [0.7, 0.7, 0.7, 0.7], backbone="resnet18")
    assert partner_for(kd, [kd, other, same], DICE, BASE).name == "baseline-2"
    # No selected baseline of that student: the student trained without a teacher at the best baseline's settings.
    made = partner_for(kd, [kd, other], DICE, BASE)
    assert made.arm == "baseline" and made.params == {"learning_rate": 1e-3, "student_backbone": "resnet18"}
    assert partner_for(kd, [kd], DICE, BASE) is None


def row(trial_id, arm, end, curve):
    last = max(curve)
    return TrialRow(
        trial_id,
        Sampled(arm, {"x": trial_id}),
        end,
        last,
        curve[last],
        curve[last],
        curve[last],
        last,
        curve[last],
        curve=curve,
    )


def test_candidates_are_ranked_at_the_highest_budget_they_all_reached():
    rows = [
        row("a", "kd", "interrupted", {4: 0.99}),
        row("b", "kd", "stopped by ASHA", {4: 0.70}),  # best at its own (short) budget
        row("c", "kd", "finished", {4: 0.50, 8: 0.60, 12: 0.65}),
        row("d", "kd", "finished", {4: 0.55, 8: 0.62, 12: 0.64}),
        row("e", "kd", "diverged", {4: 0.9}),
        row("f", "baseline", "finished", {4: 0.4, 8: 0.45, 12: 0.5}),
        row("g", "baseline", "stopped by ASHA", {4: 0.6}),
    ]
    assert common_budget([r for r in rows if r.arm == "kd"], 2, [4, 8, 12]) == 12
    chosen = choose_candidates(rows, top_k=2, milestones=[4, 8, 12], objective=DICE)
    assert [(c.name, c.trial_id, c.search_epochs) for c in chosen] == [
        ("kd-1", "c", 12),
        ("kd-2", "d", 12),
        ("baseline-1", "g", 4),
        ("baseline-2", "f", 4),
    ]
    assert chosen[0].params == {"x": "c"} and chosen[0].search_value == 0.65


def test_selection_table_ranks_by_mean():
    table = format_confirmation(
        [runs("kd-1", "kd", [0.5, 0.6, 0.7, 0.6]), runs("kd-2", "kd", [0.7, 0.8, 0.9, 0.8])], DICE
    )
    lines = table.splitlines()
    assert lines[2].startswith("kd-2") and lines[3].startswith("kd-1") and "0.8000" in lines[2]
