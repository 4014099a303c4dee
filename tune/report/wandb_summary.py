"""The sweep's summary run in W&B: the leaderboard and confirmation as tables, the verdict and the winner's
test scores in its summary, and the report's pictures; one run per sweep, `job_type` summary.
"""
from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import wandb

from tune.records import CURVES_PNG, PARALLEL_PNG, TrialRow


def log_sweep_summary(project: str, group: str, mode: str, sweep_dir: Path, space: dict[str, Any],
                      best: dict[str, Any], rows: list[TrialRow]) -> str:
    """Write the summary run (offline unless a key is set); returns the run's folder or id."""
    run = wandb.init(project=project, group=group, job_type="summary", name=f"{best['sweep']}-summary",
                     id=f"summary-{uuid.uuid4().hex[:8]}", dir=str(sweep_dir), mode=mode,
                     config={"space": space}, tags=[best["sweep"], "summary"])
    try:
        params = sorted({k for r in rows for k in r.params})
        table = wandb.Table(columns=["rank", "trial_id", "arm", "end", "epochs", "objective", "best_val_dice"]
                            + params)
        for r in rows:
            table.add_data(r.rank, r.trial_id, r.arm, r.end, r.epochs, _num(r.objective), _num(r.best_val_dice),
                           *[str(r.params.get(p, "")) for p in params])
        logged: dict[str, Any] = {"leaderboard": table}
        if best.get("confirmation"):
            confirm = wandb.Table(columns=["config", "arm", "search_trial", "seeds", "values", "mean", "ci95_lo",
                                           "ci95_hi"])
            for c in best["confirmation"]:
                confirm.add_data(c["name"], c["arm"], c["trial"], str(c["seeds"]), str(c["values"]),
                                 _num(c["mean"]), _num(c["ci95"][0]), _num(c["ci95"][1]))
            logged["confirmation"] = confirm
        for name, file in (("curves", CURVES_PNG), ("parallel_coordinates", PARALLEL_PNG)):
            if (sweep_dir / file).is_file():
                logged[name] = wandb.Image(str(sweep_dir / file))
        run.log(logged)
        estimate = best.get("estimate") or {}
        summary = {"winner": best["winner"], "winner_arm": best["arm"], "winner_student": best.get("student"),
                   "winner_val_dice/estimate": _num(estimate.get("mean")),
                   "winner_val_dice/exported_run": best["best_val_dice"],
                   "test/mean/dice": best["test"]["mean"]["dice"], "test/mean/iou": best["test"]["mean"]["iou"]}
        for name, s in best["test"]["test_sets"].items():
            summary.update({f"test/{name}/dice": s["dice"], f"test/{name}/iou": s["iou"]})
        verdict = best.get("kd_vs_baseline")
        if verdict:
            summary.update({"kd_vs_baseline/diff_mean": _num(verdict["diff_mean"]),
                            "kd_vs_baseline/ci95_lo": _num(verdict["ci95"][0]),
                            "kd_vs_baseline/ci95_hi": _num(verdict["ci95"][1]),
                            "kd_vs_baseline/seeds": verdict["n_valid"], "kd_vs_baseline/mde80": _num(verdict["mde80"]),
                            "kd_vs_baseline/outcome": verdict["outcome"], "verdict": verdict["sentence"]})
        run.summary.update(summary)
        return run.dir
    finally:
        run.finish()


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
