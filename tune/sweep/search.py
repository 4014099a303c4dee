"""Stage 2 of a sweep, search: Optuna's TPE proposes (its study a journal file in the sweep folder), ASHA
stops, Ray runs; the result is the leaderboard, one ranked `TrialRow` per trial, in search.json.

Each arm (distillation, and the no-teacher control) is searched by a Tuner of its own, one after the other,
with the same budget rules: its own study, so TPE learns only from its own arm's trials, and its own ASHA,
so a baseline trial is only ever stopped by comparison with other baseline trials.
"""

from __future__ import annotations

import math
from pathlib import Path

from ray import tune

from core.config import TrainConfig
from core.errors import UserError
from tune.objective import Objective
from tune.records import (
    LEADERBOARD_FILE,
    SEARCH_FILE,
    TrialRow,
    TrialState,
    arm_label,
    read_search,
    relative,
    write_leaderboard,
    write_search,
)
from tune.sampling import DefineByRun, Sampled
from tune.sweep.console import stage_callbacks
from tune.sweep.ray_compat.experiment_state import recorded_trials
from tune.sweep.ray_compat.tuner_restore import restore_tuner
from tune.sweep.runtime import SweepInterrupted, SweepRun, asha_scheduler, run_config, trainable_for, wandb_callbacks
from tune.sweep.searcher import TruthfulOptunaSearch
from tune.sweep.state_files import (
    KeepGoodStateCopies,
    journal_disagreements,
    missing_rows,
    prepare_restore,
    reconcile_journal,
    restorable,
)
from tune.sweep.study import INFEASIBLE_ATTR, LATENCY_ATTR, journal_storage, load_study, tpe_sampler


def search(run: SweepRun, base: TrainConfig) -> list[TrialRow]:
    """Run (or resume) every arm's search; returns the leaderboard's rows, best first. Raises
    SweepInterrupted unless every trial ended."""
    space, paths = run.space, run.paths
    trials = []
    for arm, n in space.arm_trials().items():
        experiment = paths.search_experiment(arm)
        search_arm(run, base, arm, n, experiment)
        recorded = recorded_trials(experiment)
        for note in journal_disagreements(
            paths.sweep_dir, run.study_name(arm), recorded, space.objective.metric, space.asha.max_t, experiment
        ):
            print(note)
        trials += recorded
    rows = leaderboard(trials, space.objective, space.asha.max_t, paths.sweep_dir)
    trained = len(rows)
    rows += infeasible_rows(run, trained)
    write_leaderboard(rows, paths.sweep_dir / LEADERBOARD_FILE, space.mode)
    if any(r.end == "interrupted" for r in rows) or trained < space.search.num_samples:
        raise SweepInterrupted(
            f"{sum(r.end != 'interrupted' for r in rows[:trained])} of {space.search.num_samples} search trials ended"
        )
    write_search(rows, paths.sweep_dir)
    return rows


def infeasible_rows(run: SweepRun, ranked: int) -> list[TrialRow]:
    """The proposals over the deploy target's latency budget, which only the Optuna study holds (they were
    never trained), as leaderboard rows ranked after the `ranked` trials."""
    space = run.space
    if space.deploy is None or space.deploy.latency_budget_ms is None:
        return []
    rows: list[TrialRow] = []
    nan = math.nan
    for arm in space.arm_trials():
        for t in load_study(run.paths.sweep_dir, run.study_name(arm)).get_trials(deepcopy=False):
            if not t.user_attrs.get(INFEASIBLE_ATTR):
                continue
            latency = t.user_attrs.get(LATENCY_ATTR)
            rows.append(
                TrialRow(
                    trial_id=f"{arm}-infeasible-{t.number}",
                    sampled=Sampled(arm, dict(t.params)),
                    end="infeasible",
                    epochs=0,
                    objective=nan,
                    best_val_dice=nan,
                    best_val_iou=nan,
                    best_epoch=0,
                    last_val_dice=nan,
                    latency_ms=latency,
                    rank=ranked + len(rows) + 1,
                    error=f"{latency:.1f} ms at {space.deploy.describe()}: over budget, not trained",
                )
            )
    return rows


def completed_search(run: SweepRun) -> list[TrialRow] | None:
    """The rows of a search stage that completed earlier (search.json), checked against what is on disk;
    None where the search must run (again): never ran or was interrupted, search.json unreadable (rebuilt
    from Ray's records), or a trial's folder is gone (that trial runs again)."""
    space, paths = run.space, run.paths
    if not (paths.sweep_dir / SEARCH_FILE).is_file():
        return None
    try:
        rows = read_search(paths.sweep_dir)
    except UserError as err:
        print(f"{err}; rebuilding it from Ray's records of the search")
        return None
    gone = missing_rows(rows, paths.sweep_dir)
    if gone:
        print(f"trial folder gone: {', '.join(r.trial_id for r in gone)}; the search runs those trials again")
        return None
    for arm in space.arm_trials():
        experiment = paths.search_experiment(arm)
        for note in reconcile_journal(
            paths.sweep_dir,
            run.study_name(arm),
            recorded_trials(experiment),
            space.objective.metric,
            space.asha.max_t,
            experiment,
        ):
            print(note)
    print(f"search stage already complete ({len(rows)} trials); continuing")
    return rows


def search_arm(run: SweepRun, base: TrainConfig, arm: str, num_samples: int, experiment: str) -> None:
    """One arm's Tuner, new or restored; returns when its trials have ended (or Ctrl-C stopped it)."""
    # ASHA decides at its rungs: a checkpoint there means a stopped trial's checkpoint is where it stopped.
    trainable = trainable_for(run, base, run.space.asha.rungs())
    callbacks = [
        *wandb_callbacks(run, "trial", base),
        KeepGoodStateCopies(),
        *stage_callbacks(f"search {arm_label(arm, run.space.mode)}", run.space.objective.metric, run.space.asha.max_t),
    ]
    if restorable(experiment):
        for note in prepare_restore(
            run.paths.sweep_dir, experiment, run.study_name(arm), run.space.objective.metric, run.space.asha.max_t
        ):
            print(note)
        tuner = restore_tuner(experiment, trainable, callbacks, tune_config(run, arm, num_samples))
    else:
        name = experiment.rstrip("/").rsplit("/", 1)[-1]
        print(f"\nsearching arm {arm_label(arm, run.space.mode)}: {num_samples} trials")
        tuner = tune.Tuner(
            trainable, tune_config=tune_config(run, arm, num_samples), run_config=run_config(run, name, callbacks)
        )
    with run.signals.during_fit():
        tuner.fit()


def tune_config(run: SweepRun, arm: str, num_samples: int) -> tune.TuneConfig:
    """Optuna (journal-backed TPE on this arm's own study, told the truth about ASHA's stops) and this arm's
    own ASHA, on the space's objective."""
    space, objective = run.space, run.space.objective
    budget = space.deploy.latency_budget_ms if space.deploy else None
    searcher = TruthfulOptunaSearch(
        space=DefineByRun(space.parameters, arm),
        metric=objective.metric,
        mode=objective.mode,
        sampler=tpe_sampler(num_samples, space.search.seed),
        study_name=run.study_name(arm),
        storage=journal_storage(run.paths.sweep_dir),
        max_t=space.asha.max_t,
        arm=arm,
        wandb_runs=run.wandb_mode != "disabled",
        latency_ms=run.latency_ms(),
        budget_ms=budget,
        base_backbone=space.base_config().student_backbone,
    )
    return tune.TuneConfig(
        search_alg=searcher,
        scheduler=asha_scheduler(space),
        metric=objective.metric,
        mode=objective.mode,
        num_samples=num_samples,
        max_concurrent_trials=space.search.max_concurrent_trials,
        reuse_actors=space.search.reuse_actors,
    )


def trial_end(trial: TrialState, max_t: int) -> str:
    """How a trial ended, in the leaderboard's words (records.ENDS); epochs as ASHA counts them."""
    epochs = int(trial.last_result.get("epoch", 0) or 0)
    if trial.status == "ERROR":
        return "errored"
    if trial.last_result.get("diverged"):
        return "diverged"
    if trial.status != "TERMINATED":
        return "interrupted"
    return "finished" if epochs >= max_t else "stopped by ASHA"


def leaderboard(
    trials: list[TrialState], objective: Objective, max_t: int, sweep_dir: Path | None = None
) -> list[TrialRow]:
    """One row per trial, ranked by exactly the objective; unusable trials last."""
    rows = []
    for t in trials:
        m = t.last_result
        if "epoch" in m and objective.metric not in m:
            raise UserError(
                f"objective.metric '{objective.metric}': trial {t.trial_id} never reported it (it "
                f"reports {', '.join(sorted(k for k in m if 'val' in k))}); fix objective.metric "
                f"in the space"
            )
        rows.append(
            TrialRow(
                trial_id=t.trial_id,
                sampled=Sampled.from_ray(t.config),
                end=trial_end(t, max_t),
                epochs=int(m.get("epoch", 0) or 0),
                objective=objective.value(m),
                best_val_dice=float(m.get("best_val_dice", float("nan"))),
                best_val_iou=float(m.get("best_val_iou", float("nan"))),
                best_epoch=int(m.get("best_epoch", 0) or 0),
                last_val_dice=float(m.get("val_dice", float("nan"))),
                node_id=str(m.get("node_id", "")),
                gpus_assigned=float(m.get("gpus_assigned", 0.0) or 0.0),
                device=str(m.get("device", "")),
                error=t.error or str(m.get("error", "")),
                checkpoint=relative(t.checkpoint_path, sweep_dir),
                trial_dir=relative(t.path, sweep_dir),
                latency_ms=m.get("latency_ms"),
                curve={int(h["epoch"]): objective.value(h) for h in t.history if "epoch" in h},
            )
        )
    if sweep_dir is not None:
        for row in missing_rows(rows, sweep_dir):  # deleted while the search ran: never a candidate
            row.end, row.checkpoint = "missing", ""
            row.error = f"its folder {row.trial_dir} is gone; --resume trains it again"
    rows = objective.ranked(rows, lambda r: r.objective, usable=lambda r: r.usable, tie=lambda r: r.trial_id)
    for rank, row in enumerate(rows, 1):
        row.rank = rank
    return rows
