"""Stage 5 of a sweep, finish: name the winner, score it (and the confirmed baseline) on the test sets
once, write best.json, then the reports: console, report.html with its pictures, W&B's summary run, and a
copy in shared storage.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from core.checkpoint import best_epoch
from core.config import config_from_dict
from core.data import discover
from core.errors import UserError
from core.evaluate import evaluate_test_sets, format_table
from core.models import load_model, resolve_device
from tune.cluster import storage
from tune.records import (
    BEST_FILE,
    CHECKPOINT_FILE,
    ENDS,
    JOURNAL_FILE,
    SHARED_OUTPUTS,
    WANDB_DIRNAME,
    Confirmed,
    TrialRow,
    rank_confirmed,
    relative,
    resolve,
    write_json,
)
from tune.report.html import write_report
from tune.report.tables import format_confirmation, format_leaderboard
from tune.report.wandb_summary import log_sweep_summary
from tune.sweep.runtime import SweepRun
from tune.sweep.study import load_study, param_importance, state_counts
from tune.sweep.verdict import Verdict


@dataclass
class Winner:
    """The configuration the sweep names, and the one run of it whose checkpoint is exported."""

    name: str
    record: dict[str, Any]      # what best.json says of how it was chosen
    checkpoint: str             # the exported run's checkpoint (relative to the sweep folder where local)
    trial_id: str
    baseline: Confirmed | None  # the confirmed baseline, scored on the test sets beside the winner


def finish(run: SweepRun, rows: list[TrialRow], confirmed: list[Confirmed] | None, verdict: Verdict | None,
           started: float) -> dict[str, Any]:
    """Write best.json and every report of a finished sweep; returns what best.json holds."""
    space, paths = run.space, run.paths
    print("\n" + format_leaderboard(rows))
    best = {"sweep": space.name, "objective": space.objective.to_dict(), **study_summary(run)}
    winner = choose_winner(run, rows, confirmed)
    best.update(winner.record, kd_vs_baseline=verdict.to_dict() if verdict else None)
    scored = score_checkpoint(local_checkpoint(winner.checkpoint, run, "winner_checkpoint"))
    best.update(checkpoint=relative(str(Path(scored.pop("folder")) / CHECKPOINT_FILE), paths.sweep_dir), **scored)
    print(f"\nwinner: {best['winner']} ({best['arm']}, seed run {winner.trial_id})  val Dice "
          f"{best['best_val_dice']:.4f} (epoch {best['best_epoch']})")
    print(format_table(scored["test"], title="winner on the test sets (scored once, at the end; never selected on)"))
    if winner.baseline is not None:
        best["baseline_test"] = score_baseline(run, winner.baseline)
    if verdict:
        print(f"\nverdict: {verdict.sentence}")
    importance = best["importance"]
    if importance:
        print("importance (PED-ANOVA, KD trials at epoch "
              f"{importance['at_epoch']}): " + ", ".join(f"{k} {v:.2f}" for k, v in importance["importance"].items()))
    best["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(best, paths.sweep_dir / BEST_FILE)
    publish(run, rows, best)
    return best


def study_summary(run: SweepRun) -> dict[str, Any]:
    """The Optuna study's trial states and the KD parameters' importance, for best.json."""
    paths = run.paths
    study = load_study(paths.sweep_dir, run.space.name)
    counts = state_counts(study)
    print(f"Optuna study {paths.sweep_dir / JOURNAL_FILE}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return {"study": {"journal": JOURNAL_FILE, "states": counts},
            "importance": param_importance(study, at_epoch=run.space.asha.grace_period)}


def choose_winner(run: SweepRun, rows: list[TrialRow], confirmed: list[Confirmed] | None) -> Winner:
    """The best confirmed mean (its best seed's run is exported); without confirmation, the best search
    trial that reached the full budget."""
    objective, paths = run.space.objective, run.paths
    if not confirmed:
        done = [r for r in rows if r.end == "finished"]
        if not done:
            raise UserError(f"{paths.sweep_dir}: no trial reached asha.max_t={run.space.asha.max_t} epochs; see "
                            f"leaderboard.csv (with confirm: null only a full-budget trial can win)")
        row = done[0]
        record = dict(winner=row.trial_id, arm=row.arm, trial_id=row.trial_id, search_trial=row.trial_id,
                      params=row.params, sampled=row.sampled.values, confirmation=None)
        return Winner(row.trial_id, record, row.checkpoint, row.trial_id, None)
    ranked = rank_confirmed(confirmed, objective)
    print("\n" + format_confirmation(confirmed, objective))
    best = ranked[0]
    if math.isnan(best.mean):
        raise UserError(f"{paths.sweep_dir}: every confirmation run failed; see {paths.confirm}")
    pick = best.best_seed_index(objective)
    c = best.candidate
    record = dict(winner=c.name, arm=c.arm, trial_id=best.trial_ids[pick], search_trial=c.trial_id,
                  params=c.params, sampled=c.sampled.values, confirmed_mean=best.mean,
                  confirmed_ci95=list(best.ci95), seed=best.seeds[pick], confirmation=[x.to_dict() for x in ranked])
    baseline = next((x for x in ranked if x.candidate.arm == "baseline"), None)
    if baseline is not None and (math.isnan(baseline.mean) or baseline is best):
        baseline = None
    return Winner(c.name, record, best.checkpoints[pick], best.trial_ids[pick], baseline)


def score_baseline(run: SweepRun, baseline: Confirmed) -> dict[str, Any]:
    pick = baseline.best_seed_index(run.space.objective)
    test = score_checkpoint(local_checkpoint(baseline.checkpoints[pick], run, "baseline_checkpoint"))["test"]
    print(format_table(test, title=f"confirmed baseline ({baseline.candidate.name}) on the test sets"))
    return test


def score_checkpoint(folder: str, data_root: str | None = None) -> dict[str, Any]:
    """Score a trial checkpoint's best-validation weights on every test set present; with its best epoch
    (from the checkpoint's history), as best.json records them."""
    path = Path(folder) / CHECKPOINT_FILE
    model, state = load_model(str(path))
    cfg = config_from_dict(state["config"], source=f"{path}: config")
    data = discover(data_root or cfg.data_root)
    report = evaluate_test_sets(model, data, cfg.img_size, cfg.batch_size, resolve_device("auto"))
    best = best_epoch(state["history"])
    return {"folder": folder, "config": cfg.to_dict(), "architecture": state["architecture"], "test": report,
            "synthetic_data": data.synthetic, "best_val_dice": best["val_dice"], "best_val_iou": best["val_iou"],
            "best_epoch": best["epoch"], "epochs_trained": state["epoch"]}


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
    print(f"\n{len(rows)} search trials (" + ", ".join(f"{n} {e}" for e, n in ends.items() if n)
          + f") in {best['wall_seconds']:.0f}s -> {paths.sweep_dir}")
    if run.wandb_mode != "disabled":
        log_sweep_summary(space.wandb.project, space.wandb.group or space.name, run.wandb_mode, paths.sweep_dir,
                          space.to_dict(), best, rows)
    if run.wandb_mode == "offline":
        print(f"W&B runs are offline in {paths.sweep_dir / WANDB_DIRNAME}; upload them with "
              f"`wandb sync {paths.sweep_dir / WANDB_DIRNAME}/offline-run-*`")
    if paths.remote:
        for name in SHARED_OUTPUTS:
            if (paths.sweep_dir / name).exists():
                storage.upload(paths.sweep_dir / name, storage.join(paths.shared, name))
        print(f"report copied to {paths.shared}")
    print(f"optuna-dashboard {paths.sweep_dir / JOURNAL_FILE}   # browse the study")
    print(f"export the winner with: python -m tune.best export --sweep {paths.sweep_dir}")
