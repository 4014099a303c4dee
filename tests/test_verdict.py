"""tune/statistics.py, tune/sweep/select.py and tune/sweep/verdict.py on known numbers: intervals and power,
seeds, candidates at an equal budget, ranking with failed seeds and ties, the same-student baseline, the
configurations that isolate the teacher and the verdict's four outcomes in each design."""

import dataclasses
import math
import statistics

import pytest

from core.config import TrainConfig, config_from_dict
from tune.objective import Objective
from tune.records import Candidate, Confirmed, TrialRow, rank_confirmed
from tune.report.format import verdict_details
from tune.report.tables import format_confirmation
from tune.sampling import Sampled
from tune.statistics import mde80, mean_ci95
from tune.sweep.select import choose_candidates, common_budget, seed_plan
from tune.sweep.verdict import judge, no_verdict_reason, partner_for, plan_verdict, with_teacher, without_teacher

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


def runs(name, arm, values, seeds=SEEDS, backbone="mobilenet_v2", params=None):
    values = list(values)
    sampled = Sampled(arm, params or {"learning_rate": 1e-3, "student_backbone": backbone})
    c = Candidate(name, f"t-{name}", sampled, values[0], 12)
    return Confirmed(c, list(seeds), values, values, ["ck"] * len(values), ["id"] * len(values))


def verdict(kd, no_teacher, partner=None, partner_teacher=None, design="ablation", objective=DICE, margin=0.01):
    """The verdict on known seed values: the KD winner with and without its teacher (and the tuned baseline
    without and with one)."""
    kd_runs = runs("kd-1", "kd", kd, params={"alpha": 0.5, "learning_rate": 1e-3, "student_backbone": "mobilenet_v2"})
    confirmed = [kd_runs]
    if partner is not None:
        confirmed.append(runs("baseline-1", "baseline", partner))
    plan = plan_verdict(confirmed, objective, BASE, design)
    values = {
        "kd-1": kd,
        "kd-1.no-teacher": no_teacher,
        "baseline-1": partner,
        "baseline-1.with-teacher": partner_teacher,
    }
    by_name = {c.name: runs(c.name, c.arm, values[c.name]) for c in plan.candidates(kd_runs.candidate)}
    return judge(plan, by_name, objective, margin)


def test_helped_when_the_interval_is_above_zero():
    v = verdict([0.80, 0.75, 0.78, 0.77], [0.78, 0.73, 0.75, 0.76])
    assert v.outcome == "helped" and v.n_valid == 4 and v.effect == pytest.approx(0.02)
    assert v.design == "ablation" and v.pairs == [["kd-1", "kd-1.no-teacher"]]
    assert v.sentence.startswith(
        "the teacher helped mobilenet_v2 at the selected settings: +0.020 val Dice (95% CI +0."
    )
    assert v.sentence.endswith(", 4 seeds")


def test_hurt_when_the_interval_is_below_zero():
    v = verdict([0.70, 0.65, 0.68, 0.66], [0.80, 0.74, 0.78, 0.77])
    assert v.outcome == "hurt" and v.ci95[1] < 0
    assert v.sentence.startswith("the teacher hurt mobilenet_v2 at the selected settings: -0.100")


def test_no_effect_when_the_90_percent_interval_lies_inside_the_margin():
    # Differences +0.002, -0.001, +0.001, 0.000: mean 0.0005, sd 0.001291; t(0.95, 3) = 2.353363.
    v = verdict([0.802, 0.749, 0.781, 0.770], [0.800, 0.750, 0.780, 0.770])
    half = 2.353363 * statistics.stdev([0.002, -0.001, 0.001, 0.0]) / 2
    assert v.outcome == "no effect" and v.ci90 == pytest.approx((0.0005 - half, 0.0005 + half), abs=1e-6)
    assert v.sentence.startswith(
        "the teacher made no difference to mobilenet_v2 at the selected settings (within ±0.010"
    )
    # The same seeds with a margin smaller than the interval: neither shown.
    assert verdict([0.802, 0.749, 0.781, 0.770], [0.800, 0.750, 0.780, 0.770], margin=0.002).outcome == "inconclusive"


def test_inconclusive_says_what_the_seeds_could_detect():
    v = verdict([0.80, 0.70, 0.78, 0.74], [0.78, 0.73, 0.75, 0.76])
    diffs = [0.02, -0.03, 0.03, -0.02]
    assert v.outcome == "inconclusive" and v.ci95[0] < 0 < v.ci95[1]
    assert v.mde80 == pytest.approx(mde80(statistics.stdev(diffs), 4))
    assert v.sentence.startswith("inconclusive whether the teacher helps mobilenet_v2")
    assert f"these seeds could detect a difference of ±{v.mde80:.3f} with 80% power" in v.sentence


def test_factorial_averages_both_settings_per_seed_and_reports_the_interaction():
    # With the teacher minus without: at the KD settings +0.03 +0.02 +0.04 +0.03, at the baseline's +0.01 +0.01
    # +0.01 +0.02; per seed 0.02, 0.015, 0.025, 0.025; interaction 0.02, 0.01, 0.03, 0.01.
    v = verdict(
        [0.83, 0.77, 0.84, 0.80],
        [0.80, 0.75, 0.80, 0.77],
        partner=[0.70, 0.72, 0.71, 0.69],
        partner_teacher=[0.71, 0.73, 0.72, 0.71],
        design="factorial",
    )
    effect, ci = mean_ci95([0.02, 0.015, 0.025, 0.025])
    assert v.design == "factorial" and v.pairs == [
        ["kd-1", "kd-1.no-teacher"],
        ["baseline-1.with-teacher", "baseline-1"],
    ]
    assert v.effect == pytest.approx(effect) and v.ci95 == pytest.approx(ci) and v.outcome == "helped"
    assert v.sentence.endswith("4 seeds × 2 settings") and "the teacher helped mobilenet_v2" in v.sentence
    interaction, ci_i = mean_ci95([0.02, 0.01, 0.03, 0.01])
    assert v.interaction["effect"] == pytest.approx(interaction) and v.interaction["ci95"] == pytest.approx(ci_i)
    tuned, ci_t = mean_ci95([0.13, 0.05, 0.13, 0.11])
    assert v.tuned["diff"] == pytest.approx(tuned) and v.tuned["ci95"] == pytest.approx(ci_t)
    lines = verdict_details(v.to_dict(), DICE.label)
    assert "the teacher's effect depends on the settings" in lines[0]
    assert lines[1].startswith("against the separately tuned baseline (kd-1 minus baseline-1): +0.105")
    assert lines[1].endswith("it is not a test of the teacher")


def test_tuned_design_compares_the_separately_tuned_arms_and_says_so():
    v = verdict([0.80, 0.75, 0.78, 0.77], None, partner=[0.78, 0.73, 0.75, 0.76], design="tuned")
    assert v.design == "tuned" and v.pairs == [["kd-1", "baseline-1"]] and v.outcome == "helped" and v.tuned is None
    assert v.sentence.startswith("distillation helped against the separately tuned baseline of mobilenet_v2: +0.020")
    assert v.sentence.endswith("it is not a test of the teacher")


def test_without_a_baseline_arm_factorial_is_the_ablation_and_tuned_has_no_verdict():
    kd = runs("kd-1", "kd", [0.8, 0.8, 0.8, 0.8])
    assert plan_verdict([kd], DICE, BASE, "factorial").design == "ablation"
    assert plan_verdict([kd], DICE, BASE, "tuned") is None
    failed = runs("kd-1", "kd", [math.nan] * 4)
    assert plan_verdict([failed], DICE, BASE, "ablation") is None


def test_zero_variance_is_reported_and_never_a_win():
    v = verdict([0.80, 0.75, 0.78, 0.77], [0.79, 0.74, 0.77, 0.76])  # every difference exactly +0.01
    assert v.outcome == "no verdict" and "zero variance" in v.sentence and math.isnan(v.ci95[0])


def test_a_failed_seed_is_excluded_and_counted():
    v = verdict([0.80, math.nan, 0.78, 0.77], [0.78, 0.73, 0.75, math.nan])
    assert v.n_valid == 2 and v.excluded == [51, 53] and "seeds 51, 53 excluded" in v.sentence
    assert v.effect == pytest.approx((0.02 + 0.03) / 2)


def test_fewer_than_two_valid_pairs_is_no_verdict():
    v = verdict([0.80, math.nan, math.nan, 0.70], [0.78, 0.73, 0.75, math.nan])
    assert v.outcome == "no verdict" and v.n_valid == 1
    assert v.sentence.startswith("no verdict on mobilenet_v2: only 1 seed")


def test_a_minimised_objective_reads_its_sign_the_other_way():
    v = verdict([0.20, 0.25, 0.22, 0.23], [0.30, 0.34, 0.33, 0.31], objective=Objective("val_dice", "min"))
    assert v.outcome == "helped"


def test_the_ablation_differs_from_the_winner_only_in_mode_and_teacher_only_keys():
    teacher_base = config_from_dict(
        {"mode": "distillation", "teacher_checkpoint": "teacher.pt", "encoder_weights": None, "kd_loss": "bce"},
        source="test",
    )
    kd = Candidate(
        "kd-1",
        "t1",
        Sampled(
            "kd",
            {
                "alpha": 0.3,
                "temperature": 7.0,
                "learning_rate": 2e-3,
                "student_backbone": "resnet18",
                "student_backbone=resnet18@weight_decay": 1e-4,
            },
        ),
        0.8,
        12,
    )
    partner = Candidate(
        "baseline-1", "t2", Sampled("baseline", {"learning_rate": 5e-4, "student_backbone": "resnet18"}), 0.7, 12
    )
    winner, ablated = kd.sampled.apply(teacher_base), without_teacher(kd).sampled.apply(teacher_base)
    changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(winner, f.name) != getattr(ablated, f.name)}
    assert changed and all(
        name == "mode" or TrainConfig.__dataclass_fields__[name].metadata.get("teacher_only") for name in changed
    )
    assert ablated.mode == "baseline" and ablated.teacher_checkpoint is None and ablated.weight_decay == 1e-4
    # The tuned baseline with the teacher: the baseline's settings, the KD winner's teacher settings.
    base_cfg, added = partner.sampled.apply(teacher_base), with_teacher(partner, kd).sampled.apply(teacher_base)
    changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(base_cfg, f.name) != getattr(added, f.name)}
    assert all(
        name == "mode" or TrainConfig.__dataclass_fields__[name].metadata.get("teacher_only") for name in changed
    )
    assert added.mode == "distillation" and added.teacher_checkpoint == "teacher.pt"
    assert (added.alpha, added.temperature, added.learning_rate) == (0.3, 7.0, 5e-4)


def test_a_failed_selection_seed_counts_at_the_worst_value_and_ties_go_to_the_baseline():
    lucky = runs("kd-1", "kd", [0.80, math.nan, 0.80], seeds=(1, 2, 3))  # 0.80 on the seeds it survived
    steady = runs("kd-2", "kd", [0.70, 0.70, 0.70], seeds=(1, 2, 3))
    assert lucky.ranking_mean(DICE) == pytest.approx(1.6 / 3) and lucky.failed == 1
    assert [c.candidate.name for c in rank_confirmed([lucky, steady], DICE)] == ["kd-2", "kd-1"]
    kd, base = runs("kd-1", "kd", [0.7, 0.7]), runs("baseline-1", "baseline", [0.7, 0.7])
    assert [c.candidate.name for c in rank_confirmed([kd, base], DICE)] == ["baseline-1", "kd-1"]
    dead = runs("kd-3", "kd", [math.nan, math.nan])
    assert rank_confirmed([dead, kd], DICE)[-1] is dead


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


def test_a_distillation_sweep_without_a_verdict_says_why():
    kd = runs("kd-1", "kd", [math.nan] * len(SEEDS))
    baseline = runs("baseline-1", "baseline", [0.6] * len(SEEDS))
    assert plan_verdict([kd, baseline], DICE, BASE, "ablation") is None
    assert no_verdict_reason([kd, baseline], "ablation") == (
        "every selection run of the distillation configurations (kd-1) failed or diverged"
    )
    fine = runs("kd-1", "kd", [0.7] * len(SEEDS))
    assert plan_verdict([fine], DICE, BASE, "tuned") is None
    assert "no baseline configuration was selected" in no_verdict_reason([fine], "tuned")
