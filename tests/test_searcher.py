"""tune/sweep/searcher.py: the Optuna study learns the truth about each trial (no Ray cluster needed)."""

import optuna
from optuna.trial import TrialState

from tune.sampling import DefineByRun
from tune.space import Parameter
from tune.sweep.searcher import TruthfulOptunaSearch

PARAMETERS = [
    Parameter("alpha", "uniform", low=0.1, high=0.9),
    Parameter("learning_rate", "loguniform", low=1e-4, high=1e-2),
]


def searcher():
    return TruthfulOptunaSearch(
        space=DefineByRun(PARAMETERS),
        metric="best_val_dice",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_t=4,
    )


def test_asha_stopped_trials_are_pruned_with_values_per_epoch():
    s = searcher()
    for trial_id in ("full", "stopped", "errored", "diverged"):
        s.suggest(trial_id)
    # Ray's iteration counter lags the epoch for a resumed trial: the step must be the epoch.
    for epoch in (1, 2, 3, 4):
        s.on_trial_result("full", {"best_val_dice": 0.1 * epoch, "epoch": epoch, "training_iteration": epoch - 1})
    s.on_trial_complete("full", {"best_val_dice": 0.4, "epoch": 4})
    s.on_trial_result("stopped", {"best_val_dice": 0.3, "epoch": 1})
    # Ray hands the result ASHA stops a trial on to on_trial_complete only.
    s.on_trial_complete("stopped", {"best_val_dice": 0.35, "epoch": 2})
    s.on_trial_complete("errored", {"best_val_dice": 0.2, "epoch": 1}, error=True)
    s.on_trial_complete("diverged", {"best_val_dice": 0.0, "epoch": 0, "diverged": 1})
    trials = {t.number: t for t in s.study.trials}
    assert trials[0].state == TrialState.COMPLETE and trials[0].value == 0.4
    assert trials[0].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.30000000000000004, 4: 0.4}
    assert trials[1].state == TrialState.PRUNED and trials[1].intermediate_values == {1: 0.3, 2: 0.35}
    assert trials[2].state == TrialState.FAIL and trials[3].state == TrialState.FAIL


def arm_searchers(tmp_path):
    """The search stage's own Optuna searcher and ASHA for each arm of the demo space."""
    from tune.records import SweepPaths
    from tune.space import load_space
    from tune.sweep.runtime import SweepRun
    from tune.sweep.search import tune_config

    tmp_path.mkdir(parents=True, exist_ok=True)
    run = SweepRun(load_space("demo"), SweepPaths.local(tmp_path), use_gpu=False, wandb_mode="disabled")
    return {arm: tune_config(run, arm, 4) for arm in ("kd", "baseline")}


def test_each_arm_has_its_own_sampler_and_scheduler(tmp_path):
    arms = arm_searchers(tmp_path / "a")
    kd, baseline = arms["kd"], arms["baseline"]
    assert kd.scheduler is not baseline.scheduler
    assert kd.search_alg.study.study_name == "demo" and baseline.search_alg.study.study_name == "demo.baseline"
    # KD trials report very different values; the baseline arm's proposals are what they would be without them.
    for i in range(4):
        kd.search_alg.suggest(f"kd{i}")
        kd.search_alg.on_trial_complete(f"kd{i}", {"best_val_dice": 0.9 if i % 2 else 0.1, "epoch": 12})
    with_kd = [baseline.search_alg.suggest(f"b{i}") for i in range(3)]
    alone = [arm_searchers(tmp_path / "b")["baseline"].search_alg.suggest("b0")]
    assert with_kd[0] == alone[0]
    assert all(p["arm"] == "baseline" and not {"alpha", "temperature"} & set(p) for p in with_kd)
