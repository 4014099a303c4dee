"""The one typed training config: defaults, YAML / `--set key=value` loading, validation, and which keys
only distillation uses (marked on the fields).

The same `TrainConfig` is what the CLI builds, what a Ray trial receives, what a checkpoint embeds and
what an export writes; every invalid value is reported as one `UserError` naming the key.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError
from core.kd_losses import KD_LOSSES
from core.split import DEFAULT_GROUP_PATTERN, VAL_SPLITS

MODES = ("baseline", "distillation", "teacher")
TEACHER_LOGITS = ("cached", "online")
ENCODER_WEIGHTS = ("imagenet", None)
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass
class TrainConfig:
    experiment_name: str = "polyp-kd"
    data_root: str = "dataset"
    save_dir: str = "results/runs"
    mode: str = "baseline"
    student_backbone: str = "mobilenet_v2"
    teacher_backbone: str = "resnet50"
    encoder_weights: str | None = "imagenet"
    teacher_checkpoint: str | None = field(default=None, metadata={"teacher_only": True})
    img_size: int = 320
    batch_size: int = 8
    epochs: int = 50
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    alpha: float = field(default=0.6, metadata={"teacher_only": True})
    temperature: float = field(default=4.0, metadata={"teacher_only": True})
    kd_loss: str = field(default="bce", metadata={"teacher_only": True})  # a name in core/kd_losses.py
    teacher_logits: str = field(default="cached", metadata={"teacher_only": True})
    seed: int = 42              # initialisation and augmentation order
    val_fraction: float = 0.1
    val_split: str = "random"   # random | grouped (frames of one video stay on one side; core/split.py)
    val_group_pattern: str = DEFAULT_GROUP_PATTERN
    val_groups: str | None = None  # grouped only: a CSV of stem,group rows that replaces the found groups
    split_seed: int = 42        # the validation split; fixed while `seed` varies across repeated runs
    num_workers: int = 2
    device: str = "auto"
    cache_dir: str | None = None

    def validate(self) -> TrainConfig:
        """Check every value; raises UserError naming the first bad key and what it accepts."""
        _one_of("mode", self.mode, MODES)
        _one_of("kd_loss", self.kd_loss, tuple(KD_LOSSES))
        _one_of("teacher_logits", self.teacher_logits, TEACHER_LOGITS)
        _one_of("encoder_weights", self.encoder_weights, ENCODER_WEIGHTS)
        _one_of("val_split", self.val_split, VAL_SPLITS)
        try:
            re.compile(self.val_group_pattern)
        except re.error as err:
            raise UserError(f"'val_group_pattern' is not a valid regular expression ({err})") from None
        _check("alpha", 0.0 <= self.alpha <= 1.0, self.alpha, "a number in [0, 1]")
        _check("temperature", self.temperature > 0, self.temperature, "a number > 0")
        _check("learning_rate", self.learning_rate > 0, self.learning_rate, "a number > 0")
        _check("weight_decay", self.weight_decay >= 0, self.weight_decay, "a number >= 0")
        _check("img_size", self.img_size >= 32 and self.img_size % 32 == 0, self.img_size,
               "a multiple of 32 (U-Net encoders downsample 5 times), at least 32")
        _check("batch_size", self.batch_size >= 1, self.batch_size, "an integer >= 1")
        # At img_size 32 the encoders' deepest feature map is 1x1: a batch of one leaves BatchNorm a single
        # value per channel and training fails (from 64 px on, batch 1 trains).
        _check("batch_size", self.batch_size >= 2 or self.img_size > 32, self.batch_size,
               "at least 2 at img_size 32 (BatchNorm needs more than one value per channel there)")
        _check("epochs", self.epochs >= 1, self.epochs, "an integer >= 1")
        _check("val_fraction", 0.0 < self.val_fraction < 1.0, self.val_fraction, "a number in (0, 1)")
        _check("num_workers", self.num_workers >= 0, self.num_workers, "an integer >= 0")
        _check("device", bool(_DEVICE_PATTERN.match(self.device)), self.device,
               "one of auto, cpu, cuda, cuda:N, mps")
        _check("experiment_name", bool(re.fullmatch(r"[\w.\-]+", self.experiment_name)),
               self.experiment_name, "letters, digits, '.', '_' or '-' (it names a folder)")
        _check_backbone("student_backbone", self.student_backbone)
        _check_backbone("teacher_backbone", self.teacher_backbone)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return config_from_dict({**self.to_dict(), **changes}, source="overrides")

    @property
    def run_dir(self) -> Path:
        return Path(self.save_dir) / self.experiment_name


def teacher_only_keys() -> frozenset[str]:
    """The TrainConfig keys that mean something only when a teacher is distilled into the student."""
    # The control arm of a sweep trains the same student without a teacher and must not search these. A new
    # distillation parameter is marked where it is declared (`metadata={"teacher_only": True}`), not in a
    # separate list that someone has to remember to extend.
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("teacher_only"))


def config_from_dict(values: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Build and validate a TrainConfig from plain values; `source` names where they came from."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise UserError(f"{source}: unknown config key '{key}'; known keys: {', '.join(known)}")
        kwargs[key] = _coerce(key, value, hints[key], source)
    try:
        return TrainConfig(**kwargs).validate()
    except UserError as err:
        raise UserError(f"{source}: {err}") from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every failure is a UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a YAML mapping of `key: value` lines, got a {type(data).__name__}")
    return data


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Parse `key=value` strings; values are read as YAML scalars (so `null`, `3`, `1e-4` work)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected key=value, e.g. --set learning_rate=3e-4")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                extra: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then `extra` values, then `--set key=value` overrides."""
    values: dict[str, Any] = {}
    source = "config"
    if path is not None:
        values.update(read_yaml_mapping(path))
        source = str(path)
    values.update(extra or {})
    set_values = parse_overrides(overrides)
    values.update(set_values)
    if set_values:
        source = f"{source} + --set" if path else "--set"
    return config_from_dict(values, source=source)


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    optional = type(None) in typing.get_args(hint)
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none", "")):
        if optional:
            return None
        raise UserError(f"{source}: '{key}' must not be null")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base is float:
        # PyYAML reads `1e-4` (no dot) as a string, so numeric strings are accepted here.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif base is str:
        if isinstance(value, str):
            return value
    raise UserError(f"{source}: '{key}' must be {base.__name__}, got {value!r}")


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        shown = ", ".join("null" if a is None else str(a) for a in allowed)
        raise UserError(f"'{key}' is {value!r}; allowed values: {shown}")


def _check(key: str, ok: bool, value: Any, expected: str) -> None:
    if not ok:
        raise UserError(f"'{key}' is {value!r}; it must be {expected}")


def _check_backbone(key: str, name: str) -> None:
    import segmentation_models_pytorch as smp

    if name in smp.encoders.get_encoder_names():
        return
    if name.startswith("tu-"):
        import timm

        # smp's "tu-" prefix wraps any timm model that can return feature maps.
        if timm.is_model(name[3:]):
            return
    examples = "mobilenet_v2, efficientnet-b0, resnet18, tu-mobilenetv3_large_100"
    raise UserError(f"'{key}' is {name!r}, not a segmentation-models-pytorch encoder; "
                    f"e.g. {examples} (all: smp.encoders.get_encoder_names(), or 'tu-' + a timm model)")
