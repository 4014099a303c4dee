"""The sweep's summary run in W&B: the leaderboard, confirmation and test scores as tables with numeric
columns, the verdict and the winner's test scores in its summary, report.html's charts, report.html itself
and the winner's validation gallery; one run per sweep (`job_type` summary), updated when the end is re-run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import wandb

from tune.records import CHARTS_DIRNAME, WANDB_DIRNAME, TrialRow, read_sweep_record, resolve
from tune.report.gallery import validation_gallery
from tune.tracking.artifacts import gallery_images, report_artifact
from tune.tracking.mode import RunMode
from tune.tracking.network import init_or_offline, run_settings, run_wait_s, sync_hint, wandb_timeout_s


def summary_run_id(sweep_dir: Path, sweep: str) -> str:
    """The same id every time this sweep's end is run (sweep.json's uid tells apart sweeps of one name)."""
    return f"{sweep}-summary-{read_sweep_record(sweep_dir).get('uid', 'x')}"


def log_sweep_summary(
    project: str,
    entity: str | None,
    group: str,
    mode: RunMode,
    sweep_dir: Path,
    space: dict[str, Any],
    best: dict[str, Any],
    rows: list[TrialRow],
) -> bool:
    """Write (or update) the summary run. Online, each wait on W&B is bounded ($POLYP_KD_TUNE_WANDB_TIMEOUT_S)
    and announced: without W&B the run is logged offline, a timed-out upload stays on disk, each one line
    naming what `wandb sync` uploads later. Returns whether W&B was reached (or was not asked for)."""
    timeout_s = wandb_timeout_s()
    wandb_dir = Path(sweep_dir) / WANDB_DIRNAME
    if mode == "online":
        print(
            f"W&B: logging the sweep's summary run (at most {run_wait_s(timeout_s):.0f} s; without W&B it is "
            f"kept in {wandb_dir} for `wandb sync`)",
            flush=True,
        )

    def went_offline(reason: str) -> None:
        print(
            f"W&B: not reached within {timeout_s:g} s ({reason}); the summary run is logged offline in "
            f"{wandb_dir}: upload it later with {sync_hint(wandb_dir)}",
            flush=True,
        )

    run, offline_reason = init_or_offline(
        wandb.init,
        dict(
            project=project,
            entity=entity,
            group=group,
            job_type="summary",
            name=f"{best['sweep']}-summary",
            id=summary_run_id(sweep_dir, best["sweep"]),
            resume="allow",
            dir=str(sweep_dir),
            mode=mode,
            config={"space": space},
            tags=[best["sweep"], "summary"],
            # finish_timeout_raises: the one public way to learn that the upload was cut off.
            settings={**run_settings(timeout_s), "finish_timeout_raises": True},
        ),
        went_offline,
    )
    try:
        logged: dict[str, Any] = {"leaderboard": leaderboard_table(rows), "test": test_table(best)}
        if best.get("confirmation"):
            logged["confirmation"] = confirmation_table(best["confirmation"], best.get("verdict_runs") or [])
        for path in sorted((sweep_dir / CHARTS_DIRNAME).glob("*.png")):
            logged[f"charts/{path.stem}"] = wandb.Image(str(path))
        if best.get("checkpoint"):
            gallery = validation_gallery(Path(resolve(best["checkpoint"], sweep_dir)))
            logged["validation_gallery"] = gallery_images(gallery)
        run.log(logged)
        run.summary.update(summary_values(best))
        run.log_artifact(report_artifact(sweep_dir, best["sweep"]), aliases=["latest", best["sweep"]])
    finally:
        uploaded = _finish(run, timeout_s, wandb_dir)
    return uploaded and offline_reason is None


def _finish(run: Any, timeout_s: float, wandb_dir: Path) -> bool:
    """End the run; False, after one line, when its upload did not end within `timeout_s`."""
    try:
        run.finish()
    except TimeoutError:
        print(
            f"W&B: the summary run's upload did not end within {timeout_s:g} s; it stays in {wandb_dir}: "
            f"upload it later with {sync_hint(wandb_dir, include_online=True)}",
            flush=True,
        )
        return False
    return True


def leaderboard_table(rows: list[TrialRow]) -> wandb.Table:
    """Every search trial; each parameter a column of its own type (numbers stay numbers, so W&B plots them).
    `wandb_run` is the trial's W&B run id (its Ray trial id)."""
    params = sorted({k for r in rows for k in r.params})
    table = wandb.Table(
        columns=[
            "rank",
            "trial_id",
            "wandb_run",
            "arm",
            "end",
            "epochs",
            "objective",
            "best_val_dice",
            "best_val_iou",
            *params,
        ]
    )
    for r in rows:
        table.add_data(
            r.rank,
            r.trial_id,
            r.trial_id,
            r.arm,
            r.end,
            r.epochs,
            _num(r.objective),
            _num(r.best_val_dice),
            _num(r.best_val_iou),
            *[_value(r.params.get(p)) for p in params],
        )
    return table


def confirmation_table(selection: list[dict[str, Any]], verdict: list[dict[str, Any]]) -> wandb.Table:
    """The selection and verdict runs: one row per configuration and stage, each seed's value a column."""
    staged = [("selection", c) for c in selection] + [("verdict", c) for c in verdict]
    seeds = max((len(c["values"]) for _, c in staged), default=0)
    table = wandb.Table(
        columns=[
            "stage",
            "config",
            "arm",
            "search_trial",
            "n_seeds",
            "mean",
            "ci95_lo",
            "ci95_hi",
            *(f"seed_{i + 1}" for i in range(seeds)),
        ]
    )
    for stage, c in staged:
        values = [_num(v) for v in c["values"]] + [None] * (seeds - len(c["values"]))
        table.add_data(
            stage,
            c["name"],
            c["arm"],
            c["trial"],
            len(c["seeds"]),
            _num(c["mean"]),
            _num(c["ci95"][0]),
            _num(c["ci95"][1]),
            *values,
        )
    return table


def test_table(best: dict[str, Any]) -> wandb.Table:
    """Per test set and their mean: the winner's score over its verdict seeds and the teacher's effect (the
    verdict's first pair), each with its 95 % interval; without them, the exported run's Dice."""
    table = wandb.Table(columns=["what", "test_set", "value", "ci95_lo", "ci95_hi", "n_images", "n_seeds"])
    for what, key in (("winner", "winner_test"), ("teacher effect", "test_effect")):
        for name, r in (best.get(key) or {}).items():
            value = r["score"] if "score" in r else r["delta"]
            table.add_data(what, name, _num(value), _num(r["ci95"][0]), _num(r["ci95"][1]), r["n_images"], r["n_seeds"])
    if not best.get("winner_test"):
        for name, s in [*best["test"]["test_sets"].items(), ("mean", best["test"]["mean"])]:
            table.add_data("exported run", name, _num(s["dice"]), None, None, s["n"], 1)
    return table


def summary_values(best: dict[str, Any]) -> dict[str, Any]:
    estimate = best.get("estimate") or {}
    summary = {
        "winner": best["winner"],
        "winner_arm": best["arm"],
        "winner_student": best.get("student"),
        "winner_val_dice/estimate": _num(estimate.get("mean")),
        "winner_val_dice/exported_run": best["best_val_dice"],
        "test/mean/dice": best["test"]["mean"]["dice"],
        "test/mean/iou": best["test"]["mean"]["iou"],
    }
    for name, s in best["test"]["test_sets"].items():
        summary.update({f"test/{name}/dice": s["dice"], f"test/{name}/iou": s["iou"]})
    for name, r in (best.get("test_effect") or {}).items():
        summary.update({f"test_effect/{name}/delta": _num(r["delta"]), f"test_effect/{name}/ci95": r["ci95"]})
    verdict = best.get("kd_vs_baseline")
    if verdict:
        summary.update(
            {
                "kd_vs_baseline/design": verdict["design"],
                "kd_vs_baseline/effect": _num(verdict["effect"]),
                "kd_vs_baseline/ci95_lo": _num(verdict["ci95"][0]),
                "kd_vs_baseline/ci95_hi": _num(verdict["ci95"][1]),
                "kd_vs_baseline/margin": verdict["margin"],
                "kd_vs_baseline/seeds": verdict["n_valid"],
                "kd_vs_baseline/mde80": _num(verdict["mde80"]),
                "kd_vs_baseline/outcome": verdict["outcome"],
                "verdict": verdict["sentence"],
            }
        )
    return summary


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _value(value: Any) -> Any:
    """A parameter as its own type: a number as a float, a choice as its text, absent as empty."""
    if isinstance(value, bool) or value is None:
        return value
    return _num(value) if isinstance(value, (int, float)) else str(value)
