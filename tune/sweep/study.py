"""The sweep's Optuna study: a journal file in the sweep folder, TPE settings that fit conditional spaces,
and hyperparameter importance read back from it.

Each arm has a study of its own in the one journal, so that TPE's good/bad split is computed within the
arm: `<sweep>` for the main (distillation) arm, `<sweep>.baseline` for the control arm.
`optuna-dashboard results/<sweep>/optuna.journal` opens both.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tune.records import JOURNAL_FILE

# Optuna logs each study it creates at INFO ("A new study created in Journal with name: demo", "... in memory"
# for param_importance's proxy): the sweep names its studies itself (finish.study_summary). Warnings stay.
optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal_storage(sweep_dir: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL_FILE)))


LATENCY_ATTR = "latency_ms"  # Optuna user attributes of a trial in a sweep with a deploy target
INFEASIBLE_ATTR = "infeasible"  # over the latency budget: told PRUNED, never trained
# The trial's latency minus the budget as an Optuna constraint (> 0: infeasible): TPE learns where it lies.
LATENCY_CONSTRAINT = "latency_over_budget_ms"


def tpe_sampler(num_samples: int, seed: int) -> optuna.samplers.TPESampler:
    """TPE for define-by-run spaces with conditional branches and two arms.

    `multivariate` + `group` model parameters that are sampled together jointly and each branch (and the
    control arm, which has its own parameter names) separately, instead of warning on every trial that a
    parameter outside the shared space was sampled independently. Start-up (random) trials scale with the
    sweep: Optuna's default of 10 would leave a 6- or 16-trial sweep entirely random."""
    startup = min(10, max(2, num_samples // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=startup, constant_liar=True
        )


def study_name(sweep: str, arm: str) -> str:
    return sweep if arm == "kd" else f"{sweep}.{arm}"


def stored_sweep_name(sweep_dir: Path, default: str) -> str:
    """The sweep name the journal's studies are stored under: the name the sweep started with, which a sweep
    copied or moved under another name keeps; `default` for a sweep with no study yet."""
    if not (sweep_dir / JOURNAL_FILE).is_file():
        return default
    names = set(optuna.get_all_study_names(journal_storage(sweep_dir)))
    main = sorted(n for n in names if not n.endswith(".baseline"))  # the control arm's: <sweep>.baseline
    return default if default in names or not main else main[0]


def load_study(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(sweep_dir))


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def param_importance(study: optuna.Study, at_epoch: int | None = None) -> dict[str, Any] | None:
    """PED-ANOVA importance of the distillation arm's parameters for the validation value at `at_epoch`
    (the sweep passes ASHA's first rung, `grace_period`: the one budget every trial reached; most trials of an
    ASHA sweep are PRUNED, and importance on COMPLETE trials alone would rest on a handful). Default: the
    earliest epoch every usable trial reported. None when fewer than 3 trials are usable."""
    kd = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if t.intermediate_values
    ]
    if len(kd) < 3:
        return None
    step = at_epoch if at_epoch is not None else max(min(t.intermediate_values) for t in kd)
    proxy = optuna.create_study(direction=study.direction)
    for t in kd:
        value = t.intermediate_values.get(step)
        if value is None or math.isnan(value):
            continue
        proxy.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value))
    if len(proxy.trials) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # PED-ANOVA needs no scikit-learn (Optuna's fANOVA does) and suits few trials.
            importance = optuna.importance.get_param_importances(
                proxy, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        except (RuntimeError, ValueError):
            return None  # e.g. no parameter common to all trials
    return {"at_epoch": step, "trials": len(proxy.trials), "importance": dict(importance)}
