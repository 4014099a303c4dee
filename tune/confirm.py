"""Confirmation: before a winner is named, the best configurations of the search are retrained from scratch
at full budget over several seeds, and compared by their mean with a 95% confidence interval.

A single-seed ranking cannot tell apart trials that differ by less than seed noise; the paired difference
(same seeds) between the best distillation configuration and the best baseline one answers the question a
KD sweep is run for: did the teacher help, and by how much?
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats


@dataclass
class Candidate:
    """A configuration chosen from the search for confirmation."""

    name: str                   # e.g. kd-1 (best KD trial of the search), baseline-1
    arm: str                    # kd | baseline
    trial_id: str               # the search trial it comes from
    params: dict[str, Any]      # exactly what Optuna sampled (trial_config turns it into a TrainConfig)
    search_value: float         # its objective value in the search (possibly at a partial budget)
    search_epochs: int


@dataclass
class Confirmed:
    """One candidate after its seed runs."""

    candidate: Candidate
    seeds: list[int]
    values: list[float]         # the objective per seed, in `seeds` order
    val_dice: list[float]       # best validation Dice per seed
    checkpoints: list[str]      # per seed (relative to the sweep folder where local)
    trial_ids: list[str]
    mean: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)

    def __post_init__(self):
        self.mean, self.ci95 = mean_ci95(self.values)

    def best_seed_index(self, maximize: bool = True) -> int:
        pick = max if maximize else min
        return pick(range(len(self.values)), key=lambda i: self.values[i])

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"name": c.name, "trial": c.trial_id, "arm": c.arm, "params": c.params,
                "search_value": c.search_value, "search_epochs": c.search_epochs, "seeds": self.seeds,
                "values": self.values, "val_dice": self.val_dice, "mean": self.mean, "ci95": list(self.ci95),
                "checkpoints": self.checkpoints, "trial_ids": self.trial_ids}


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


def confirmed_from_dict(record: dict[str, Any]) -> Confirmed:
    """A `Confirmed` read back from best.json's `confirmation` list."""
    candidate = Candidate(record["name"], record["arm"], record["trial"], record["params"],
                          record["search_value"], record["search_epochs"])
    return Confirmed(candidate, record["seeds"], [_nan(v) for v in record["values"]],
                     [_nan(v) for v in record["val_dice"]], record["checkpoints"], record["trial_ids"])


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def mean_ci95(values: list[float]) -> tuple[float, tuple[float, float]]:
    """Mean and two-sided 95% Student-t interval over seeds (NaN interval for fewer than two values)."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, (math.nan, math.nan)
    mean = statistics.fmean(clean)
    if len(clean) < 2:
        return mean, (math.nan, math.nan)
    half = stats.t.ppf(0.975, len(clean) - 1) * statistics.stdev(clean) / math.sqrt(len(clean))
    return mean, (mean - half, mean + half)


def choose_candidates(rows: list, top_k: int, include_baseline: bool) -> list[Candidate]:
    """The `top_k` best KD configurations of the search and the best baseline one (rows ranked best first).
    Trials that errored, diverged or were interrupted are never candidates; ASHA-stopped ones are."""
    usable = [r for r in rows if r.end in ("finished", "stopped by ASHA") and not math.isnan(r.objective)]
    chosen = []
    for arm, limit in (("kd", top_k), ("baseline", 1 if include_baseline else 0)):
        for i, row in enumerate([r for r in usable if r.arm == arm][:limit], 1):
            chosen.append(Candidate(f"{arm}-{i}", arm, row.trial_id, row.sampled, row.objective, row.epochs))
    return chosen


def seeds_for(base_seed: int, n: int) -> list[int]:
    return [base_seed + i for i in range(n)]


def rank_confirmed(confirmed: list[Confirmed], maximize: bool = True) -> list[Confirmed]:
    sign = -1 if maximize else 1
    return sorted(confirmed, key=lambda c: (math.isnan(c.mean), sign * c.mean if not math.isnan(c.mean) else 0))


def verdict(confirmed: list[Confirmed], metric: str, maximize: bool = True) -> Verdict | None:
    """The paired difference of the best confirmed KD configuration and the baseline, or None without both."""
    ranked = rank_confirmed(confirmed, maximize)
    kd = next((c for c in ranked if c.candidate.arm == "kd"), None)
    base = next((c for c in ranked if c.candidate.arm == "baseline"), None)
    if kd is None or base is None:
        return None
    by_seed = dict(zip(base.seeds, base.values))
    diffs = [v - by_seed[s] for s, v in zip(kd.seeds, kd.values) if s in by_seed]
    diff, ci = mean_ci95(diffs)
    label = metric_label(metric)
    sign = 1 if maximize else -1
    helped = not math.isnan(ci[0]) and sign * ci[0] > 0 and sign * ci[1] > 0
    sentence = (f"distillation {diff:+.3f} {label} (95% CI {ci[0]:+.3f} … {ci[1]:+.3f}) over the same student "
                f"without a teacher, {len(diffs)} seeds" if helped else
                f"no evidence that distillation helped: {diff:+.3f} {label} (95% CI {ci[0]:+.3f} … {ci[1]:+.3f}) "
                f"over the same student without a teacher, {len(diffs)} seeds")
    return Verdict(kd.candidate.name, base.candidate.name, metric, diff, ci, len(diffs), sentence)


def metric_label(metric: str) -> str:
    return "val IoU" if "iou" in metric else "val Dice"


def format_confirmation(confirmed: list[Confirmed], metric: str, maximize: bool = True) -> str:
    """The console table: one line per configuration, best confirmed mean first."""
    lines = [f"confirmation ({metric_label(metric)}: mean and 95% CI over seeds, each run retrained from scratch "
             f"at full budget; 'search' is the single-seed search value)",
             f"{'config':<12}{'arm':<10}{'search':>7}{'mean':>8}  {'95% CI':<17}{'per seed':<26}params"]
    for c in rank_confirmed(confirmed, maximize):
        ci = f"[{c.ci95[0]:.3f}, {c.ci95[1]:.3f}]"
        per_seed = " ".join(f"{v:.3f}" for v in c.values)
        params = " ".join(f"{k.rsplit('@', 1)[-1]}={_short(v)}" for k, v in sorted(c.candidate.params.items()))
        lines.append(f"{c.candidate.name:<12}{c.candidate.arm:<10}{c.candidate.search_value:>7.3f}{c.mean:>8.4f}  "
                     f"{ci:<17}{per_seed:<26}{params}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
