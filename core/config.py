"""The one typed training config: defaults and the rules on each value in one place, YAML / `--set key=value`
loading, and which keys only distillation uses (marked on the fields).

The same `TrainConfig` is what the CLI builds, what a Ray trial receives, what a checkpoint embeds and
what an export writes; every invalid value is reported as one `UserError` naming the key (core/validation.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from core.errors import UserError
from core.kd_losses import KD_LOSSES
from core.split import DEFAULT_GROUP_PATTERN, DEFAULT_SOURCE_PATTERN, VAL_SPLITS
from core.validation import (
    Integer,
    Number,
    OptionalText,
    above,
    at_least,
    between,
    build,
    dotted,
    must,
    one_of,
    require,
)

MODES = ("baseline", "distillation", "teacher")
TEACHER_LOGITS = ("cached", "online")
ENCODER_WEIGHTS = ("imagenet", None)
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_ENCODER_EXAMPLES = "mobilenet_v2, efficientnet-b0, resnet18, tu-mobilenetv3_large_100"


def _is_encoder(name: str) -> bool:
    import segmentation_models_pytorch as smp

    if name in smp.encoders.get_encoder_names():
        return True
    import timm

    # smp's "tu-" prefix wraps any timm model that can return feature maps.
    return name.startswith("tu-") and timm.is_model(name[3:])


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


# Upper bounds that stop a typo (img_size: 100000) before it reaches an allocation: far above any real use.
MAX_IMG_SIZE = 2048
MAX_BATCH_SIZE = 4096
# Seeds go to numpy (SeedSequence: no negative), torch and Optuna's TPE (numpy's RandomState: below 2**32).
MAX_SEED = 2**32 - 1

# The rules a value must meet beyond its type; each text completes "<key>: must be ..., got <value>".
ImgSize = Annotated[
    Integer,
    must(
        lambda v: 32 <= v <= MAX_IMG_SIZE and v % 32 == 0,
        f"a multiple of 32 (U-Net encoders downsample 5 times), from 32 to {MAX_IMG_SIZE}",
    ),
]
Backbone = Annotated[
    str,
    must(
        _is_encoder,
        f"a segmentation-models-pytorch encoder, e.g. {_ENCODER_EXAMPLES} "
        f"(all: smp.encoders.get_encoder_names(), or 'tu-' + a timm model)",
    ),
]
FolderName = Annotated[
    str, must(lambda v: re.fullmatch(r"[\w.\-]+", v), "letters, digits, '.', '_' or '-' (it names a folder)")
]
Device = Annotated[str, must(_DEVICE_PATTERN.match, "one of auto, cpu, cuda, cuda:N, mps")]
Pattern = Annotated[str, must(_compiles, "a valid regular expression")]
SourcePattern = Annotated[
    str,
    must(
        lambda v: _compiles(v) and "source" in re.compile(v).groupindex,
        "a valid regular expression with a (?P<source>...) group",
    ),
]
Seed = Annotated[Integer, between(0, MAX_SEED, why="what numpy's and Optuna's random generators accept")]
VAL_AVERAGES = ("sources", "images")


@dataclass
class TrainConfig:
    experiment_name: FolderName = "polyp-kd"
    data_root: str = "dataset"
    save_dir: str = "results/runs"
    mode: Annotated[str, one_of(MODES)] = "baseline"
    student_backbone: Backbone = "mobilenet_v2"
    teacher_backbone: Backbone = "resnet50"
    encoder_weights: Annotated[OptionalText, one_of(ENCODER_WEIGHTS)] = "imagenet"
    teacher_checkpoint: OptionalText = field(default=None, metadata={"teacher_only": True})
    img_size: ImgSize = 320
    batch_size: Annotated[Integer, between(1, MAX_BATCH_SIZE)] = 8
    epochs: Annotated[Integer, at_least(1)] = 50
    learning_rate: Annotated[Number, above(0)] = 1e-4
    weight_decay: Annotated[Number, at_least(0)] = 1e-4
    alpha: Annotated[Number, between(0, 1)] = field(default=0.6, metadata={"teacher_only": True})
    temperature: Annotated[Number, above(0)] = field(default=4.0, metadata={"teacher_only": True})
    # A name in core/kd_losses.py's registry, read when checked: a term registered later is allowed.
    kd_loss: Annotated[str, one_of(lambda: tuple(KD_LOSSES))] = field(default="bce", metadata={"teacher_only": True})
    teacher_logits: Annotated[str, one_of(TEACHER_LOGITS)] = field(default="cached", metadata={"teacher_only": True})
    seed: Seed = 42  # initialisation and augmentation order
    val_fraction: Annotated[Number, between(0, 1, open_ends=True)] = 0.1
    # random | grouped (frames of one video stay on one side; core/split.py)
    val_split: Annotated[str, one_of(VAL_SPLITS)] = "random"
    val_group_pattern: Pattern = DEFAULT_GROUP_PATTERN
    val_groups: OptionalText = None  # grouped only: a CSV of stem,group[,source] rows replacing the found groups
    val_source_pattern: SourcePattern = DEFAULT_SOURCE_PATTERN  # a stem's data set, e.g. clinicdb-12 -> clinicdb
    # What val Dice (and so selection) averages over: each source equally, or every image; null: sources for
    # a grouped split, images for a random one.
    val_average: Annotated[OptionalText, one_of((None, *VAL_AVERAGES))] = None
    split_seed: Seed = 42  # the validation split; fixed while `seed` varies across repeated runs
    num_workers: Annotated[Integer, at_least(0)] = 2
    device: Device = "auto"
    cache_dir: OptionalText = None

    def validate(self) -> TrainConfig:
        """This config, checked as one read from a file is (a config built in code is not checked until here)."""
        return config_from_dict(self.to_dict(), source="config")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return config_from_dict({**self.to_dict(), **changes}, source="overrides")

    @property
    def val_averaging(self) -> str:
        """What validation scores average over (`val_average`, or its default for the split)."""
        return self.val_average or ("sources" if self.val_split == "grouped" else "images")

    @property
    def run_dir(self) -> Path:
        return Path(self.save_dir) / self.experiment_name


def teacher_only_keys() -> frozenset[str]:
    """The TrainConfig keys that mean something only when a teacher is distilled into the student."""
    # The control arm of a sweep trains the same student without a teacher and must not search these. A new
    # distillation parameter is marked where it is declared (`metadata={"teacher_only": True}`), not in a
    # separate list that someone has to remember to extend.
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("teacher_only"))


def config_from_dict(values: Mapping[str, Any], source: str = "config", at: str = "") -> TrainConfig:
    """Build and validate a TrainConfig from plain values; `source` names where they came from and `at` the
    dotted key they sit under there (e.g. a search space's `base`)."""
    cfg = build(TrainConfig, values, source, at)
    # At img_size 32 the encoders' deepest feature map is 1x1: a batch of one leaves BatchNorm a single
    # value per channel and training fails (from 64 px on, batch 1 trains).
    require(
        cfg.batch_size >= 2 or cfg.img_size > 32,
        source,
        dotted(at, "batch_size"),
        "at least 2 at img_size 32 (BatchNorm needs more than one value per channel there)",
        cfg.batch_size,
    )
    # A val_groups file under a random split would be read by nothing: the user believes videos are kept whole.
    require(
        cfg.val_groups is None or cfg.val_split == "grouped",
        source,
        dotted(at, "val_groups"),
        "null unless val_split is grouped (a random split reads no groups: set val_split: grouped)",
        cfg.val_groups,
    )
    return cfg


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


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), extra: Mapping[str, Any] | None = None
) -> TrainConfig:
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
