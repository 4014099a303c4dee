"""Search-space files: YAML -> a validated `SearchSpace` (parameters, objective, budgets, arms), checked
against `TrainConfig` before Ray starts. Sampling them is tune/sampling.py's job.

Schema (every key optional except `parameters`; see search_spaces/kd.yaml for a commented example):

    name: kd                      # sweep name -> results/<name>/
    base: {TrainConfig keys}      # fixed values for every trial
    parameters:                   # searched TrainConfig keys
      alpha: {type: uniform, low: 0.1, high: 0.9}
      learning_rate: {type: loguniform, low: 1.0e-5, high: 3.0e-3}
      epochs_or_int_key: {type: int, low: 1, high: 4, step: 1}
      student_backbone:
        type: choice
        values: [mobilenet_v2, resnet18]
        when:                     # conditional parameters, opened by one value of this choice
          resnet18: {weight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-3}}
    objective: {metric: best_val_dice, mode: max}
    search: {num_samples: 16, max_concurrent_trials: 4, seed: 0, max_failures: 2, reuse_actors: true,
             checkpoint_every: 1}
    asha: {max_t: 30, grace_period: 5, reduction_factor: 3}
    resources: {cpu: 2, gpu: 0.5}  # per trial; gpu asked for on a cluster (--address) or a GPU machine
    teacher: {checkpoint: null, train: {TrainConfig keys for training it in this sweep}}
    control: {baseline: true, fraction: 0.5}    # distillation spaces: a no-teacher arm, its own search
    confirm: {top_k: 3, seeds: 3, verdict_seeds: 8}   # select over seeds, then estimate on fresh ones
    wandb: {project: polyp-kd-tune, group: null, mode: auto, entity: null}
    deploy: {runtime: onnxruntime, device: cpu, img_size: 320, batch: 1, threads: 4, latency_budget_ms: 40}
                                                  # where the student runs; over-budget students never train
    demo_data: {size: 64, train: 48, test: 8, seed: 0}   # generate synthetic data if data_root is missing
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import TrainConfig, config_from_dict, read_yaml_mapping
from core.errors import UserError
from core.latency import DeployTarget
from tune.objective import Objective
from tune.tracking.mode import MODES

SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
PARAMETER_TYPES = ("uniform", "loguniform", "int", "choice")


@dataclass
class Parameter:
    """One searched config key: a distribution, and for a choice the parameters each value opens."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    values: list[Any] = field(default_factory=list)
    when: dict[Any, list[Parameter]] = field(default_factory=dict)

    def extremes(self) -> list[Any]:
        return list(self.values) if self.type == "choice" else [self.low, self.high]


def all_parameters(parameters: list[Parameter]) -> Iterator[Parameter]:
    """Every parameter of a space, the conditional ones (opened by a choice's `when`) included."""
    for p in parameters:
        yield p
        for subs in p.when.values():
            yield from all_parameters(subs)


def parameter_specs(parameters: list[Parameter]) -> dict[str, Parameter]:
    """One spec per config key. A key conditional under several branches spans all of their ranges."""
    specs: dict[str, Parameter] = {}
    for p in all_parameters(parameters):
        known = specs.get(p.name)
        if known is None:
            specs[p.name] = Parameter(p.name, p.type, p.low, p.high, p.step, list(p.values))
        elif known.type == "choice":
            known.values += [v for v in p.values if v not in known.values]
        elif p.type != "choice":
            known.low, known.high = min(known.low, p.low), max(known.high, p.high)
    return specs


@dataclass
class SearchSettings:
    num_samples: int = 8
    max_concurrent_trials: int = 2
    seed: int = 0
    max_failures: int = 2
    # One trial process runs trial after trial: no per-trial start-up (~4 s of imports on a CPU machine).
    reuse_actors: bool = True
    # Epochs between trial checkpoints (a lost node or driver costs a trial at most this many epochs less
    # one). ASHA's rung epochs and the last epoch always get one, so every trial's checkpoint holds the
    # epoch it ended on.
    checkpoint_every: int = 1


@dataclass
class AshaSettings:
    max_t: int = 10
    grace_period: int = 2
    reduction_factor: int = 2

    def milestones(self) -> list[int]:
        """The epochs at which ASHA compares trials (max_t included when it is one)."""
        return rungs(self.max_t, self.grace_period, self.reduction_factor)

    def rungs(self) -> list[int]:
        """The epochs at which ASHA may stop a trial: its milestones below max_t."""
        return [m for m in self.milestones() if m < self.max_t]


def rungs(max_t: int, grace_period: int, reduction_factor: int) -> list[int]:
    """ASHA's milestones, as Ray's `_Bracket` computes them for its single bracket (max_t may be one): the
    one place this rule is written (the sweep, its report and `--plan` all use it)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor ** k for k in range(count)]


def checkpoint_epochs(every: int, max_t: int, rung_epochs: list[int] = ()) -> list[int]:
    """The epochs a trial keeps a checkpoint at: every `every`-th, each rung and the last."""
    return sorted({e for e in range(every, max_t + 1, every)} | set(rung_epochs) | {max_t})


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass
class TeacherSettings:
    checkpoint: str | None = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class ControlSettings:
    baseline: bool = True     # distillation spaces only
    # Share of the search's trials that are baseline trials (at least one). Half by default: the control arm
    # gets the same search effort as distillation, or a verdict compares a searched KD with a barely
    # searched baseline.
    fraction: float = 0.5


@dataclass
class ConfirmSettings:
    top_k: int = 3            # configurations of each arm retrained for selection
    seeds: int = 3            # selection seeds per configuration (never the search's seed)
    verdict_seeds: int = 8    # fresh seeds for the winner's estimate and the KD-vs-baseline verdict


@dataclass
class WandbSettings:
    project: str = "polyp-kd-tune"
    group: str | None = None
    mode: str = "auto"            # online when wandb finds an API key (`wandb login`), else offline
    entity: str | None = None     # W&B team or user; None: the key's default entity (or WANDB_ENTITY)


@dataclass
class DemoData:
    size: int = 64
    train: int = 48
    test: int = 8
    seed: int = 0


@dataclass
class SearchSpace:
    name: str
    source: str
    base: dict[str, Any]
    parameters: list[Parameter]
    objective: Objective = field(default_factory=Objective)
    search: SearchSettings = field(default_factory=SearchSettings)
    asha: AshaSettings = field(default_factory=AshaSettings)
    resources: Resources = field(default_factory=Resources)
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    wandb: WandbSettings = field(default_factory=WandbSettings)
    demo_data: DemoData | None = None
    control: ControlSettings | None = None
    confirm: ConfirmSettings | None = None
    deploy: DeployTarget | None = None   # where the student will run; its latency budget is a search constraint

    @property
    def distillation(self) -> bool:
        return self.base.get("mode") == "distillation"

    @property
    def has_control(self) -> bool:
        return self.distillation and self.control is not None and self.control.baseline

    def arm_trials(self) -> dict[str, int]:
        """Search trials per arm: `kd` (the space's own mode, with a teacher in a distillation space) and,
        with a control arm, `baseline` (the same students without a teacher), each searched on its own."""
        n = self.search.num_samples
        if not self.has_control:
            return {"kd": n}
        k = min(n - 1, max(1, round(self.control.fraction * n)))
        return {"kd": n - k, "baseline": k}

    def student_backbones(self) -> list[str]:
        """Every student backbone a trial of this space can train: the searched choices, else the base's."""
        for p in self.parameters:
            if p.name == "student_backbone":
                return list(p.values)
        return [self.base_config().student_backbone]

    def base_config(self) -> TrainConfig:
        """The trial config before sampling; `epochs` is ASHA's max_t, so every trial's learning-rate
        schedule spans the budget a surviving trial gets."""
        return config_from_dict({**self.base, "epochs": self.asha.max_t}, source=f"{self.source}: base")

    def teacher_config(self) -> TrainConfig:
        values = {**self.base, "mode": "teacher", "experiment_name": "teacher", **self.teacher.train}
        values.pop("teacher_checkpoint", None)
        return config_from_dict(values, source=f"{self.source}: teacher.train")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["parameters"] = {p["name"]: _parameter_to_dict(p) for p in out["parameters"]}
        out.pop("source")
        if out["deploy"] is None:  # a space without a target reads (and fingerprints) as it did before `deploy`
            out.pop("deploy")
        return yaml.safe_load(yaml.safe_dump(out))  # as space.yaml holds it: compares equal to a read-back


# A sweep is bound to what its trials, selection and verdict depend on: everything in the space except how
# it is run (resources, concurrency, retries, checkpoint spacing, W&B, demo-data settings, its name).
RUN_SETTINGS = ("name", "resources", "wandb", "demo_data")
FREE_SEARCH_KEYS = ("max_concurrent_trials", "max_failures", "reuse_actors", "checkpoint_every")


def bound_settings(space: dict[str, Any]) -> dict[str, Any]:
    """The part of a space (as `to_dict` or space.yaml holds it) that a sweep is bound to."""
    out = {k: v for k, v in space.items() if k not in RUN_SETTINGS}
    out["search"] = {k: v for k, v in (out.get("search") or {}).items() if k not in FREE_SEARCH_KEYS}
    return out


def fingerprint(space: dict[str, Any]) -> str:
    text = json.dumps(bound_settings(space), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def space_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved value, current value) for every bound setting that differs."""
    old, new = _flatten(bound_settings(saved)), _flatten(bound_settings(current))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def check_resumable(saved: dict[str, Any], space: SearchSpace, extend: bool, where: str) -> bool:
    """Whether `space` may continue the sweep that ran `saved` (its space.yaml); True when it raises the trial
    count under `extend`. Any other change is a UserError listing it and the two ways on."""
    changes = space_changes(saved, space.to_dict())
    grown = set(changes) == {"search.num_samples"} and changes["search.num_samples"][1] > changes[
        "search.num_samples"][0]
    if not changes or (extend and grown):
        return bool(changes)
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    ways = "run it as a new sweep with --name NEW"
    ways += ", or add --extend to run the extra trials" if grown else (
        " (--extend only raises search.num_samples; nothing else may change)" if extend else "")
    raise UserError(f"{where}: this sweep ran another space ({listed}); {ways}")


def resolve_space_path(name: str | Path) -> Path:
    """A path as given, else a bare name (with or without .yaml) in search_spaces/."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (SPACES_DIR / path.name, SPACES_DIR / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.name for p in SPACES_DIR.glob("*.yaml")))
    raise UserError(f"{name}: search-space file not found; pass a path or one of: {shipped}")


def load_space(name: str | Path, overrides: dict[str, Any] | None = None) -> SearchSpace:
    """Read and validate a space file; every problem is a UserError naming the file and key."""
    path = resolve_space_path(name)
    raw = read_yaml_mapping(path)
    src = str(path)
    _no_unknown(raw, {f.name for f in dataclasses.fields(SearchSpace)} - {"source"}, src)
    if "parameters" not in raw or not isinstance(raw["parameters"], dict) or not raw["parameters"]:
        raise UserError(f"{src}: 'parameters' must map at least one config key to a distribution")
    base = _mapping(raw.get("base", {}), f"{src}: base")
    parameters = [_parse_parameter(k, v, f"{src}: parameters.{k}") for k, v in raw["parameters"].items()]
    for key in sorted(set(overrides or {}) & {p.name for p in all_parameters(parameters)}):
        # Every trial would take its sampled value: the override would be recorded and silently unused.
        raise UserError(f"--set {key}: {key} is searched in this space ({src}); change its range in the space "
                        f"file, or remove it from `parameters`")
    base.update(overrides or {})
    space = SearchSpace(
        name=str(raw.get("name") or path.stem), source=src, base=base, parameters=parameters,
        objective=_objective(raw.get("objective"), src),
        search=_section(SearchSettings, raw, "search", src),
        asha=_section(AshaSettings, raw, "asha", src),
        resources=_section(Resources, raw, "resources", src),
        teacher=_section(TeacherSettings, raw, "teacher", src),
        wandb=_section(WandbSettings, raw, "wandb", src),
        demo_data=_section(DemoData, raw, "demo_data", src) if raw.get("demo_data") is not None else None,
    )
    # A distillation sweep answers "did the teacher help?" unless told not to: a control arm and a
    # confirmation over seeds are on by default; `control: null` / `confirm: null` switch them off.
    if raw.get("control", {}) is not None and space.distillation:
        space.control = _section(ControlSettings, raw, "control", src)
    if "confirm" in raw:
        space.confirm = _section(ConfirmSettings, raw, "confirm", src) if raw["confirm"] is not None else None
    elif space.distillation:
        space.confirm = ConfirmSettings()
    if raw.get("deploy", {}) is not None and "deploy" in raw:
        target = DeployTarget.from_dict(raw["deploy"], f"{src}: deploy")
        space.deploy = dataclasses.replace(target, img_size=target.img_size or space.base_config().img_size)
    _validate(space)
    return space


def _validate(space: SearchSpace) -> None:
    src = space.source
    _choice(space.wandb.mode, MODES, f"{src}: wandb.mode")
    s, a, r = space.search, space.asha, space.resources
    _require(s.num_samples >= 1, f"{src}: search.num_samples must be >= 1")
    _require(s.max_concurrent_trials >= 1, f"{src}: search.max_concurrent_trials must be >= 1")
    _require(s.max_failures >= 0, f"{src}: search.max_failures must be >= 0")
    _require(s.checkpoint_every >= 1, f"{src}: search.checkpoint_every must be >= 1 (epochs)")
    _require(a.max_t >= 1, f"{src}: asha.max_t must be >= 1 (epochs)")
    _require(1 <= a.grace_period <= a.max_t, f"{src}: asha.grace_period must be in [1, max_t={a.max_t}]")
    _require(a.reduction_factor >= 2, f"{src}: asha.reduction_factor must be >= 2")
    _require(r.cpu > 0, f"{src}: resources.cpu must be > 0")
    _require(r.gpu >= 0, f"{src}: resources.gpu must be >= 0 (fractions such as 0.5 share a GPU)")
    # A trial trains on one device (core.train has no multi-GPU path): more would only idle GPUs.
    _require(r.gpu <= 1, f"{src}: resources.gpu is {r.gpu:g} but a trial trains on one GPU; use 1, or a "
                         f"fraction such as 0.5 to share a GPU between trials")
    if "epochs" in space.base or any(p.name == "epochs" for p in space.parameters):
        raise UserError(f"{src}: set the epoch budget with asha.max_t, not 'epochs'")
    base = space.base_config()
    # Every distribution's end points must make a valid config: catches e.g. alpha up to 1.5 now,
    # not after Ray has started and a trial fails.
    for parameter in all_parameters(space.parameters):
        for value in parameter.extremes():
            try:
                base.replace(**{parameter.name: value})
            except UserError as err:
                raise UserError(f"{src}: parameters.{parameter.name}: {err}".replace("overrides: ", "")) from None
    if space.teacher.train:
        space.teacher_config()
    if space.control is not None:
        _require(0 < space.control.fraction < 1, f"{src}: control.fraction must be in (0, 1)")
        _require(s.num_samples >= 2 or not space.control.baseline,
                 f"{src}: a control arm needs search.num_samples >= 2 (or control: null)")
    if space.confirm is not None:
        _require(space.confirm.top_k >= 1, f"{src}: confirm.top_k must be >= 1")
        _require(space.confirm.seeds >= 2, f"{src}: confirm.seeds must be >= 2 (a confidence interval needs "
                                            f"two seeds); confirm: null switches confirmation off")
        _require(space.confirm.verdict_seeds >= 2, f"{src}: confirm.verdict_seeds must be >= 2 (an estimate "
                                                    f"with an interval needs two seeds)")


def _objective(raw: Any, src: str) -> Objective:
    values = _mapping(raw, f"{src}: objective")
    _no_unknown(values, {"metric", "mode"}, f"{src}: objective")
    try:
        return Objective(**values)
    except UserError as err:
        raise UserError(f"{src}: {err}") from None


def _parse_parameter(name: str, spec: Any, where: str) -> Parameter:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in known:
        raise UserError(f"{where}: '{name}' is not a config key; searchable keys: {', '.join(sorted(known))}")
    spec = _mapping(spec, where)
    _no_unknown(spec, {"type", "low", "high", "step", "values", "when"}, where)
    kind = spec.get("type")
    _choice(kind, PARAMETER_TYPES, f"{where}.type")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: 'values' must be a non-empty list for type choice")
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"{where}: 'values' has duplicates")
        when = _mapping(spec.get("when", {}), f"{where}.when")
        branches = {}
        for value, subs in when.items():
            if value not in values:
                raise UserError(f"{where}.when: {value!r} is not one of the values {values}")
            subs = _mapping(subs, f"{where}.when.{value}")
            branches[value] = [_parse_parameter(k, v, f"{where}.when.{value}.{k}") for k, v in subs.items()]
        return Parameter(name, kind, values=values, when=branches)
    for key in ("values", "when"):
        if key in spec:
            raise UserError(f"{where}: '{key}' applies to type choice only")
    low, high = _number(spec.get("low"), f"{where}.low"), _number(spec.get("high"), f"{where}.high")
    if low >= high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{where}: loguniform needs low > 0, got {low}")
    step = None
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise UserError(f"{where}: type int needs whole-number low and high")
        low, high = int(low), int(high)
        step = spec.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise UserError(f"{where}.step: must be a whole number >= 1")
    elif "step" in spec:
        raise UserError(f"{where}: 'step' applies to type int only")
    return Parameter(name, kind, low=low, high=high, step=step)


def _parameter_to_dict(p: dict[str, Any]) -> dict[str, Any]:
    out = {"type": p["type"]}
    if p["type"] == "choice":
        out["values"] = p["values"]
        if p["when"]:
            out["when"] = {v: {s["name"]: _parameter_to_dict(s) for s in subs} for v, subs in p["when"].items()}
    else:
        out.update(low=p["low"], high=p["high"])
        if p["step"]:
            out["step"] = p["step"]
    return out


def _section(cls, raw: dict[str, Any], key: str, src: str):
    values = _mapping(raw.get(key) or {}, f"{src}: {key}")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    _no_unknown(values, set(hints), f"{src}: {key}")
    kwargs = {}
    for name, value in values.items():
        default = hints[name].default
        expected = type(default) if default not in (None, dataclasses.MISSING) else None
        if expected is float:
            value = float(_number(value, f"{src}: {key}.{name}"))
        elif expected is bool:
            if not isinstance(value, bool):
                raise UserError(f"{src}: {key}.{name} must be true or false, got {value!r}")
        elif expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise UserError(f"{src}: {key}.{name} must be {expected.__name__}, got {value!r}")
        kwargs[name] = value
    if key == "teacher":
        kwargs["train"] = _mapping(kwargs.get("train", {}), f"{src}: teacher.train")
        if kwargs.get("checkpoint") is not None and not isinstance(kwargs["checkpoint"], str):
            raise UserError(f"{src}: teacher.checkpoint must be a path or null")
    return cls(**kwargs)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or value is None:
        raise UserError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise UserError(f"{where}: expected a finite number, got {value!r}")
    return int(number) if isinstance(value, int) else number


def _no_unknown(values: dict[str, Any], known: set[str], where: str) -> None:
    for key in values:
        if key not in known:
            raise UserError(f"{where}: unknown key '{key}'; known keys: {', '.join(sorted(known))}")


def _choice(value: Any, allowed: tuple, where: str) -> None:
    if value not in allowed:
        raise UserError(f"{where} is {value!r}; allowed values: {', '.join(map(str, allowed))}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
