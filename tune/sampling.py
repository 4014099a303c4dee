"""What Optuna samples and how it becomes a `TrainConfig`: the define-by-run space, the `Sampled` record
that knows its arm and maps Optuna's prefixed names back to config keys, and the config a Ray trial trains.

Optuna's names are prefixed where one config key has several meanings: `student_backbone=resnet18@
weight_decay` (a conditional parameter), so that TPE models each branch separately; each arm has a study of
its own. Nothing outside this module parses those names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import TrainConfig, teacher_only_keys
from tune.space import Parameter

if TYPE_CHECKING:
    import optuna

BRANCH_SEPARATOR = "@"


def param_name(key: str) -> str:
    """The config key of an Optuna parameter name (`student_backbone=resnet18@weight_decay`)."""
    return key.rsplit(BRANCH_SEPARATOR, 1)[-1]


@dataclass
class Sampled:
    """One trial's sample: its arm (kd, or baseline: the same student without a teacher) and the values
    under Optuna's names."""

    arm: str
    values: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        """The values by config key, sorted: what people read (leaderboard, model card, report, W&B)."""
        return {param_name(k): v for k, v in sorted(self.values.items())}

    def apply(self, base: TrainConfig) -> TrainConfig:
        """The trial's TrainConfig: the base with the sampled values; a control-arm trial has no teacher."""
        changes = dict(self.params)
        if self.arm == "baseline":
            changes.update(mode="baseline", teacher_checkpoint=None)
        return base.replace(**changes)

    def to_ray(self) -> dict[str, Any]:
        """The trial config Ray holds for a search trial: the sampled values plus the constant `arm`."""
        return {**self.values, "arm": self.arm}

    @classmethod
    def from_ray(cls, config: dict[str, Any]) -> Sampled:
        return cls(config.get("arm", "kd"), {k: v for k, v in config.items() if k != "arm"})


def arm_label(arm: str, mode: str) -> str:
    """How an arm is shown: the main arm ("kd" in every record) by what its runs train — `kd` in a
    distillation space, else the space's mode (`baseline`, `teacher`); the control arm as `baseline`."""
    return mode if arm == "kd" and mode != "distillation" else arm


def candidate_config(name: str, sampled: Sampled) -> dict[str, Any]:
    """A selected configuration as Ray's grid holds it: each seed run's config is {candidate: this, seed: S}."""
    return {"name": name, "arm": sampled.arm, "params": sampled.values}


def run_candidate(config: dict[str, Any]) -> tuple[str, int] | None:
    """(candidate name, seed) of a confirmation run's Ray config; None for a search trial's."""
    if "candidate" not in config:
        return None
    return config["candidate"]["name"], int(config["seed"])


def run_sample(config: dict[str, Any]) -> tuple[Sampled, int | None]:
    """(what a Ray trial samples, its seed or None): a search trial's config is its sample; a confirmation
    run's is `{candidate: {name, arm, params}, seed}`."""
    if "candidate" in config:
        candidate = config["candidate"]
        return Sampled(candidate["arm"], dict(candidate["params"])), int(config["seed"])
    return Sampled.from_ray(config), None


def trial_config(config: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """The TrainConfig a Ray trial (search trial or confirmation run) trains."""
    sampled, seed = run_sample(config)
    cfg = sampled.apply(base)
    return cfg if seed is None else cfg.replace(seed=seed)


def bounds(parameter: Parameter) -> tuple[float, float]:
    """(low, high) of a range parameter (uniform, loguniform, int): load_space gives each both."""
    if parameter.low is None or parameter.high is None:
        raise ValueError(f"parameter {parameter.name}: a {parameter.type} distribution needs low and high")
    return parameter.low, parameter.high


def suggest(parameter: Parameter, trial: optuna.Trial, prefix: str = "") -> dict[str, Any]:
    """Sample `parameter` (and the branch it opens) on an Optuna trial into {Optuna name: value}."""
    key = prefix + parameter.name
    if parameter.type == "uniform":
        value = trial.suggest_float(key, *bounds(parameter))
    elif parameter.type == "loguniform":
        value = trial.suggest_float(key, *bounds(parameter), log=True)
    elif parameter.type == "int":
        low, high = bounds(parameter)  # ints: load_space makes them so
        value = trial.suggest_int(key, int(low), int(high), step=parameter.step or 1)
    else:
        value = trial.suggest_categorical(key, parameter.values)
    chosen = {key: value}
    for sub in parameter.when.get(value, []):
        chosen.update(suggest(sub, trial, prefix=f"{key}={value}{BRANCH_SEPARATOR}"))
    return chosen


class DefineByRun:
    """One arm's Optuna define-by-run space. A module-level class (not a closure) because Ray pickles the
    searcher, space function included, to resume a sweep.

    The control arm (`baseline`) samples only the parameters that exist without a teacher (config fields
    not marked teacher-only). The returned constant `arm` lands in the trial config."""

    def __init__(self, parameters: list[Parameter], arm: str = "kd"):
        self.parameters = parameters
        self.arm = arm

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for parameter in self.parameters:
            if self.arm != "baseline" or parameter.name not in teacher_only_keys():
                suggest(parameter, trial)
        return {"arm": self.arm}
