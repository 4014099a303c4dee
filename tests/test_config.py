import dataclasses

import pytest

from core.config import TrainConfig, load_config, parse_overrides, teacher_only_keys
from core.errors import UserError


def test_defaults_match_the_documented_ones():
    cfg = TrainConfig()
    assert (cfg.mode, cfg.student_backbone, cfg.img_size, cfg.batch_size, cfg.epochs) == \
        ("baseline", "mobilenet_v2", 320, 8, 50)
    assert (cfg.learning_rate, cfg.alpha, cfg.temperature, cfg.kd_loss, cfg.seed, cfg.val_fraction) == \
        (1e-4, 0.6, 4.0, "bce", 42, 0.1)
    assert cfg.data_root == "dataset" and cfg.device == "auto" and cfg.encoder_weights == "imagenet"
    assert cfg.teacher_backbone == "resnet50"


def test_yaml_then_set_overrides_in_that_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: distillation\nlearning_rate: 1e-3\nalpha: 0.3\n")
    cfg = load_config(path, ["alpha=0.9", "encoder_weights=null"])
    # PyYAML reads "1e-3" as a string; the config still gets a float.
    assert cfg.learning_rate == pytest.approx(1e-3) and isinstance(cfg.learning_rate, float)
    assert cfg.alpha == 0.9 and cfg.mode == "distillation" and cfg.encoder_weights is None


@pytest.mark.parametrize("override, key", [
    ("alpha=1.5", "alpha"), ("alpha=-0.1", "alpha"), ("temperature=0", "temperature"),
    ("learning_rate=0", "learning_rate"), ("learning_rate=-1", "learning_rate"), ("mode=student", "mode"),
    ("kd_loss=kl", "kd_loss"), ("img_size=100", "img_size"), ("batch_size=abc", "batch_size"),
    ("student_backbone=not_a_net", "student_backbone"), ("teacher_backbone=resnet5", "teacher_backbone"),
    ("encoder_weights=ssl", "encoder_weights"),
])
def test_bad_value_names_the_key(override, key):
    with pytest.raises(UserError, match=f"'{key}'"):
        load_config(overrides=[override])


def test_allowed_values_are_listed_for_choices():
    with pytest.raises(UserError, match="baseline, distillation, teacher"):
        load_config(overrides=["mode=kd"])


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rte: 0.1\n")
    with pytest.raises(UserError, match=r"c.yaml.*unknown config key 'learning_rte'.*learning_rate"):
        load_config(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "a: [1,\n"])
def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="c.yaml"):
        load_config(path)


def test_set_needs_key_equals_value():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["alpha"])


def test_timm_universal_backbones_are_accepted():
    assert load_config(overrides=["student_backbone=tu-mobilenetv3_large_100"]).student_backbone \
        == "tu-mobilenetv3_large_100"


def test_teacher_only_keys_are_the_distillation_fields():
    assert teacher_only_keys() == {"alpha", "temperature", "kd_loss", "teacher_logits", "teacher_checkpoint"}
    assert teacher_only_keys() <= {f.name for f in dataclasses.fields(TrainConfig)}
