"""The Dice–latency front of a sweep with a `deploy:` target: for every student backbone the space names, its
measured latency at the target and its front configuration (one per backbone, chosen on the search's values:
tune/sweep/select.front_picks) with its mean and interval over the selection seeds, which never chose it; the
Pareto-optimal ones marked. best.json keeps it as `front`; export chooses from it by latency budget. No Ray.
"""

from __future__ import annotations

import math
from typing import Any

from core.errors import UserError
from tune.objective import Objective
from tune.records import Confirmed


def build_front(
    students: dict[str, dict[str, Any]], confirmed: list[Confirmed], objective: Objective, base_backbone: str
) -> list[dict[str, Any]]:
    """One entry per backbone of `students` (latency.json's), fastest first: latency, whether it meets the
    budget, and its front configuration's selection-seed estimate (None where it has none: over budget, no
    usable trial, or every selection seed failed)."""
    front = []
    for backbone, latency in sorted(students.items(), key=lambda item: item[1]["latency_ms"]):
        best = next(
            (
                c
                for c in confirmed
                if c.candidate.front
                and c.candidate.params.get("student_backbone", base_backbone) == backbone
                and not math.isnan(c.mean)
            ),
            None,
        )
        entry = {
            "backbone": backbone,
            **latency,
            "mean": None,
            "ci95": None,
            "config": None,
            "arm": None,
            "trial": None,
            "params": None,
            "checkpoint": None,
            "pareto": False,
        }
        if best is not None:
            pick = best.best_seed_index(objective)
            entry.update(
                mean=best.mean,
                ci95=[_none(v) for v in best.ci95],
                config=best.candidate.name,
                arm=best.candidate.arm,
                trial=best.candidate.trial_id,
                params=best.candidate.params,
                checkpoint=best.checkpoints[pick] or None,
            )
        front.append(entry)
    mark_pareto(front, objective)
    return front


def mark_pareto(front: list[dict[str, Any]], objective: Objective) -> None:
    """An entry is Pareto-optimal when no other confirmed, feasible entry is at least as fast and better
    (or faster and as good)."""
    scored = [e for e in front if e["mean"] is not None and e["feasible"]]
    for e in scored:
        e["pareto"] = not any(
            o is not e
            and o["latency_ms"] <= e["latency_ms"]
            and objective.gain(o["mean"] - e["mean"]) >= 0
            and (o["latency_ms"] < e["latency_ms"] or objective.gain(o["mean"] - e["mean"]) > 0)
            for o in scored
        )


def best_within(front: list[dict[str, Any]], budget_ms: float, objective: Objective) -> dict[str, Any]:
    """The best confirmed entry at or under `budget_ms`; a budget nothing confirmed meets is a UserError
    naming the fastest confirmed student."""
    confirmed = [e for e in front if e["mean"] is not None and e["checkpoint"]]
    if not confirmed:
        raise UserError("best.json's front has no confirmed configuration to choose from")
    within = [e for e in confirmed if e["latency_ms"] <= budget_ms]
    if not within:
        fastest = min(confirmed, key=lambda e: e["latency_ms"])
        raise UserError(
            f"no confirmed student meets a {budget_ms:g} ms budget; the fastest is {fastest['backbone']} "
            f"at {fastest['latency_ms']:.1f} ms: raise --latency-budget-ms"
        )
    return objective.ranked(within, lambda e: e["mean"])[0]


def _none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value
