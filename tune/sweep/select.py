"""Stage 3 of a sweep, select: the best configurations of each arm's search are retrained from scratch at
full budget over selection seeds (as Ray trials, resumable like the search) and ranked by their mean.

A single-seed ranking cannot tell apart trials that differ by less than seed noise; a mean over seeds can.
The seeds are disjoint from the search's seed and from the verdict's (tune/sweep/verdict.py): the runs that
chose a configuration never also report how good it is.
"""

from __future__ import annotations

import math

from ray import tune

from core.config import TrainConfig
from core.errors import UserError
from tune.objective import Objective
from tune.records import Candidate, Confirmed, TrialRow, TrialState, arm_label, relative
from tune.sampling import candidate_config, run_candidate
from tune.sweep.console import stage_callbacks
from tune.sweep.ray_compat.experiment_state import recorded_trials
from tune.sweep.ray_compat.tuner_restore import restore_tuner
from tune.sweep.runtime import SweepInterrupted, SweepRun, run_config, trainable_for, wandb_callbacks
from tune.sweep.state_files import KeepGoodStateCopies, prepare_restore, restorable


def seed_plan(search_seed: int, selection: int, verdict: int) -> tuple[list[int], list[int]]:
    """(selection seeds, verdict seeds): the next seeds after the search's, never one of them twice."""
    return ([search_seed + 1 + i for i in range(selection)], [search_seed + 1 + selection + i for i in range(verdict)])


def common_budget(rows: list[TrialRow], top_k: int, milestones: list[int]) -> int:
    """The highest epoch budget (an ASHA milestone, or max_t) that `top_k` of the usable trials reached
    (all of them when fewer): candidates are compared there, never a 40-epoch value with a 5-epoch one."""
    usable = [r for r in rows if r.usable]
    need = min(top_k, len(usable))
    reached = [m for m in sorted(milestones) if sum(not math.isnan(r.value_at(m)) for r in usable) >= need]
    return reached[-1] if reached else min(milestones)


def ranked_at(rows: list[TrialRow], budget: int, objective: Objective) -> list[TrialRow]:
    """The trials of `rows` with a value at epoch `budget`, best first (ties in trial-id order)."""
    return objective.ranked(
        [r for r in rows if not math.isnan(r.value_at(budget))], lambda r: r.value_at(budget), tie=lambda r: r.trial_id
    )


def choose_candidates(
    rows: list[TrialRow],
    top_k: int,
    milestones: list[int],
    objective: Objective,
    arms: tuple[str, ...] = ("kd", "baseline"),
    front_of: str | None = None,
    mode: str = "distillation",
) -> list[Candidate]:
    """The `top_k` best configurations of each arm, ranked by the objective at the highest budget they all
    reached. Trials that errored, diverged or were interrupted are never candidates; ASHA-stopped ones are.
    With a deploy target (`front_of`: the base's student backbone), also one configuration per student
    backbone for the Dice–latency front (`front_picks`), marked `front`. `mode` (the space's) names them:
    kd-1 in a distillation space, baseline-1 or teacher-1 in one without a teacher (`arm_label`)."""
    chosen, distilled = [], mode == "distillation"
    for arm in arms:
        mine = [r for r in rows if r.arm == arm and r.usable]
        if not mine:
            continue
        budget = common_budget(mine, top_k, milestones)
        for i, row in enumerate(ranked_at(mine, budget, objective)[:top_k], 1):
            name = f"{arm_label(arm, mode)}-{i}"
            chosen.append(Candidate(name, row.trial_id, row.sampled, row.value_at(budget), budget, False, distilled))
    if front_of is None:
        return chosen
    by_trial = {c.trial_id: c for c in chosen}
    for name, (row, budget) in front_picks([r for r in rows if r.arm in arms], milestones, objective, front_of):
        if row.trial_id in by_trial:
            by_trial[row.trial_id].front = True
        else:
            chosen.append(
                Candidate(
                    f"front-{name}",
                    row.trial_id,
                    row.sampled,
                    row.value_at(budget),
                    budget,
                    True,
                    mode == "distillation",
                )
            )
    return chosen


def front_picks(
    rows: list[TrialRow], milestones: list[int], objective: Objective, base_backbone: str
) -> list[tuple[str, tuple[TrialRow, int]]]:
    """Per student backbone, its front entry: the best of its usable trials (either arm) at the highest budget
    one of them reached, chosen on the search's values, so that the selection seeds that then estimate it
    never also chose it; one configuration per backbone, whatever the arms' top-k hold (ASHA may have
    stopped every trial of a slower-learning backbone early: it is on the front all the same)."""

    def backbone(row: TrialRow) -> str:
        return row.params.get("student_backbone", base_backbone)

    usable = [r for r in rows if r.usable]
    out = []
    for name in sorted({backbone(r) for r in usable}):
        theirs = [r for r in usable if backbone(r) == name]
        budget = common_budget(theirs, 1, milestones)
        ranked = ranked_at(theirs, budget, objective)
        if ranked:
            out.append((name, (ranked[0], budget)))
    return out


def select(run: SweepRun, base: TrainConfig, rows: list[TrialRow]) -> list[Confirmed]:
    """Retrain each arm's candidates over the selection seeds; returns one `Confirmed` per candidate."""
    space, confirm = run.space, run.space.confirm
    assert confirm is not None, "the pipeline runs selection only with confirm settings"
    milestones = sorted(set(space.asha.milestones()) | {space.asha.max_t})
    front_of = space.base_config().student_backbone if space.deploy else None
    candidates = choose_candidates(rows, confirm.top_k, milestones, space.objective, front_of=front_of, mode=space.mode)
    if not any(c.arm == "kd" for c in candidates):
        raise UserError(f"{run.paths.sweep_dir}: no trial of the search ended usable; see leaderboard.csv")
    seeds, _ = seed_plan(base.seed, confirm.seeds, confirm.verdict_seeds)
    print(
        f"\nselection: {len(candidates)} configurations x {len(seeds)} seeds ({', '.join(map(str, seeds))}) "
        f"at {space.asha.max_t} epochs: "
        + ", ".join(
            f"{c.name} (trial {c.trial_id}, {c.search_value:.3f} at epoch {c.search_epochs})" for c in candidates
        )
    )
    return retrain(run, base, candidates, seeds, run.paths.confirm, "confirm")


def retrain(
    run: SweepRun, base: TrainConfig, candidates: list[Candidate], seeds: list[int], experiment: str, job_type: str
) -> list[Confirmed]:
    """Every candidate trained from scratch with every seed, as one resumable Ray experiment."""
    space = run.space
    trainable = trainable_for(run, base)
    callbacks = [
        *wandb_callbacks(run, job_type, base),
        KeepGoodStateCopies(),
        *stage_callbacks("selection" if job_type == "confirm" else job_type, space.objective.metric),
    ]
    if restorable(experiment):
        for note in prepare_restore(run.paths.sweep_dir, experiment, None, space.objective.metric, space.asha.max_t):
            print(note)
        tuner = restore_tuner(experiment, trainable, callbacks)
    else:
        grid = [candidate_config(c.name, c.sampled) for c in candidates]
        tuner = tune.Tuner(
            trainable,
            param_space={"candidate": tune.grid_search(grid), "seed": tune.grid_search(seeds)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=space.search.max_concurrent_trials, reuse_actors=space.search.reuse_actors
            ),
            run_config=run_config(run, experiment.rstrip("/").rsplit("/", 1)[-1], callbacks),
        )
    with run.signals.during_fit():
        tuner.fit()
    trials = recorded_trials(experiment)
    ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if ended < len(trials) or len(trials) < len(candidates) * len(seeds):
        raise SweepInterrupted(f"{ended} of {len(candidates) * len(seeds)} {job_type} runs ended")
    return [seed_runs(c, seeds, trials, space.objective, run) for c in candidates]


def seed_runs(
    candidate: Candidate, seeds: list[int], trials: list[TrialState], objective: Objective, run: SweepRun
) -> Confirmed:
    """A candidate's seed runs read back from Ray's records; a failed or diverged seed counts as NaN."""
    runs = {key[1]: t for t in trials if (key := run_candidate(t.config)) is not None and key[0] == candidate.name}
    values, dice, checkpoints, ids = [], [], [], []
    for s in seeds:
        t = runs[s]
        ok = t.status == "TERMINATED" and not t.last_result.get("diverged")
        values.append(objective.value(t.last_result) if ok else math.nan)
        dice.append(float(t.last_result.get("best_val_dice", math.nan)) if ok else math.nan)
        checkpoints.append(relative(t.checkpoint_path, run.paths.sweep_dir) if ok else "")
        ids.append(t.trial_id)
    return Confirmed(candidate, seeds, values, dice, checkpoints, ids)
