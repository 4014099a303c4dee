"""The sweep's Optuna searcher: what the study is told about each Ray trial, and the deploy target's latency
budget, enforced before a proposal is ever trained.

Built on ray_compat.optuna_search.OptunaSearchInternals, which names the parts of Ray's OptunaSearch it uses.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaTrialState

from tune.sampling import run_sample
from tune.sweep.ray_compat.conventions import wandb_run_id
from tune.sweep.ray_compat.optuna_search import OptunaSearchInternals, reported_steps, storage_id
from tune.sweep.study import INFEASIBLE_ATTR, LATENCY_ATTR, LATENCY_CONSTRAINT

RAY_TRIAL_ATTR = "ray_trial_id"  # Optuna trial user attributes: the Ray trial it ran as, its arm, its W&B run
ARM_ATTR = "arm"
WANDB_RUN_ATTR = "wandb_run_id"
# With a fast student in the space (the sweep checks that one meets the budget) TPE finds it long before this.
MAX_INFEASIBLE_IN_A_ROW = 200


class TruthfulOptunaSearch(OptunaSearchInternals):
    """OptunaSearch that tells the Optuna study what really happened to each trial.

    Ray 2.60 reports intermediate values at Ray's iteration counter (which lags the epoch for a trial
    whose checkpoint was repaired on resume) and tells every trial that ended with a value COMPLETE,
    so TPE compared 4-epoch values of ASHA-stopped trials with full-budget ones. Here: intermediate values
    at step = epoch; a trial that reached `max_t` epochs is COMPLETE with the objective; one that stopped
    earlier (ASHA) is PRUNED, so Optuna ranks it by its last intermediate value at that step; an errored
    or diverged trial is FAIL.
    """

    def __init__(
        self,
        *args: Any,
        max_t: int,
        arm: str = "kd",
        wandb_runs: bool = False,
        latency_ms: dict[str, float] | None = None,
        budget_ms: float | None = None,
        base_backbone: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_t, self.arm, self.wandb_runs = max_t, arm, wandb_runs
        self.latency_ms, self.budget_ms, self.base_backbone = latency_ms or {}, budget_ms, base_backbone

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ray's suggestion, within the latency budget: a proposal whose student is slower is told to the study
        as infeasible (PRUNED, with its latency: the sampler's constraint) and never reaches Ray, so it is never
        trained; the next proposal is asked for. The Optuna trial is also told which Ray trial (and W&B run,
        whose id is the Ray trial id) it is, so the journal, Ray's folders and W&B can be joined."""
        for _ in range(MAX_INFEASIBLE_IN_A_ROW):
            config = super().suggest(trial_id)
            trial = self.asked(trial_id)
            if trial is None or not isinstance(config, dict):
                return config
            if not self.study.metric_names:
                with warnings.catch_warnings():  # experimental in Optuna 5; it names the value in the dashboard
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    self.study.set_metric_names([self.metric])
            trial.set_user_attr(ARM_ATTR, self.arm)
            backbone, latency = self._latency(trial, config)
            if latency is None or self.budget_ms is None or latency <= self.budget_ms:
                trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
                if self.wandb_runs:
                    trial.set_user_attr(WANDB_RUN_ATTR, wandb_run_id(trial_id))
                return config
            trial.set_user_attr(INFEASIBLE_ATTR, True)
            self.study.tell(trial, state=OptunaTrialState.PRUNED)
            print(
                f"infeasible, not trained: {self.arm} proposal {trial.number} ({backbone}, {latency:.1f} ms) is over "
                f"the {self.budget_ms:g} ms latency budget",
                flush=True,
            )
            self.forget(trial_id)
        raise RuntimeError(f"{MAX_INFEASIBLE_IN_A_ROW} proposals in a row were over the latency budget")

    def _latency(self, trial: optuna.trial.Trial, config: dict[str, Any]) -> tuple[str, float | None]:
        """(the proposal's student backbone, its latency at the deploy target or None), recorded on `trial`
        with the budget's constraint (> 0: infeasible), which the sampler learns from."""
        backbone = run_sample(config)[0].params.get("student_backbone", self.base_backbone)
        latency = self.latency_ms.get(backbone)
        if latency is not None:
            trial.set_user_attr(LATENCY_ATTR, latency)
            if self.budget_ms is not None:
                trial.set_constraint(LATENCY_CONSTRAINT, latency - self.budget_ms)
        return backbone, latency

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self.open_trial(trial_id)
        if trial is None:
            return
        value = result.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)) or result.get("diverged"):
            return
        step = int(result["epoch"])
        if step not in reported_steps(trial):
            trial.report(float(value), step)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        trial = self.open_trial(trial_id)
        if trial is None:
            return
        state, value = optuna_end(result, error, self.metric, self.max_t)
        if state != OptunaTrialState.FAIL and result is not None:  # a trial that did not FAIL has a result
            # The result ASHA stopped a trial on reaches the searcher here only, not through
            # on_trial_result: record it, so the pruned trial's last intermediate value is its value there.
            self.on_trial_result(trial_id, result)
        self.study.tell(trial, value, state=state)
        self.completed(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore (on this searcher's journal); then each trial the journal lost and
        tune.sweep.state_files added back (under a new Optuna id, marked with its Ray trial id) is linked
        again, so its results go to the added trial."""
        super().restore(checkpoint_path)
        added = {
            t.user_attrs[RAY_TRIAL_ATTR]: t
            for t in self.study.get_trials(deepcopy=False)
            if RAY_TRIAL_ATTR in t.user_attrs
        }
        for trial_id, trial in self.links().items():
            if trial_id in added and storage_id(added[trial_id]) != storage_id(trial):
                self.link(trial_id, added[trial_id])


def optuna_end(
    result: dict[str, Any] | None, error: bool, metric: str, max_t: int
) -> tuple[OptunaTrialState, float | None]:
    """What the Optuna study is told about a Ray trial that ended: (state, value to tell).

    Reached `max_t` epochs: COMPLETE with the objective; stopped earlier (ASHA): PRUNED (Optuna takes its
    last intermediate value); errored, diverged or never reported the objective: FAIL."""
    value = (result or {}).get(metric)
    if error or not result or result.get("diverged") or value is None or math.isnan(value):
        return OptunaTrialState.FAIL, None
    if int(result.get("epoch", 0)) >= max_t:
        return OptunaTrialState.COMPLETE, float(value)
    return OptunaTrialState.PRUNED, None
