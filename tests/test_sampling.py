"""tune/sampling.py: Optuna's names per branch and arm, and the TrainConfig a search trial or a
confirmation run trains."""

import optuna
from test_space import VALID, write

from core.config import teacher_only_keys
from tune.sampling import DefineByRun, Sampled, candidate_config, trial_config
from tune.space import load_space


def test_conditional_parameters_get_distinct_names_per_branch(tmp_path):
    space = load_space(write(tmp_path, VALID))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(30):
        trial = study.ask()
        DefineByRun(space.parameters)(trial)
        seen[trial.params["student_backbone"]] = set(trial.params)
        study.tell(trial, 0.0)
    assert seen["mobilenet_v2"] == {"learning_rate", "student_backbone", "batch_size"}
    assert seen["resnet18"] == seen["mobilenet_v2"] | {"student_backbone=resnet18@weight_decay"}
    assert all(trial.params["batch_size"] % 2 == 0 for trial in study.trials)


def test_trial_config_maps_branch_names_back_to_config_keys(tmp_path):
    space = load_space(write(tmp_path, VALID))
    cfg = trial_config(
        {"student_backbone": "resnet18", "learning_rate": 0.003, "student_backbone=resnet18@weight_decay": 1e-5},
        space.base_config(),
    )
    assert (cfg.student_backbone, cfg.learning_rate, cfg.weight_decay, cfg.epochs) == ("resnet18", 0.003, 1e-5, 4)


def test_control_arm_trial_trains_the_student_without_a_teacher():
    space = load_space("demo")
    cfg = trial_config({"arm": "baseline", "learning_rate": 2e-3, "student_backbone": "resnet18"}, space.base_config())
    assert (cfg.mode, cfg.learning_rate, cfg.student_backbone, cfg.teacher_checkpoint) == (
        "baseline",
        2e-3,
        "resnet18",
        None,
    )
    assert trial_config({"arm": "kd", "alpha": 0.3}, space.base_config()).mode == "distillation"


def test_sampled_params_read_clean_config_keys():
    sampled = Sampled("baseline", {"learning_rate": 2e-3, "student_backbone=resnet18@weight_decay": 1e-5})
    assert sampled.params == {"learning_rate": 2e-3, "weight_decay": 1e-5}
    assert Sampled.from_ray(sampled.to_ray()) == sampled


def test_a_confirmation_run_trains_its_candidate_at_its_seed():
    space = load_space("demo")
    sampled = Sampled("kd", {"alpha": 0.3, "learning_rate": 4e-3})
    cfg = trial_config({"candidate": candidate_config("kd-1", sampled), "seed": 7}, space.base_config())
    assert (cfg.alpha, cfg.learning_rate, cfg.seed, cfg.mode) == (0.3, 4e-3, 7, "distillation")


def test_control_arm_never_samples_a_teacher_only_key():
    space = load_space("demo")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arm = DefineByRun(space.parameters, "baseline")(trial)
    assert arm == {"arm": "baseline"}
    sampled_keys = set(Sampled("baseline", trial.params).params)
    assert sampled_keys == {"learning_rate", "student_backbone"} and not sampled_keys & teacher_only_keys()


def test_runs_are_labelled_by_what_they_train_in_wandb():
    from core.config import TrainConfig
    from tune.tracking.run_settings import TrialRunSettings

    for mode, label in (("baseline", "baseline"), ("teacher", "teacher"), ("distillation", "kd")):
        settings = TrialRunSettings("s", TrainConfig(mode=mode, teacher_checkpoint="t.pt"))
        kwargs = settings.init_kwargs(Sampled("kd", {"learning_rate": 1e-3}).to_ray(), {})
        assert kwargs["config"]["arm"] == label and f"arm:{label}" in kwargs["tags"], mode
    control = TrialRunSettings("s", TrainConfig(mode="distillation", teacher_checkpoint="t.pt"))
    kwargs = control.init_kwargs(Sampled("baseline", {"learning_rate": 1e-3}).to_ray(), {})
    assert kwargs["config"]["arm"] == "baseline" and kwargs["config"]["mode"] == "baseline"
