"""Stage 5 of a sweep, finish: name the winner, score its verdict runs and the verdict's first pair on the
test sets once (tune/sweep/test_sets.py), write best.json, then the reports: console, report.html with its
pictures, W&B's summary run, and a copy in shared storage.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from core.checkpoint import best_epoch, load_checkpoint
from core.config import config_from_dict
from core.data import discover
from core.errors import UserError
from core.evaluate import evaluate_test_sets, format_table
from core.models import load_model, resolve_device
from tune.cluster import storage
from tune.front import build_front
from tune.records import (
    BEST_FILE,
    CHECKPOINT_FILE,
    ENDS,
    JOURNAL_FILE,
    SHARED_OUTPUTS,
    TEST_PER_IMAGE_FILE,
    WANDB_DIRNAME,
    Confirmed,
    TrialRow,
    rank_confirmed,
    relative,
    resolve,
    write_json,
)
from tune.report.format import averaged_over, estimate_text, verdict_details
from tune.report.html import write_report
from tune.report.tables import format_confirmation, format_front, format_leaderboard, format_test_scores
from tune.report.wandb_report import publish_wandb_report, unsynced_offline_runs
from tune.report.wandb_summary import log_sweep_summary
from tune.sweep.runtime import SweepRun
from tune.sweep.study import load_study, param_importance, state_counts
from tune.sweep.test_sets import TestSetScores, over_seeds, score_verdict_checkpoints, teacher_effect
from tune.sweep.verdict import VerdictRuns, backbone, no_verdict_reason
from tune.tracking.network import sync_hint


@dataclass
class Winner:
    """The configuration the sweep names, and the one run of it whose checkpoint is exported."""

    record: dict[str, Any]  # what best.json says of how it was chosen and what it is estimated to score
    checkpoint: str  # the exported run's checkpoint (relative to the sweep folder where local)
    trial_id: str


def finish(
    run: SweepRun, rows: list[TrialRow], selected: list[Confirmed] | None, judged: VerdictRuns | None, started: float
) -> dict[str, Any]:
    """Write best.json and every report of a finished sweep; returns what best.json holds."""
    space, paths = run.space, run.paths
    print("\n" + format_leaderboard(rows, mode=space.mode))
    best = {"sweep": space.name, "objective": space.objective.to_dict(), **study_summary(run)}
    winner = choose_winner(run, rows, selected, judged)
    verdict = judged.verdict if judged else None
    val_average = space.base_config().val_averaging
    best.update(
        winner.record,
        val_average=val_average,
        kd_vs_baseline={**verdict.to_dict(), "val_average": val_average} if verdict else None,
    )
    tested = score_verdict_runs(run, judged, best["winner"]) if judged is not None and selected else None
    exported_test = tested.summary(best["winner"], best["seed"]) if tested else None
    scored = score_checkpoint(local_checkpoint(winner.checkpoint, run, "winner_checkpoint"), test=exported_test)
    best.update(checkpoint=relative(str(Path(scored.pop("folder")) / CHECKPOINT_FILE), paths.sweep_dir), **scored)
    print_winner(best, winner, space.objective.label)
    if tested is not None and judged is not None:
        best.update(test_intervals(run, judged, tested, best["winner"]))
    else:
        print(
            format_table(scored["test"], title="winner on the test sets (scored once, at the end; never selected on)")
        )
    if verdict:
        print(f"\nverdict: {verdict.sentence}")
        for line in verdict_details(best["kd_vs_baseline"], space.objective.label):
            print(f"  {line}")
    elif space.distillation and selected:  # a distillation sweep always owes its user the verdict, or why not
        why = no_verdict_reason(selected, space.confirm.verdict if space.confirm else "ablation")
        print(f"\nverdict: none — {why}; see {paths.confirm}", file=sys.stderr)
    importance = best["importance"]
    if importance:
        print(
            "importance (PED-ANOVA, KD trials at epoch "
            f"{importance['at_epoch']}): " + ", ".join(f"{k} {v:.2f}" for k, v in importance["importance"].items())
        )
    if run.students is not None:
        best.update(deployment(run, selected or []))
    best["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(best, paths.sweep_dir / BEST_FILE)
    publish(run, rows, best)
    return best


def deployment(run: SweepRun, selected: list[Confirmed]) -> dict[str, Any]:
    """best.json's `deploy` (the target, its budget, where latency was measured) and `front` (per student
    backbone: latency and its best configuration's selection mean; tune/front.py), printed as well."""
    target, students = run.space.deploy, run.students
    assert target is not None and students is not None, "finish writes a front only with a deploy target"
    front = build_front(students, selected, run.space.objective, run.space.base_config().student_backbone)
    measured_at = next(iter(students.values()))["measured_at"]
    print(
        f"\nDice–latency front at {target.describe()}, measured on {measured_at} (selection-seed means; "
        f"{averaged_over(run.space.base_config().val_averaging)})"
    )
    print(format_front(front, target.batch, target.latency_budget_ms, run.space.objective.label))
    return {
        "deploy": {"target": target.to_dict(), "described": target.describe(), "measured_at": measured_at},
        "front": front,
    }


def print_winner(best: dict[str, Any], winner: Winner, label: str) -> None:
    estimate = best.get("estimate")
    print(f"\nwinner: {best['winner']} ({best['arm']}, {best['student']})")
    if estimate:
        print(f"  estimate: {label} {estimate_text(estimate)}")
    print(
        f"  exported run {winner.trial_id}: val Dice {best['best_val_dice']:.4f} (epoch {best['best_epoch']})"
        + (" — the best of those seeds: a selected maximum, not an estimate" if estimate else "")
    )


def study_summary(run: SweepRun) -> dict[str, Any]:
    """Each arm's Optuna study: its trial states; and the KD parameters' importance, for best.json."""
    paths = run.paths
    studies = {arm: load_study(paths.sweep_dir, run.study_name(arm)) for arm in run.space.arm_trials()}
    states = {study.study_name: state_counts(study) for study in studies.values()}
    for name, counts in states.items():
        print(
            f"Optuna study {name} in {paths.sweep_dir / JOURNAL_FILE}: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
    return {
        "study": {"journal": JOURNAL_FILE, "states": states},
        "importance": param_importance(studies["kd"], at_epoch=run.space.asha.grace_period),
    }


def choose_winner(
    run: SweepRun, rows: list[TrialRow], selected: list[Confirmed] | None, judged: VerdictRuns | None
) -> Winner:
    """The best configuration by its selection mean, estimated on the verdict seeds (its best verdict run is
    exported); without selection, the best search trial that reached the full budget."""
    objective, base_cfg = run.space.objective, run.space.base_config()
    if not selected or judged is None:
        done = [r for r in rows if r.end == "finished"]
        if not done:
            raise UserError(
                f"{run.paths.sweep_dir}: no trial reached asha.max_t={run.space.asha.max_t} epochs; "
                f"see leaderboard.csv (with confirm: null only a full-budget trial can win)"
            )
        row = done[0]
        record: dict[str, Any] = dict(
            winner=row.trial_id,
            arm=row.arm,
            student=backbone(row.sampled, base_cfg),
            trial_id=row.trial_id,
            search_trial=row.trial_id,
            params=row.params,
            sampled=row.sampled.values,
            confirmation=None,
            estimate=None,
        )
        return Winner(record, row.checkpoint, row.trial_id)
    ranked = rank_confirmed(selected, objective)
    failures = {arm: sum(c.failed for c in selected if c.candidate.arm == arm) for arm in run.space.arm_trials()}
    print("\n" + format_confirmation(selected, objective, "selection"))
    if any(failures.values()):
        print(
            "failed or diverged selection runs: "
            + ", ".join(f"{arm} {n}" for arm, n in failures.items())
            + f" (ranked at {objective.label} {objective.worst:g} for that seed)"
        )
    print("\n" + format_confirmation(judged.runs, objective, "verdict"))
    runs, chosen = judged.winner, ranked[0]
    if math.isnan(runs.mean):
        raise UserError(
            f"{run.paths.sweep_dir}: every verdict run of {chosen.candidate.name} failed; see {run.paths.verdict}"
        )
    pick = runs.best_seed_index(objective)
    c = chosen.candidate
    estimate = {
        "mean": runs.mean,
        "ci95": list(runs.ci95),
        "seeds": runs.seeds,
        "values": runs.values,
        "n_valid": sum(not math.isnan(v) for v in runs.values),
    }
    record = dict(
        winner=c.name,
        arm=c.arm,
        student=backbone(c.sampled, base_cfg),
        trial_id=runs.trial_ids[pick],
        search_trial=c.trial_id,
        params=c.params,
        sampled=c.sampled.values,
        seed=runs.seeds[pick],
        selection_mean=chosen.mean,
        selection_ci95=list(chosen.ci95),
        estimate=estimate,
        confirmation=[x.to_dict() for x in ranked],
        selection_failures=failures,
        verdict_runs=[x.to_dict() for x in rank_confirmed(judged.runs, objective)],
    )
    return Winner(record, runs.checkpoints[pick], runs.trial_ids[pick])


def score_verdict_runs(run: SweepRun, judged: VerdictRuns, winner: str) -> TestSetScores:
    """Every verdict checkpoint of the winner and of the verdict's pairs, scored on the test sets."""
    paired = {c.name for pair in judged.plan.pairs for c in pair} if judged.plan and judged.verdict else set()
    compared = [r for r in judged.runs if r.candidate.name in {winner, *paired}]
    started = time.perf_counter()
    tested = score_verdict_checkpoints(run, compared)
    print(
        f"\ntest sets: {sum(len(s) for s in tested.scores.values())} verdict checkpoints of "
        f"{', '.join(r.candidate.name for r in compared)} scored in {time.perf_counter() - started:.0f}s "
        f"(per image: {TEST_PER_IMAGE_FILE})"
    )
    return tested


def test_intervals(run: SweepRun, judged: VerdictRuns, tested: TestSetScores, winner: str) -> dict[str, Any]:
    """best.json's `winner_test` (the winner over its verdict seeds) and `test_effect` (the verdict's first
    pair: with minus without the teacher), with their intervals; printed."""
    metric, label = run.space.objective.test_metric
    out: dict[str, Any] = {"winner_test": over_seeds(tested, winner, metric)}
    title = f"winner {winner} on the test sets: {label} over its verdict seeds (never selected on)"
    print("\n" + format_test_scores(out["winner_test"], title, "score", tested.data.synthetic, tested.missing))
    first = _first_pair(judged)
    if first:
        out["test_effect"] = teacher_effect(tested, first[0], first[1], metric)
        title = f"the teacher on the test sets: {first[0]} − {first[1]}, {label} paired by seed"
        print("\n" + format_test_scores(out["test_effect"], title, "delta", tested.data.synthetic))
    print(
        "(95% intervals: a two-way bootstrap over seeds and test images, a video's frames resampled together; "
        "the mean counts each test set once)"
    )
    return out


def _first_pair(judged: VerdictRuns) -> list[str]:
    """The verdict's first pair (with the teacher, without), when there is a verdict."""
    return [c.name for c in judged.plan.pairs[0]] if judged.plan and judged.verdict else []


def score_checkpoint(folder: str, data_root: str | None = None, test: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a trial checkpoint's best-validation weights on every test set present (unless its `test` scores
    are given); with its best epoch (from the checkpoint's history), as best.json records them."""
    path = Path(folder) / CHECKPOINT_FILE
    if test is None:
        model, state = load_model(str(path))
        cfg = config_from_dict(state["config"], source=f"{path}: config")
        data = discover(data_root or cfg.data_root)
        test = evaluate_test_sets(model, data, cfg.img_size, cfg.batch_size, resolve_device("auto"))
    else:  # scored already: only the record is read, no model built and no data listed again
        state = load_checkpoint(path, mmap=True)
        cfg = config_from_dict(state["config"], source=f"{path}: config")
    report = test
    best = best_epoch(state["history"])
    if best is None:
        raise UserError(f"{path}: checkpoint has no training history (a trial's records every epoch it trained)")
    return {
        "folder": folder,
        "config": cfg.to_dict(),
        "architecture": state["architecture"],
        "test": report,
        "synthetic_data": bool(report["synthetic"]),
        "best_val_dice": best["val_dice"],
        "best_val_iou": best["val_iou"],
        "best_epoch": best["epoch"],
        "epochs_trained": state["epoch"],
    }


def local_checkpoint(checkpoint: str, run: SweepRun, name: str) -> str:
    """A local folder holding the checkpoint (a copy beside best.json when it lives in shared storage)."""
    if not storage.is_uri(checkpoint) and not run.paths.remote:
        return resolve(checkpoint, run.paths.sweep_dir)
    return tune.Checkpoint(checkpoint).to_directory(str(run.paths.sweep_dir / name))


def publish(run: SweepRun, rows: list[TrialRow], best: dict[str, Any]) -> None:
    """report.html (and its pictures), W&B's summary run, a copy in shared storage, and what to do next."""
    space, paths = run.space, run.paths
    print(f"report: {write_report(paths.sweep_dir)}")
    ends = {e: sum(r.end == e for r in rows) for e in ENDS}
    print(
        f"\n{len(rows)} search trials ("
        + ", ".join(f"{n} {e}" for e, n in ends.items() if n)
        + f") in {best['wall_seconds']:.0f}s -> {paths.sweep_dir}"
    )
    reached = True
    if run.wandb_mode != "disabled":
        reached = log_sweep_summary(
            space.wandb.project,
            run.wandb_entity,
            space.wandb.group or space.name,
            run.wandb_mode,
            paths.sweep_dir,
            space.to_dict(),
            best,
            rows,
        )
    if run.wandb_mode == "online":
        wandb_dir = paths.sweep_dir / WANDB_DIRNAME
        offline = unsynced_offline_runs(paths.sweep_dir)
        if offline:
            # Trial runs that could not reach W&B were logged offline (tune/tracking/network.py).
            print(
                f"W&B: {len(offline)} runs of this sweep are offline in {wandb_dir}: upload them with "
                f"{sync_hint(wandb_dir)}"
            )
        if reached and not offline:
            url = publish_wandb_report(paths.sweep_dir, space, run.wandb_entity)
            if url:
                print(f"W&B Report: {url}")
        else:  # the Report charts uploaded runs: a later `tune.report --wandb` makes it, after the upload
            print(
                f"W&B Report not made: W&B did not get every run; after the upload, make it with "
                f"`python -m tune.report --sweep {paths.sweep_dir} --wandb`"
            )
    if run.wandb_mode == "offline":
        print(
            f"W&B runs are offline in {paths.sweep_dir / WANDB_DIRNAME}; upload them with "
            f"`wandb sync {paths.sweep_dir / WANDB_DIRNAME}/offline-run-*`"
        )
    if paths.remote:
        for name in SHARED_OUTPUTS:
            if (paths.sweep_dir / name).exists():
                storage.upload(paths.sweep_dir / name, storage.join(paths.shared, name))
        print(f"report copied to {paths.shared}")
    print(f"optuna-dashboard {paths.sweep_dir / JOURNAL_FILE}   # browse the study")
    print(f"export the winner with: python -m tune.best export --sweep {paths.sweep_dir}")
