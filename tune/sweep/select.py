"""Stage 3 of a sweep, select: the best configurations of the search are retrained from scratch at full
budget over several seeds (as Ray trials, resumable like the search) and ranked by their mean.

A single-seed ranking cannot tell apart trials that differ by less than seed noise; a mean over seeds can.
"""
from __future__ import annotations

import math

from ray import tune

from core.config import TrainConfig
from core.errors import UserError
from tune.objective import Objective
from tune.records import CONFIRM_DIRNAME, Candidate, Confirmed, TrialRow, TrialState, relative
from tune.sampling import candidate_config, run_candidate
from tune.sweep.ray_compat import recorded_trials
from tune.sweep.runtime import SweepInterrupted, SweepRun, run_config, trainable_for


def choose_candidates(rows: list[TrialRow], top_k: int, include_baseline: bool) -> list[Candidate]:
    """The `top_k` best KD configurations of the search and the best baseline one (rows ranked best first).
    Trials that errored, diverged or were interrupted are never candidates; ASHA-stopped ones are."""
    usable = [r for r in rows if r.usable]
    chosen = []
    for arm, limit in (("kd", top_k), ("baseline", 1 if include_baseline else 0)):
        for i, row in enumerate([r for r in usable if r.arm == arm][:limit], 1):
            chosen.append(Candidate(f"{arm}-{i}", row.trial_id, row.sampled, row.objective, row.epochs))
    return chosen


def seeds_for(base_seed: int, n: int) -> list[int]:
    return [base_seed + i for i in range(n)]


def select(run: SweepRun, base: TrainConfig, rows: list[TrialRow], callbacks: list) -> list[Confirmed]:
    """Retrain the candidates `confirm.seeds` times each; returns one `Confirmed` per candidate."""
    space, paths = run.space, run.paths
    candidates = choose_candidates(rows, space.confirm.top_k, space.has_control)
    if not any(c.arm == "kd" for c in candidates) and space.distillation:
        raise UserError(f"{paths.sweep_dir}: no KD trial of the search ended usable; see leaderboard.csv")
    seeds = seeds_for(space.base_config().seed, space.confirm.seeds)
    print(f"\nconfirming {len(candidates)} configurations x {len(seeds)} seeds ({', '.join(map(str, seeds))}) at "
          f"{space.asha.max_t} epochs: " + ", ".join(f"{c.name} (trial {c.trial_id})" for c in candidates))
    trainable = trainable_for(run, base)
    if tune.Tuner.can_restore(paths.confirm):
        tuner = tune.Tuner.restore(paths.confirm, trainable=trainable, resume_errored=True)
    else:
        grid = [candidate_config(c.name, c.sampled) for c in candidates]
        tuner = tune.Tuner(trainable, param_space={"candidate": tune.grid_search(grid),
                                                   "seed": tune.grid_search(seeds)},
                           tune_config=tune.TuneConfig(max_concurrent_trials=space.search.max_concurrent_trials,
                                                       reuse_actors=space.search.reuse_actors),
                           run_config=run_config(run, CONFIRM_DIRNAME, callbacks))
    tuner.fit()
    trials = recorded_trials(paths.confirm)
    ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    if ended < len(trials) or len(trials) < len(candidates) * len(seeds):
        raise SweepInterrupted(f"{ended} of {len(candidates) * len(seeds)} confirmation runs ended")
    return [confirmed_runs(c, seeds, trials, space.objective, run) for c in candidates]


def confirmed_runs(candidate: Candidate, seeds: list[int], trials: list[TrialState], objective: Objective,
                   run: SweepRun) -> Confirmed:
    """A candidate's seed runs read back from Ray's records; a failed or diverged seed counts as NaN."""
    runs = {seed: t for t in trials for name, seed in [run_candidate(t.config)] if name == candidate.name}
    values, dice, checkpoints, ids = [], [], [], []
    for s in seeds:
        t = runs[s]
        ok = t.status == "TERMINATED" and not t.last_result.get("diverged")
        values.append(objective.value(t.last_result) if ok else math.nan)
        dice.append(float(t.last_result.get("best_val_dice", math.nan)) if ok else math.nan)
        checkpoints.append(relative(t.checkpoint_path, run.paths.sweep_dir) if ok else "")
        ids.append(t.trial_id)
    return Confirmed(candidate, seeds, values, dice, checkpoints, ids)
