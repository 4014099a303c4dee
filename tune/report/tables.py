"""The sweep's console tables: the leaderboard (one row per search trial) and the confirmation (one row
per selected configuration), printed at the end of a sweep and by `tune.best show`.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tune.objective import Objective
from tune.records import Confirmed, TrialRow, rank_confirmed
from tune.report.format import fmt


def format_leaderboard(rows: list[dict[str, Any]] | list[TrialRow], limit: int = 20) -> str:
    """A console table of leaderboard rows (TrialRows, or dicts read back from leaderboard.csv)."""
    dicts = [_row_dict(r) for r in rows]
    params = sorted({k for row in dicts for k in row if k.startswith("param:")})
    header = ["#", "trial", "arm", "end", "ep", "objective", "val dice"] + [p[6:] for p in params]
    lines = [header]
    for row in dicts[:limit]:
        lines.append([str(row["rank"]), str(row["trial_id"]), str(row["arm"]), str(row["end"]), str(row["epochs"]),
                      fmt(row["objective"]), fmt(row["best_val_dice"])] + [fmt(row.get(p, "")) for p in params])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
    more = f"\n... {len(dicts) - limit} more in leaderboard.csv" if len(dicts) > limit else ""
    return text + more


def _row_dict(row: dict[str, Any] | TrialRow) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    out = {**asdict(row), "arm": row.arm}
    out.update({f"param:{k}": v for k, v in row.params.items()})
    return out


STAGE_TITLES = {
    "selection": "selection ({label}: mean and 95% CI over the selection seeds, each run retrained from scratch at "
                 "full budget; 'search' is the single-seed search value at the budget the candidates shared). The "
                 "best mean is chosen, so it overstates the winner: its estimate comes from the verdict seeds",
    "verdict": "verdict runs ({label} on fresh seeds, never used to choose: the winner's estimate, and KD against "
               "the baseline of the same student)",
}


def format_confirmation(confirmed: list[Confirmed], objective: Objective, stage: str = "selection") -> str:
    """One line per configuration, best mean first (`stage`: selection or verdict runs)."""
    lines = [STAGE_TITLES[stage].format(label=objective.label),
             f"{'config':<22}{'arm':<10}{'search':>7}{'mean':>8}  {'95% CI':<17}{'per seed':<26}params"]
    for c in rank_confirmed(confirmed, objective):
        ci = f"[{fmt(c.ci95[0], 3)}, {fmt(c.ci95[1], 3)}]"
        per_seed = " ".join(fmt(v, 3) for v in c.values)
        params = " ".join(f"{k}={fmt(v, None)}" for k, v in c.candidate.params.items())
        lines.append(f"{c.candidate.name:<22}{c.candidate.arm:<10}{fmt(c.candidate.search_value, 3):>7}"
                     f"{fmt(c.mean):>8}  {ci:<17}{per_seed:<26}{params}")
    return "\n".join(lines)
