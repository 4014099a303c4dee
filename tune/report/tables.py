"""The sweep's console tables: the leaderboard (one row per search trial), the confirmation (one row per
selected configuration), the Dice–latency front (one row per student backbone) and the test sets' scores
with intervals (one row per test set), printed at the end of a sweep and by `tune.best show`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tune.objective import Objective
from tune.records import Confirmed, TrialRow, arm_label, rank_confirmed
from tune.report.format import fmt, interval


def format_leaderboard(rows: list[dict[str, Any]] | list[TrialRow], limit: int = 20, mode: str = "distillation") -> str:
    """A console table of leaderboard rows (TrialRows, their arms labelled for the space's `mode`, or dicts
    read back from leaderboard.csv, labelled already)."""
    dicts = [_row_dict(r, mode) for r in rows]
    params = sorted({k for row in dicts for k in row if k.startswith("param:")})
    # Only a sweep with a deploy target times its students: the column is absent, not empty, elsewhere.
    latency = any(row.get("latency_ms") not in (None, "") for row in dicts)
    header = (
        ["#", "trial", "arm", "end", "ep", "objective", "val dice"]
        + (["ms"] if latency else [])
        + [p[6:] for p in params]
    )
    lines = [header]
    lines.extend(
        [
            str(row["rank"]),
            str(row["trial_id"]),
            str(row["arm"]),
            str(row["end"]),
            str(row["epochs"]),
            fmt(row["objective"]),
            fmt(row["best_val_dice"]),
        ]
        + ([fmt(_number(row.get("latency_ms")), 1)] if latency else [])
        + [fmt(row.get(p, "")) for p in params]
        for row in dicts[:limit]
    )
    return _aligned(lines) + (f"\n... {len(dicts) - limit} more in leaderboard.csv" if len(dicts) > limit else "")


def _aligned(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _number(value: Any) -> Any:
    """A cell of leaderboard.csv left empty reads as ""; as a number it is missing."""
    return None if value == "" else value


def format_front(
    front: list[dict[str, Any]], batch: int = 1, budget_ms: float | None = None, label: str = "val Dice"
) -> str:
    """best.json's `front` as a console table, fastest first: latency at the target (and ONNX Runtime fp32 and
    int8), frames/s at the target's batch, whether it meets the budget, its best confirmed configuration's
    mean and 95% CI, and "*" where Pareto-optimal."""
    lines = [
        ["backbone", "ms", "fp32 ms", "int8 ms", "frames/s", "feasible", f"mean {label}", "95% CI", "config", "pareto"]
    ]
    for e in front:
        ci = f"[{fmt(e['ci95'][0], 3)}, {fmt(e['ci95'][1], 3)}]" if e["ci95"] else "–"
        lines.append(
            [
                e["backbone"],
                fmt(e["latency_ms"], 1),
                fmt(e["fp32_ms"], 1),
                fmt(e["int8_ms"], 1),
                fmt(1000.0 / e["latency_ms"] * batch, 1),
                "yes" if e["feasible"] else "over budget",
                fmt(e["mean"]),
                ci,
                e["config"] or "not confirmed",
                "*" if e["pareto"] else "",
            ]
        )
    budget = f"budget {budget_ms:g} ms at the target" if budget_ms is not None else "no latency budget"
    return (
        f"{budget}; ms: per call at the target's runtime; * Pareto-optimal (no other confirmed student is "
        f"both as fast and as good)\n" + _aligned(lines)
    )


def _row_dict(row: dict[str, Any] | TrialRow, mode: str) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    out = {**asdict(row), "arm": arm_label(row.arm, mode)}
    out.update({f"param:{k}": v for k, v in row.params.items()})
    return out


STAGE_TITLES = {
    "selection": "selection ({label}: mean and 95% CI over the selection seeds, each run retrained from scratch at "
    "full budget; 'search' is the single-seed search value at the budget the candidates shared). The "
    "best mean is chosen, so it overstates the winner: its estimate comes from the verdict seeds",
    "verdict": "verdict runs ({label} on fresh seeds, never used to choose: the winner's estimate, and the same "
    "settings with and without the teacher; arm kd: trained with the teacher)",
}


def format_confirmation(confirmed: list[Confirmed], objective: Objective, stage: str = "selection") -> str:
    """One line per configuration, best mean first (`stage`: selection or verdict runs)."""
    lines = [
        STAGE_TITLES[stage].format(label=objective.label),
        f"{'config':<26}{'arm':<10}{'search':>7}{'mean':>8}  {'95% CI':<17}{'per seed':<26}params",
    ]
    for c in rank_confirmed(confirmed, objective):
        ci = f"[{fmt(c.ci95[0], 3)}, {fmt(c.ci95[1], 3)}]"
        per_seed = " ".join(fmt(v, 3) for v in c.values)
        params = " ".join(f"{k}={fmt(v, None)}" for k, v in c.candidate.params.items())
        lines.append(
            f"{c.candidate.name:<26}{c.candidate.arm:<10}{fmt(c.candidate.search_value, 3):>7}"
            f"{fmt(c.mean):>8}  {ci:<17}{per_seed:<26}{params}"
        )
    return "\n".join(lines)


def format_test_scores(
    record: dict[str, Any], title: str, key: str, synthetic: bool = False, missing: list[str] | None = None
) -> str:
    """best.json's `winner_test` (key "score") or `test_effect` (key "delta"): one row per test set and the
    mean (each test set counts once), with the 95 % interval, the images and the seeds behind it."""
    signed = key == "delta"
    lines = [["test set", "images", "seeds", "Δ" if signed else "mean", "95% interval"]]
    for name, r in record.items():
        value = f"{r[key]:+.3f}" if signed else f"{r[key]:.3f}"
        span = interval(r["ci95"]) if signed else f"{r['ci95'][0]:.3f} … {r['ci95'][1]:.3f}"
        lines.append([name, str(r["n_images"]), str(r["n_seeds"]), value, span])
    out = [title + (" [SYNTHETIC data]" if synthetic else ""), _aligned(lines)]
    if missing:
        out.append(f"missing (not evaluated): {', '.join(missing)}")
    return "\n".join(out)
