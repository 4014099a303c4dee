"""Search-space files: YAML -> a validated `SearchSpace` (parameters, objective, budgets, arms), checked
against `TrainConfig` before Ray starts. Sampling them is tune/sampling.py's job.

Schema (every key optional except `parameters`; see search_spaces/kd.yaml for a commented example):

    name: kd                      # sweep name -> results/<name>/
    base: {TrainConfig keys}      # fixed values for every trial
    parameters:                   # searched TrainConfig keys
      alpha: {type: uniform, low: 0.1, high: 0.9}
      learning_rate: {type: loguniform, low: 1.0e-5, high: 3.0e-3}
      batch_size: {type: int, low: 4, high: 16, step: 4}
      student_backbone:
        type: choice
        values: [mobilenet_v2, resnet18]
        when:                     # conditional parameters, opened by one value of this choice
          resnet18: {weight_decay: {type: loguniform, low: 1.0e-6, high: 1.0e-3}}
    objective: {metric: best_val_dice, mode: max}
    search: {num_samples: 16, max_concurrent_trials: 4, seed: 0, max_failures: 2, reuse_actors: true,
             checkpoint_every: 1, trainer: torch}
    asha: {max_t: 30, grace_period: 5, reduction_factor: 3}
    resources: {cpu: 2, gpu: 0.5}  # per trial; gpu asked for on a cluster (--address) or a GPU machine
    teacher: {checkpoint: null, train: {TrainConfig keys for training it in this sweep}}
    control: {baseline: true, fraction: 0.5}    # distillation spaces: a no-teacher arm, its own search
    confirm: {top_k: 3, seeds: 3, verdict_seeds: 8, verdict: factorial, margin: 0.01}
                                  # select over seeds, then estimate and judge the teacher on fresh ones
    wandb: {project: polyp-kd-tune, group: null, mode: auto, entity: null}
    deploy: {runtime: onnxruntime, device: cpu, img_size: 320, batch: 1, threads: 4, latency_budget_ms: 40}
                                                  # where the student runs; over-budget students never train
    demo_data: {size: 64, train: 48, test: 8, seed: 0}   # generate synthetic data if data_root is missing

Each section is a dataclass below whose field annotations carry its rules; core/validation.py checks them and
words every mistake one way, naming the file and the dotted key (`kd.yaml: search.num_samples: must be >= 1, got 0`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from core.config import MAX_SEED, Seed, TrainConfig, config_from_dict, read_yaml_mapping
from core.errors import UserError
from core.latency import DeployTarget
from core.simulated_training import TRAINERS
from core.validation import (
    Flag,
    Integer,
    Number,
    NumberAsWritten,
    OptionalText,
    above,
    at_least,
    between,
    build,
    check_keys,
    choices,
    dotted,
    must,
    one_of,
    require,
    unknown_key,
)
from tune.objective import Objective
from tune.sweep.ray_compat.conventions import rungs
from tune.tracking.mode import MODES

SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
PARAMETER_TYPES = ("uniform", "loguniform", "int", "choice")
VERDICT_DESIGNS = ("factorial", "ablation", "tuned")  # tune/sweep/verdict.py


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
            # Both are ranges, which have both ends (_parse_parameter).
            assert known.low is not None and known.high is not None and p.low is not None and p.high is not None
            known.low, known.high = min(known.low, p.low), max(known.high, p.high)
    return specs


MAX_NUM_SAMPLES = 100_000  # trials per arm: --plan and the study are sized by it before anything runs


@dataclass
class SearchSettings:
    num_samples: Annotated[Integer, between(1, MAX_NUM_SAMPLES)] = 8
    max_concurrent_trials: Annotated[Integer, at_least(1)] = 2
    seed: Seed = 0
    max_failures: Annotated[Integer, at_least(0)] = 2
    # One trial process runs trial after trial: no per-trial start-up (~4 s of imports on a CPU machine).
    reuse_actors: Flag = True
    # Epochs between trial checkpoints (a lost node or driver costs a trial at most this many epochs less
    # one). ASHA's rung epochs and the last epoch always get one, so every trial's checkpoint holds the
    # epoch it ended on.
    checkpoint_every: Annotated[Integer, at_least(1, "epochs")] = 1
    # `simulated`: core/simulated_training.py's deterministic stand-in (metrics a function of the
    # configuration, seed and epoch) exercises the sweep's decisions in seconds, the same on every CPU.
    trainer: Annotated[str, one_of(TRAINERS)] = "torch"


@dataclass
class AshaSettings:
    max_t: Annotated[Integer, at_least(1, "epochs")] = 10
    grace_period: Annotated[Integer, at_least(1)] = 2  # at most max_t: checked in _validate
    reduction_factor: Annotated[Integer, at_least(2)] = 2

    def milestones(self) -> list[int]:
        """The epochs at which ASHA compares trials (max_t included when it is one)."""
        return rungs(self.max_t, self.grace_period, self.reduction_factor)

    def rungs(self) -> list[int]:
        """The epochs at which ASHA may stop a trial: its milestones below max_t."""
        return [m for m in self.milestones() if m < self.max_t]


def checkpoint_epochs(every: int, max_t: int, rung_epochs: Sequence[int] = ()) -> list[int]:
    """The epochs a trial keeps a checkpoint at: every `every`-th, each rung and the last."""
    return sorted(set(range(every, max_t + 1, every)) | set(rung_epochs) | {max_t})


@dataclass
class Resources:
    cpu: Annotated[Number, above(0)] = 1.0
    # A trial trains on one device (core.train has no multi-GPU path): more would only idle GPUs.
    gpu: Annotated[
        Number, between(0, 1, why="a trial trains on one GPU; a fraction such as 0.5 shares one between trials")
    ] = 0.0


@dataclass
class TeacherSettings:
    checkpoint: OptionalText = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class ControlSettings:
    baseline: Flag = True  # distillation spaces only
    # Share of the search's trials that are baseline trials (at least one). Half by default: the control arm
    # gets the same search effort as distillation, or a verdict compares a searched KD with a barely
    # searched baseline.
    fraction: Annotated[Number, between(0, 1, open_ends=True)] = 0.5


@dataclass
class ConfirmSettings:
    top_k: Annotated[Integer, at_least(1)] = 3  # configurations of each arm retrained for selection
    # Selection seeds per configuration (never the search's seed).
    seeds: Annotated[
        Integer, at_least(2, "a confidence interval needs two seeds; confirm: null switches confirmation off")
    ] = 3
    # Fresh seeds for the winner's estimate and the verdict on the teacher.
    verdict_seeds: Annotated[Integer, at_least(2, "an estimate with an interval needs two seeds")] = 8
    # How the teacher is judged (tune/sweep/verdict.py): the KD winner with and without its teacher, and the
    # tuned baseline without and with one (factorial); the first pair only (ablation); or the KD winner
    # against the separately tuned baseline (tuned: not a test of the teacher alone).
    verdict: Annotated[str, one_of(VERDICT_DESIGNS)] = "factorial"
    # The smallest difference in the objective that matters: "no effect" when the 90% interval lies inside it.
    margin: Annotated[Number, above(0)] = 0.01


@dataclass
class WandbSettings:
    project: str = "polyp-kd-tune"
    group: OptionalText = None
    mode: Annotated[str, one_of(MODES)] = "auto"  # online when wandb finds an API key (`wandb login`), else offline
    entity: OptionalText = None  # W&B team or user; None: the key's default entity (or WANDB_ENTITY)


@dataclass
class DemoData:
    # core/synthetic.py's limits, checked before Ray starts
    size: Annotated[Integer, at_least(8, "px")] = 64
    train: Annotated[Integer, at_least(0)] = 48
    test: Annotated[Integer, at_least(0)] = 8
    seed: Seed = 0


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
    deploy: DeployTarget | None = None  # where the student will run; its latency budget is a search constraint

    @property
    def distillation(self) -> bool:
        return self.base.get("mode") == "distillation"

    @property
    def mode(self) -> str:
        """What the main arm's runs train: `distillation`, `baseline` or `teacher` (the base's mode)."""
        return str(self.base.get("mode", TrainConfig.mode))

    @property
    def has_control(self) -> bool:
        return self.distillation and self.control is not None and self.control.baseline

    def arm_trials(self) -> dict[str, int]:
        """Search trials per arm: `kd` (the space's own mode, with a teacher in a distillation space) and,
        with a control arm, `baseline` (the same students without a teacher), each searched on its own."""
        n, control = self.search.num_samples, self.control
        if not self.has_control or control is None:  # has_control: a control arm is set
            return {"kd": n}
        k = min(n - 1, max(1, round(control.fraction * n)))
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
        return config_from_dict({**self.base, "epochs": self.asha.max_t}, source=self.source, at="base")

    def teacher_config(self) -> TrainConfig:
        values = {**self.base, "mode": "teacher", "experiment_name": "teacher", **self.teacher.train}
        values.pop("teacher_checkpoint", None)
        return config_from_dict(values, source=self.source, at="teacher.train")

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
    grown = (
        set(changes) == {"search.num_samples"} and changes["search.num_samples"][1] > changes["search.num_samples"][0]
    )
    if not changes or (extend and grown):
        return bool(changes)
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    ways = "run it as a new sweep with --name NEW"
    ways += (
        ", or add --extend to run the extra trials"
        if grown
        else (" (--extend only raises search.num_samples; nothing else may change)" if extend else "")
    )
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


# A sweep's name names its folder under --storage (and a bucket prefix): one path component, never `..`.
SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SWEEP_NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit (it names the sweep's folder)"


def check_sweep_name(name: str, source: str, key: str = "name") -> str:
    """`name` when it is a valid sweep name; else one UserError naming `source` and the rule."""
    require(SWEEP_NAME.fullmatch(name) is not None, source, key, SWEEP_NAME_RULE, name)
    return name


def load_space(
    name: str | Path, overrides: dict[str, Any] | None = None, settings: Mapping[str, Any] | None = None
) -> SearchSpace:
    """Read and validate a space file; every problem is a UserError naming the file and key. `overrides`
    change base keys (`--set`); `settings` set space keys by dotted name (`search.num_samples` from
    --num-samples) before anything is checked, so a value from the command line meets every rule the same
    value in the file would."""
    path = resolve_space_path(name)
    raw = read_yaml_mapping(path)
    src = str(path)
    for key, value in (settings or {}).items():
        _set_dotted(raw, key, value)
    check_keys(raw, [f.name for f in dataclasses.fields(SearchSpace) if f.name != "source"], src)
    specs = build(dict[str, Any], raw.get("parameters"), src, "parameters")
    require(bool(specs), src, "parameters", "a mapping of at least one config key to a distribution", specs)
    base = build(dict[str, Any], raw.get("base"), src, "base")
    parameters = [_parse_parameter(k, v, src, dotted("parameters", k)) for k, v in specs.items()]
    for key in sorted(set(overrides or {}) & {p.name for p in all_parameters(parameters)}):
        # Every trial would take its sampled value: the override would be recorded and silently unused.
        raise UserError(
            f"--set {key}: {key} is searched in this space ({src}); change its range in the space "
            f"file, or remove it from `parameters`"
        )
    base.update(overrides or {})
    space = SearchSpace(
        name=check_sweep_name(str(raw.get("name") or path.stem), src),
        source=src,
        base=base,
        parameters=parameters,
        objective=build(Objective, raw.get("objective"), src, "objective"),
        search=build(SearchSettings, raw.get("search"), src, "search"),
        asha=build(AshaSettings, raw.get("asha"), src, "asha"),
        resources=build(Resources, raw.get("resources"), src, "resources"),
        teacher=build(TeacherSettings, raw.get("teacher"), src, "teacher"),
        wandb=build(WandbSettings, raw.get("wandb"), src, "wandb"),
        demo_data=build(DemoData, raw["demo_data"], src, "demo_data") if raw.get("demo_data") is not None else None,
    )
    # A distillation sweep answers "did the teacher help?" unless told not to: a control arm and a
    # confirmation over seeds are on by default; `control: null` / `confirm: null` switch them off.
    if raw.get("control", {}) is not None and space.distillation:
        space.control = build(ControlSettings, raw.get("control"), src, "control")
    if "confirm" in raw:
        space.confirm = build(ConfirmSettings, raw["confirm"], src, "confirm") if raw["confirm"] is not None else None
    elif space.distillation:
        space.confirm = ConfirmSettings()
    if raw.get("deploy") is not None:
        target = DeployTarget.from_dict(raw["deploy"], src, at="deploy")
        space.deploy = dataclasses.replace(target, img_size=target.img_size or space.base_config().img_size)
    _validate(space)
    return space


def _validate(space: SearchSpace) -> None:
    """The rules across keys and sections (each section's own rules are on its fields)."""
    src, asha = space.source, space.asha
    require(
        asha.grace_period <= asha.max_t, src, "asha.grace_period", f"<= asha.max_t ({asha.max_t})", asha.grace_period
    )
    require("epochs" not in space.base, src, "base.epochs", _EPOCHS_RULE, space.base.get("epochs"))
    base = space.base_config()
    # Every distribution's end points must make a valid config: catches e.g. alpha up to 1.5 now,
    # not after Ray has started and a trial fails.
    for parameter in all_parameters(space.parameters):
        for value in parameter.extremes():
            config_from_dict({**base.to_dict(), parameter.name: value}, source=src, at="parameters")
    if space.teacher.train:
        space.teacher_config()
    if space.confirm is not None:
        # Selection and verdict runs take the seeds after the base seed (tune/sweep/select.py's seed_plan).
        runs = space.confirm.seeds + space.confirm.verdict_seeds
        require(base.seed + runs <= MAX_SEED, src, "base.seed", f"<= {MAX_SEED - runs} (seeds follow it)", base.seed)
    if space.control is not None:
        require(
            space.search.num_samples >= 2 or not space.control.baseline,
            src,
            "search.num_samples",
            ">= 2 with a control arm (or control: null)",
            space.search.num_samples,
        )


_EPOCHS_RULE = "unset: asha.max_t is the epoch budget"


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """raw[a][b] = value for key "a.b"; a missing or empty section becomes a mapping (a section that is not
    one is left as written, for its own check to report)."""
    *sections, last = key.split(".")
    node = raw
    for section in sections:
        if node.get(section) is None:
            node[section] = {}
        node = node[section]
        if not isinstance(node, dict):
            return
    node[last] = value


def _whole(value: float) -> bool:
    return float(value).is_integer()


def _distinct(values: list[Any]) -> bool:
    return len(set(map(repr, values))) == len(values)


# A `parameters:` entry as the file writes it, one form per type; each form's fields are the keys it takes.
@dataclass
class _Range:
    type: str
    low: NumberAsWritten
    high: NumberAsWritten


WholeNumber = Annotated[NumberAsWritten, must(_whole, "a whole number for type int")]


@dataclass
class _IntRange:
    type: str
    low: WholeNumber
    high: WholeNumber
    step: Annotated[Integer, at_least(1)] = 1


@dataclass
class _Choice:
    type: str
    values: Annotated[list[Any], must(len, "a non-empty list"), must(_distinct, "a list without duplicates")]
    when: dict[Any, dict[str, Any]] = field(default_factory=dict)  # a value -> the parameters it opens


_FORMS: dict[str | None, type[_Range | _IntRange | _Choice]] = {
    "uniform": _Range,
    "loguniform": _Range,
    "int": _IntRange,
    "choice": _Choice,
}


def _parse_parameter(name: str, spec: Any, src: str, at: str) -> Parameter:
    keys = [f.name for f in dataclasses.fields(TrainConfig)]
    if name not in keys:
        raise unknown_key(src, at, keys)
    require(name != "epochs", src, at, _EPOCHS_RULE, spec)
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if isinstance(spec, Mapping):
        require(kind in PARAMETER_TYPES, src, dotted(at, "type"), choices(PARAMETER_TYPES), kind)
    form: _Range | _IntRange | _Choice = build(_FORMS.get(kind, _Range), spec, src, at)
    if isinstance(form, _Choice):
        check_keys(form.when, form.values, src, dotted(at, "when"))
        when = {
            value: [_parse_parameter(k, v, src, dotted(at, "when", value, k)) for k, v in subs.items()]
            for value, subs in form.when.items()
        }
        return Parameter(name, form.type, values=form.values, when=when)
    require(form.low < form.high, src, dotted(at, "low"), f"below high ({form.high})", form.low)
    require(form.type != "loguniform" or form.low > 0, src, dotted(at, "low"), "> 0 for type loguniform", form.low)
    if isinstance(form, _IntRange):
        return Parameter(name, form.type, low=int(form.low), high=int(form.high), step=form.step)
    return Parameter(name, form.type, low=form.low, high=form.high)


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
