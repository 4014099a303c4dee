import dataclasses
import re

import pytest

from core.config import TrainConfig, config_from_dict, load_config, parse_overrides, teacher_only_keys
from core.errors import UserError


def test_defaults_match_the_documented_ones():
    cfg = TrainConfig()
    assert (cfg.mode, cfg.student_backbone, cfg.img_size, cfg.batch_size, cfg.epochs) == (
        "baseline",
        "mobilenet_v2",
        320,
        8,
        50,
    )
    assert (cfg.learning_rate, cfg.alpha, cfg.temperature, cfg.kd_loss, cfg.seed, cfg.val_fraction) == (
        1e-4,
        0.6,
        4.0,
        "bce",
        42,
        0.1,
    )
    assert cfg.data_root == "dataset" and cfg.device == "auto" and cfg.encoder_weights == "imagenet"
    assert cfg.teacher_backbone == "resnet50"


def test_yaml_then_set_overrides_in_that_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: distillation\nlearning_rate: 1e-3\nalpha: 0.3\n")
    cfg = load_config(path, ["alpha=0.9", "encoder_weights=null"])
    # PyYAML reads "1e-3" as a string; the config still gets a float.
    assert cfg.learning_rate == pytest.approx(1e-3) and isinstance(cfg.learning_rate, float)
    assert cfg.alpha == 0.9 and cfg.mode == "distillation" and cfg.encoder_weights is None


@pytest.mark.parametrize(
    "override, key",
    [
        ("alpha=1.5", "alpha"),
        ("alpha=-0.1", "alpha"),
        ("temperature=0", "temperature"),
        ("learning_rate=0", "learning_rate"),
        ("learning_rate=-1", "learning_rate"),
        ("mode=student", "mode"),
        ("kd_loss=kl", "kd_loss"),
        ("img_size=100", "img_size"),
        ("batch_size=abc", "batch_size"),
        ("student_backbone=not_a_net", "student_backbone"),
        ("teacher_backbone=resnet5", "teacher_backbone"),
        ("encoder_weights=ssl", "encoder_weights"),
    ],
)
def test_bad_value_names_the_key(override, key):
    with pytest.raises(UserError, match=f"^--set: {key}: "):
        load_config(overrides=[override])


def test_allowed_values_are_listed_for_choices():
    with pytest.raises(UserError, match="mode: must be one of baseline, distillation, teacher, got 'kd'"):
        load_config(overrides=["mode=kd"])


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rte: 0.1\n")
    with pytest.raises(UserError, match=r"c.yaml: learning_rte: unknown key; known keys: .*learning_rate"):
        load_config(path)


# The same three errors read the same in a search space (tests/test_space.py) and a deploy target
# (tests/test_latency.py): one validator, core/validation.py.
@pytest.mark.parametrize(
    "values, message",
    [
        ({"learning_rte": 0.1}, "c.yaml: learning_rte: unknown key; known keys: experiment_name, data_root, "),
        ({"batch_size": "abc"}, "c.yaml: batch_size: expected an integer, got 'abc'"),
        ({"epochs": 0}, "c.yaml: epochs: must be >= 1, got 0"),
    ],
)
def test_unknown_key_wrong_type_and_out_of_range_are_worded_as_everywhere(values, message):
    with pytest.raises(UserError) as info:
        config_from_dict(values, source="c.yaml")
    assert str(info.value).startswith(message) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": True}, "batch_size: expected an integer, got True"),
        ({"learning_rate": "nan"}, "learning_rate: expected a finite number, got 'nan'"),
        ({"alpha": 1.5}, "alpha: must be in [0, 1], got 1.5"),
        ({"val_fraction": 1.0}, "val_fraction: must be in (0, 1), got 1.0"),
        ({"img_size": 100}, "img_size: must be a multiple of 32"),
        (
            {"img_size": 100000},
            "img_size: must be a multiple of 32 (U-Net encoders downsample 5 times), from 32 to 2048",
        ),
        ({"batch_size": 10**9}, "batch_size: must be in [1, 4096], got 1000000000"),
        ({"kd_loss": "kl"}, "kd_loss: must be one of bce, mse, got 'kl'"),
        ({"encoder_weights": "ssl"}, "encoder_weights: must be one of imagenet, null, got 'ssl'"),
        ({"experiment_name": "a b"}, "experiment_name: must be letters, digits"),
        ({"val_group_pattern": "("}, "val_group_pattern: must be a valid regular expression, got '('"),
        ({"img_size": 32, "batch_size": 1}, "batch_size: must be at least 2 at img_size 32"),
    ],
)
def test_types_and_rules_of_config_values(values, message):
    with pytest.raises(UserError) as info:
        config_from_dict(values, source="c.yaml")
    assert str(info.value).startswith(f"c.yaml: {message}")


def test_values_are_read_as_yaml_writes_them():
    cfg = config_from_dict({"epochs": 3.0, "learning_rate": "3e-4", "cache_dir": "none", "alpha": 1})
    assert (cfg.epochs, cfg.learning_rate, cfg.cache_dir, cfg.alpha) == (3, 3e-4, None, 1.0)
    assert isinstance(cfg.epochs, int) and isinstance(cfg.alpha, float)


def test_a_config_built_in_code_is_checked_by_validate():
    with pytest.raises(UserError, match="config: alpha: must be in"):
        TrainConfig(alpha=2.0).validate()
    assert TrainConfig(encoder_weights=None).validate() == TrainConfig(encoder_weights=None)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "a: [1,\n"])
def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape("c.yaml")):
        load_config(path)


def test_set_needs_key_equals_value():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["alpha"])


def test_timm_universal_backbones_are_accepted():
    assert (
        load_config(overrides=["student_backbone=tu-mobilenetv3_large_100"]).student_backbone
        == "tu-mobilenetv3_large_100"
    )


def test_teacher_only_keys_are_the_distillation_fields():
    assert teacher_only_keys() == {"alpha", "temperature", "kd_loss", "teacher_logits", "teacher_checkpoint"}
    assert teacher_only_keys() <= {f.name for f in dataclasses.fields(TrainConfig)}
