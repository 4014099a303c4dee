"""Stage 4 of a sweep, verdict: did the teacher help? The best confirmed distillation configuration minus
the best confirmed baseline one, paired by seed, with its 95% interval and a sentence saying what it means.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tune.objective import Objective
from tune.records import Confirmed, rank_confirmed
from tune.statistics import mean_ci95


@dataclass
class Verdict:
    """Best KD configuration minus the baseline, paired by seed."""

    kd: str
    baseline: str
    metric: str
    diff_mean: float
    ci95: tuple[float, float]
    seeds: int
    sentence: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95)}


def verdict(confirmed: list[Confirmed], objective: Objective) -> Verdict | None:
    """The paired difference of the best confirmed KD configuration and the baseline, or None without both."""
    ranked = rank_confirmed(confirmed, objective)
    kd = next((c for c in ranked if c.candidate.arm == "kd"), None)
    base = next((c for c in ranked if c.candidate.arm == "baseline"), None)
    if kd is None or base is None:
        return None
    by_seed = dict(zip(base.seeds, base.values))
    diffs = [v - by_seed[s] for s, v in zip(kd.seeds, kd.values) if s in by_seed]
    diff, ci = mean_ci95(diffs)
    helped = objective.gain(ci[0]) > 0 and objective.gain(ci[1]) > 0  # False for a NaN interval
    effect = (f"{diff:+.3f} {objective.label} (95% CI {ci[0]:+.3f} … {ci[1]:+.3f}) over the same student "
              f"without a teacher, {len(diffs)} seeds")
    sentence = f"distillation {effect}" if helped else f"no evidence that distillation helped: {effect}"
    return Verdict(kd.candidate.name, base.candidate.name, objective.metric, diff, ci, len(diffs), sentence)
