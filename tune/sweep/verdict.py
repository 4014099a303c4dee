"""Stage 4 of a sweep, verdict: the selected configurations retrained on fresh seeds. The winner's estimate
is its mean there; did the teacher help is the best distillation configuration minus the baseline of the
same student, paired by seed, read as one of three outcomes with what the seeds could have detected.

Fresh seeds matter: the selection runs chose the winner, so their values are a maximum over candidates and
overstate it; seeds no run has used before give an unbiased estimate and an honest test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import TrainConfig
from core.errors import UserError
from tune.objective import Objective
from tune.records import Candidate, Confirmed, rank_confirmed
from tune.sampling import Sampled
from tune.statistics import mde80, mean_ci95
from tune.sweep.runtime import SweepRun
from tune.sweep.select import retrain, seed_plan

OUTCOMES = ("helped", "hurt", "inconclusive", "none")


@dataclass
class Verdict:
    """Best KD configuration minus the baseline of the same student, paired by verdict seed."""

    kd: str
    baseline: str
    student: str
    metric: str
    outcome: str  # one of OUTCOMES
    diff_mean: float
    ci95: tuple[float, float]
    n_valid: int  # pairs where both runs ended with a value
    mde80: float  # the difference these pairs detect with 80% power (t-based)
    verdict_seeds: list[int]
    excluded: list[int] = field(default_factory=list)  # seeds whose KD or baseline run failed or diverged
    sentence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95)}


@dataclass
class VerdictRuns:
    """What the verdict stage measured: every configuration's runs on the verdict seeds, the winner's among
    them, and the verdict (None without a control arm)."""

    runs: list[Confirmed]
    winner: Confirmed
    verdict: Verdict | None


def backbone(sampled: Sampled, base: TrainConfig) -> str:
    return sampled.params.get("student_backbone", base.student_backbone)


def partner_for(kd: Confirmed, confirmed: list[Confirmed], objective: Objective, base: TrainConfig) -> Candidate | None:
    """The baseline the KD configuration is judged against: the best selected baseline of the same student;
    without one, that student trained without a teacher at the best selected baseline's other settings."""
    student = backbone(kd.candidate.sampled, base)
    baselines = [c for c in rank_confirmed(confirmed, objective) if c.candidate.arm == "baseline"]
    same = next((c for c in baselines if backbone(c.candidate.sampled, base) == student), None)
    if same is not None:
        return same.candidate
    if not baselines:
        return None
    best = baselines[0].candidate
    # Conditional parameters belong to the other backbone's branch: they do not carry over.
    values = {k: v for k, v in best.sampled.values.items() if "@" not in k}
    values["student_backbone"] = student
    return Candidate(f"baseline-{student}", best.trial_id, Sampled("baseline", values), math.nan, 0)


def verdict_stage(run: SweepRun, base: TrainConfig, confirmed: list[Confirmed]) -> VerdictRuns:
    """Retrain the winner, the best KD configuration and its baseline partner on the verdict seeds."""
    objective, confirm = run.space.objective, run.space.confirm
    assert confirm is not None, "the pipeline runs the verdict only after a selection"
    ranked = rank_confirmed(confirmed, objective)
    winner = ranked[0]
    if math.isnan(winner.mean):
        raise UserError(f"{run.paths.sweep_dir}: every selection run failed; see {run.paths.confirm}")
    kd = next((c for c in ranked if c.candidate.arm == "kd" and not math.isnan(c.mean)), None)
    partner = partner_for(kd, confirmed, objective, base) if kd is not None else None
    compared = [kd.candidate, partner] if kd is not None and partner is not None else []
    chosen = {c.name: c for c in [winner.candidate, *compared]}
    _, seeds = seed_plan(base.seed, confirm.seeds, confirm.verdict_seeds)
    print(
        f"\nverdict: {len(chosen)} configurations x {len(seeds)} fresh seeds ({', '.join(map(str, seeds))}): "
        + ", ".join(chosen)
    )
    runs = retrain(run, base, list(chosen.values()), seeds, run.paths.verdict, "verdict")
    by_name = {r.candidate.name: r for r in runs}
    result = None
    if kd is not None and partner is not None:
        student = backbone(kd.candidate.sampled, base)
        result = paired_verdict(by_name[kd.candidate.name], by_name[partner.name], objective, student)
    return VerdictRuns(runs, by_name[winner.candidate.name], result)


def paired_verdict(kd: Confirmed, baseline: Confirmed, objective: Objective, student: str) -> Verdict:
    """KD minus baseline over the seeds where both ended with a value; helped, hurt, inconclusive (with
    the effect these seeds could detect) or none (fewer than two valid pairs, or no variance)."""
    by_seed = dict(zip(baseline.seeds, baseline.values))
    pairs = [(s, v, by_seed.get(s, math.nan)) for s, v in zip(kd.seeds, kd.values)]
    valid = [(s, a - b) for s, a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    excluded = [s for s, a, b in pairs if math.isnan(a) or math.isnan(b)]
    diffs = [d for _, d in valid]
    diff, ci = mean_ci95(diffs)
    spread = statistics.stdev(diffs) if len(diffs) >= 2 else math.nan
    verdict = Verdict(
        kd.candidate.name,
        baseline.candidate.name,
        student,
        objective.metric,
        "none",
        diff,
        ci,
        len(diffs),
        mde80(spread, len(diffs)),
        list(kd.seeds),
        excluded,
    )
    if len(diffs) < 2:
        reason = f"only {len(diffs)} seed pair{'s' if len(diffs) != 1 else ''} ended with a value"
    elif spread == 0:
        reason = f"the {len(diffs)} paired differences are identical ({diff:+.4f}): zero variance, no interval"
        verdict.ci95 = (math.nan, math.nan)
    else:
        lo, hi = sorted((objective.gain(ci[0]), objective.gain(ci[1])))
        verdict.outcome = "helped" if lo > 0 else "hurt" if hi < 0 else "inconclusive"
        reason = ""
    verdict.sentence = sentence(verdict, objective, reason)
    return verdict


def sentence(v: Verdict, objective: Objective, reason: str) -> str:
    dropped = (
        (
            f"; seed{'s' if len(v.excluded) > 1 else ''} {', '.join(map(str, v.excluded))} excluded "
            f"(a run failed or diverged)"
        )
        if v.excluded
        else ""
    )
    if v.outcome == "none":
        return f"no verdict on {v.student}: {reason}{dropped}"
    effect = (
        f"{v.diff_mean:+.3f} {objective.label} (95% CI {v.ci95[0]:+.3f} … {v.ci95[1]:+.3f}) on {v.student}, "
        f"{v.n_valid} seeds{dropped}"
    )
    if v.outcome == "inconclusive":
        return f"inconclusive: {effect} — {v.n_valid} seeds could detect a difference of ±{v.mde80:.3f} with 80% power"
    return f"distillation {v.outcome}: {effect}"
