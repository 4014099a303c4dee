"""Stage 4 of a sweep, verdict: the selected configurations retrained on fresh seeds. The winner's estimate is
its mean there; "does the teacher help?" is answered by the same settings trained with and without the
teacher, paired by seed (`confirm.verdict`):

- `factorial` (default): the best distillation configuration without its teacher, and the tuned baseline of
  the same student with the distillation winner's teacher settings added: the teacher's main effect over
  both settings, and the interaction (does its effect depend on the settings?);
- `ablation`: the first pair only;
- `tuned`: the distillation winner against the separately tuned baseline. That difference also holds what
  each arm's search happened to find (a winner's curse in configuration quality that fresh seeds cannot
  remove), so the other designs report it only as a descriptive second line.

Four outcomes: helped or hurt (the 95% interval excludes 0), no effect (the 90% interval lies inside
±`confirm.margin`: two one-sided tests), or inconclusive, with the difference these seeds could detect.
Fresh seeds matter: the selection runs chose the winner, so their values overstate it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import TrainConfig, teacher_only_keys
from core.errors import UserError
from tune.objective import Objective
from tune.records import Candidate, Confirmed, rank_confirmed
from tune.report.format import interval
from tune.sampling import Sampled, param_name
from tune.statistics import mde80, mean_ci
from tune.sweep.runtime import SweepRun
from tune.sweep.select import retrain, seed_plan

OUTCOMES = ("helped", "hurt", "no effect", "inconclusive", "no verdict")
NO_TEACHER, WITH_TEACHER = ".no-teacher", ".with-teacher"  # suffixes of the configurations made for the verdict


@dataclass
class Verdict:
    """The teacher's effect on the selected student, paired by verdict seed (`design`: confirm.verdict)."""

    design: str
    student: str
    metric: str
    outcome: str  # one of OUTCOMES
    effect: float  # mean over seeds of (with teacher - without), averaged over the pairs of settings
    ci95: tuple[float, float]
    ci90: tuple[float, float]  # the two one-sided tests' interval: inside ±margin is "no effect"
    margin: float
    n_valid: int  # seeds where every run of every pair ended with a value
    mde80: float  # the difference these seeds detect with 80% power (t-based)
    verdict_seeds: list[int]
    pairs: list[list[str]]  # [with teacher, without] configuration names: one per setting compared
    kd: str  # the distillation winner
    baseline: str  # the tuned baseline it is compared with ("" without a control arm)
    interaction: dict[str, Any] | None = None  # factorial: effect at the KD settings minus at the baseline's
    tuned: dict[str, Any] | None = None  # the KD winner minus the tuned baseline: descriptive, not a test
    excluded: list[int] = field(default_factory=list)  # seeds where a run of a pair failed or diverged
    sentence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95), "ci90": list(self.ci90)}


@dataclass
class VerdictPlan:
    """Which configurations the verdict seeds train, and which pairs of them measure the teacher."""

    design: str  # the design run: factorial without a baseline arm falls back to ablation
    student: str
    kd: Candidate
    partner: Candidate | None  # the tuned baseline of the same student (None without a control arm)
    pairs: list[tuple[Candidate, Candidate]]  # (with teacher, without)

    def candidates(self, winner: Candidate) -> list[Candidate]:
        """Every configuration to retrain, each once: the winner first."""
        chosen = {c.name: c for c in [winner, self.kd, *([self.partner] if self.partner else [])]}
        for pair in self.pairs:
            chosen.update({c.name: c for c in pair})
        return list(chosen.values())


@dataclass
class VerdictRuns:
    """What the verdict stage measured: every configuration's runs on the verdict seeds, the winner's among
    them, the plan, and the verdict (None where no comparison was possible)."""

    runs: list[Confirmed]
    winner: Confirmed
    verdict: Verdict | None
    plan: VerdictPlan | None = None


def backbone(sampled: Sampled, base: TrainConfig) -> str:
    return sampled.params.get("student_backbone", base.student_backbone)


def without_teacher(kd: Candidate) -> Candidate:
    """The same configuration trained without a teacher: every shared TrainConfig key equal, the teacher-only
    keys dropped (Sampled.apply then sets `mode: baseline` and no teacher checkpoint)."""
    values = {k: v for k, v in kd.sampled.values.items() if param_name(k) not in teacher_only_keys()}
    return Candidate(f"{kd.name}{NO_TEACHER}", kd.trial_id, Sampled("baseline", values), math.nan, 0)


def with_teacher(baseline: Candidate, kd: Candidate) -> Candidate:
    """The baseline's configuration trained with the teacher, at the distillation winner's teacher settings
    (α, T and every other teacher-only key it sampled)."""
    teacher = {k: v for k, v in kd.sampled.values.items() if param_name(k) in teacher_only_keys()}
    values = {k: v for k, v in baseline.sampled.values.items() if param_name(k) not in teacher_only_keys()}
    sampled = Sampled("kd", {**values, **teacher})
    return Candidate(f"{baseline.name}{WITH_TEACHER}", baseline.trial_id, sampled, math.nan, 0)


def partner_for(kd: Confirmed, confirmed: list[Confirmed], objective: Objective, base: TrainConfig) -> Candidate | None:
    """The tuned baseline of the KD configuration's student: the best selected baseline of that student;
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


def plan_verdict(
    confirmed: list[Confirmed], objective: Objective, base: TrainConfig, design: str
) -> VerdictPlan | None:
    """The verdict's configurations: None without a selected distillation configuration that ended with a
    value, or for the `tuned` design without a baseline arm."""
    kd = next((c for c in rank_confirmed(confirmed, objective) if c.candidate.teacher and not math.isnan(c.mean)), None)
    if kd is None:
        return None
    partner = partner_for(kd, confirmed, objective, base)
    student = backbone(kd.candidate.sampled, base)
    if design == "tuned":
        return VerdictPlan(design, student, kd.candidate, partner, [(kd.candidate, partner)]) if partner else None
    pairs = [(kd.candidate, without_teacher(kd.candidate))]
    if design == "factorial" and partner is not None:
        pairs.append((with_teacher(partner, kd.candidate), partner))
    return VerdictPlan("factorial" if len(pairs) == 2 else "ablation", student, kd.candidate, partner, pairs)


def no_verdict_reason(confirmed: list[Confirmed], design: str) -> str:
    """Why a distillation sweep's verdict stage had nothing to compare (plan_verdict gave None)."""
    teacher = [c for c in confirmed if c.candidate.teacher]
    if not teacher or all(math.isnan(c.mean) for c in teacher):
        names = ", ".join(c.candidate.name for c in teacher) or "none selected"
        return f"every selection run of the distillation configurations ({names}) failed or diverged"
    return f"the {design} design compares with the tuned baseline, and no baseline configuration was selected"


def verdict_stage(run: SweepRun, base: TrainConfig, confirmed: list[Confirmed]) -> VerdictRuns:
    """Retrain the winner and the verdict's configurations on the verdict seeds; judge the teacher."""
    objective, confirm = run.space.objective, run.space.confirm
    assert confirm is not None, "the pipeline runs the verdict only after a selection"
    winner = rank_confirmed(confirmed, objective)[0]
    if math.isnan(winner.mean):
        raise UserError(f"{run.paths.sweep_dir}: every selection run failed; see {run.paths.confirm}")
    plan = plan_verdict(confirmed, objective, base, confirm.verdict)
    if plan is None and run.space.distillation:
        print(f"no verdict on the teacher: {no_verdict_reason(confirmed, confirm.verdict)}; see {run.paths.confirm}")
    chosen = plan.candidates(winner.candidate) if plan else [winner.candidate]
    _, seeds = seed_plan(base.seed, confirm.seeds, confirm.verdict_seeds)
    print(
        f"\nverdict ({plan.design if plan else 'no comparison'}): {len(chosen)} configurations x {len(seeds)} fresh "
        f"seeds ({', '.join(map(str, seeds))}): " + ", ".join(c.name for c in chosen)
    )
    runs = retrain(run, base, chosen, seeds, run.paths.verdict, "verdict")
    by_name = {r.candidate.name: r for r in runs}
    result = judge(plan, by_name, objective, confirm.margin) if plan else None
    return VerdictRuns(runs, by_name[winner.candidate.name], result, plan)


def judge(plan: VerdictPlan, runs: dict[str, Confirmed], objective: Objective, margin: float) -> Verdict:
    """The teacher's effect over the plan's pairs, paired by seed: per seed the mean over the pairs of (with
    teacher - without); its interval from those per-seed means (the pairs of one seed share it)."""
    seeds = runs[plan.kd.name].seeds
    per_pair = [_by_seed(runs[a.name], runs[b.name]) for a, b in plan.pairs]
    valid = [s for s in seeds if all(s in d for d in per_pair)]
    per_seed = [statistics.fmean(d[s] for d in per_pair) for s in valid]
    effect, ci95 = mean_ci(per_seed, 0.95)
    _, ci90 = mean_ci(per_seed, 0.90)
    spread = statistics.stdev(per_seed) if len(per_seed) >= 2 else math.nan
    verdict = Verdict(
        plan.design,
        plan.student,
        objective.metric,
        "no verdict",
        effect,
        ci95,
        ci90,
        margin,
        len(valid),
        mde80(spread, len(valid)),
        list(seeds),
        [[a.name, b.name] for a, b in plan.pairs],
        plan.kd.name,
        plan.partner.name if plan.partner else "",
        excluded=[s for s in seeds if s not in valid],
    )
    if len(plan.pairs) == 2:
        difference, interval = mean_ci([per_pair[0][s] - per_pair[1][s] for s in valid], 0.95)
        verdict.interaction = {"effect": difference, "ci95": list(interval)}
    if plan.partner is not None and plan.design != "tuned":
        diff, interval = mean_ci(list(_by_seed(runs[plan.kd.name], runs[plan.partner.name]).values()), 0.95)
        verdict.tuned = {"kd": plan.kd.name, "baseline": plan.partner.name, "diff": diff, "ci95": list(interval)}
    reason = ""
    if len(valid) < 2:
        reason = f"only {len(valid)} seed{'s' if len(valid) != 1 else ''} ended with a value in every run compared"
    elif spread == 0:
        reason = f"the {len(valid)} paired differences are identical ({effect:+.4f}): zero variance, no interval"
        verdict.ci95 = verdict.ci90 = (math.nan, math.nan)
    else:
        verdict.outcome = outcome(verdict.ci95, verdict.ci90, margin, objective)
    verdict.sentence = sentence(verdict, objective, reason)
    return verdict


def outcome(ci95: tuple[float, float], ci90: tuple[float, float], margin: float, objective: Objective) -> str:
    """No effect when the 90% interval lies inside ±margin (equivalence: two one-sided tests at 5%), even if
    the 95% interval excludes 0 (a difference too small to matter); else helped or hurt when the 95% interval
    excludes 0; else inconclusive."""
    if -margin < ci90[0] and ci90[1] < margin:
        return "no effect"
    lo, hi = sorted((objective.gain(ci95[0]), objective.gain(ci95[1])))
    return "helped" if lo > 0 else "hurt" if hi < 0 else "inconclusive"


def _by_seed(a: Confirmed, b: Confirmed) -> dict[int, float]:
    """a - b per seed where both ended with a value."""
    theirs = dict(zip(b.seeds, b.values))
    return {
        s: v - theirs[s]
        for s, v in zip(a.seeds, a.values)
        if not math.isnan(v) and not math.isnan(theirs.get(s, math.nan))
    }


def sentence(v: Verdict, objective: Objective, reason: str = "") -> str:
    """The verdict in one line, leading with the teacher (the `tuned` design: with the tuned comparison)."""
    dropped = (
        f"; seed{'s' if len(v.excluded) > 1 else ''} {', '.join(map(str, v.excluded))} excluded "
        "(a run failed or diverged)"
        if v.excluded
        else ""
    )
    if v.outcome == "no verdict":
        return f"no verdict on {v.student}: {reason}{dropped}"
    label = objective.label
    settings = f"{v.n_valid} seeds" + (f" × {len(v.pairs)} settings" if len(v.pairs) > 1 else "") + dropped
    effect95 = f"{v.effect:+.3f} {label} (95% CI {interval(v.ci95)}), {settings}"
    effect90 = f"{v.effect:+.3f} {label} (90% CI {interval(v.ci90)}), {settings}"
    power = (
        f" — these seeds could detect a difference of ±{v.mde80:.3f} with 80% power; no effect needs the 90% CI "
        f"({interval(v.ci90)}) inside ±{v.margin:.3f}"
    )
    if v.design == "tuned":
        caveat = " — this includes what each search found; it is not a test of the teacher"
        return {
            "helped": f"distillation helped against the separately tuned baseline of {v.student}: {effect95}{caveat}",
            "hurt": f"distillation hurt against the separately tuned baseline of {v.student}: {effect95}{caveat}",
            "no effect": f"no difference beyond ±{v.margin:.3f} between distillation and the separately tuned "
            f"baseline of {v.student}: {effect90}{caveat}",
            "inconclusive": f"inconclusive between distillation and the separately tuned baseline of {v.student}: "
            f"{effect95}{power}{caveat}",
        }[v.outcome]
    return {
        "helped": f"the teacher helped {v.student} at the selected settings: {effect95}",
        "hurt": f"the teacher hurt {v.student} at the selected settings: {effect95}",
        "no effect": f"the teacher made no difference to {v.student} at the selected settings (within "
        f"±{v.margin:.3f} {label}): {effect90}",
        "inconclusive": f"inconclusive whether the teacher helps {v.student} at the selected settings: "
        f"{effect95}{power}",
    }[v.outcome]
