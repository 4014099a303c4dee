import re

import pytest
import yaml

from core.errors import UserError
from tune.space import SPACES_DIR, AshaSettings, checkpoint_epochs, load_space

VALID = {
    "name": "t",
    "base": {"mode": "baseline", "encoder_weights": None, "img_size": 64},
    "parameters": {
        "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
        "student_backbone": {
            "type": "choice",
            "values": ["mobilenet_v2", "resnet18"],
            "when": {"resnet18": {"weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3}}},
        },
        "batch_size": {"type": "int", "low": 2, "high": 8, "step": 2},
    },
    "asha": {"max_t": 4, "grace_period": 1, "reduction_factor": 2},
    "search": {"num_samples": 2},
}


def write(tmp_path, space):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def with_change(path_keys, value):
    space = yaml.safe_load(yaml.safe_dump(VALID))
    node = space
    for key in path_keys[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path_keys[-1]]
    else:
        node[path_keys[-1]] = value
    return space


@pytest.mark.parametrize("name", ["demo", "kd", "baseline", "teacher"])
def test_shipped_spaces_load(name):
    space = load_space(f"{name}.yaml")
    assert space.parameters and space.base_config().epochs == space.asha.max_t


def test_kd_space_searches_the_documented_ranges():
    space = load_space("kd")
    params = {p.name: p for p in space.parameters}
    assert (params["alpha"].low, params["alpha"].high) == (0.1, 0.9)
    assert (params["temperature"].low, params["temperature"].high) == (1.0, 10.0)
    assert params["learning_rate"].type == "loguniform"
    assert (params["learning_rate"].low, params["learning_rate"].high) == (1e-5, 3e-3)
    assert {"mobilenet_v2", "efficientnet-b0", "resnet18"} <= set(params["student_backbone"].values)
    assert space.base["img_size"] == 320 and space.resources.gpu > 0


@pytest.mark.parametrize(
    "path_keys, value, message",
    [
        (["colour"], 1, "colour: unknown key; known keys: name, base, parameters"),
        (["parameters", "learning_rate", "low"], 0.1, r"parameters.learning_rate.low: must be below high \(0.01\)"),
        (["parameters", "student_backbone", "values"], [], "values: must be a non-empty list"),
        (["parameters", "student_backbone", "values"], ["resnet18", "resnet18"], "without duplicates"),
        (
            ["parameters", "learning_rate", "type"],
            "normal",
            "parameters.learning_rate.type: must be one of uniform, loguniform, int, choice, got 'normal'",
        ),
        (["parameters", "learning_rate", "high"], "big", "parameters.learning_rate.high: expected a number, got 'big'"),
        (["parameters", "learning_rate", "high"], KeyError, "parameters.learning_rate.high: missing"),
        (["parameters", "learning_rate", "low"], -1.0, "learning_rate.low: must be > 0 for type loguniform, got -1.0"),
        (["parameters", "learning_rate", "step"], 2, "learning_rate.step: unknown key; known keys: type, low, high$"),
        (["parameters", "batch_size", "step"], 0.5, "parameters.batch_size.step: expected an integer, got 0.5"),
        (["parameters", "batch_size", "high"], 8.5, "batch_size.high: must be a whole number for type int, got 8.5"),
        (["parameters", "dropout"], {"type": "uniform", "low": 0, "high": 1}, "parameters.dropout: unknown key; known"),
        (
            ["parameters", "student_backbone", "when"],
            {"vgg": {}},
            "parameters.student_backbone.when.vgg: unknown key; known keys: mobilenet_v2, resnet18",
        ),
        (["asha", "grace_period"], 10, r"asha.grace_period: must be <= asha.max_t \(4\), got 10"),
        (["asha", "max_t"], "ten", "asha.max_t: expected an integer, got 'ten'"),
        (["base", "alpha"], 2.0, r"base.alpha: must be in \[0, 1\], got 2.0"),
        (["base", "epochs"], 3, "base.epochs: must be unset: asha.max_t is the epoch budget, got 3"),
        (["parameters"], {}, "parameters: must be a mapping of at least one config key"),
        (["objective"], {"metric": "test_dice"}, "objective.metric"),
        (["search", "checkpoint_every"], 0, r"search.checkpoint_every: must be >= 1 \(epochs\), got 0"),
        (["search", "reuse_actors"], "yes", "search.reuse_actors: expected true or false, got 'yes'"),
        (["search", "trainer"], "fake", "search.trainer: must be one of torch, simulated, got 'fake'"),
        (["resources"], {"gpu": 2}, r"resources.gpu: must be in \[0, 1\] \(a trial trains on one GPU"),
        (["resources"], {"cpu": True}, "resources.cpu: expected a number, got True"),
        (["confirm"], {"seeds": 1}, r"confirm.seeds: must be >= 2 \(a confidence interval needs two seeds"),
        (["wandb"], {"mode": "loud"}, "wandb.mode: must be one of auto, online, offline, disabled, got 'loud'"),
        (["teacher"], {"train": [1]}, r"teacher.train: expected a mapping, got \[1\]"),
    ],
)
def test_bad_space_is_one_clear_error(tmp_path, path_keys, value, message):
    path = write(tmp_path, with_change(path_keys, value))
    with pytest.raises(UserError, match=message) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: ") and len(str(info.value).splitlines()) == 1


# The same three errors read the same in a training config (tests/test_config.py) and a deploy target
# (tests/test_latency.py): one validator, core/validation.py.
@pytest.mark.parametrize(
    "path_keys, value, message",
    [
        (["search", "num_sample"], 4, "search.num_sample: unknown key; known keys: num_samples, max_concurrent_trials"),
        (["search", "num_samples"], "abc", "search.num_samples: expected an integer, got 'abc'"),
        (["search", "num_samples"], 0, "search.num_samples: must be in [1, 100000], got 0"),
        (["search", "num_samples"], 10**9, "search.num_samples: must be in [1, 100000], got 1000000000"),
    ],
)
def test_unknown_key_wrong_type_and_out_of_range_are_worded_as_everywhere(tmp_path, path_keys, value, message):
    path = write(tmp_path, with_change(path_keys, value))
    with pytest.raises(UserError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    "path_keys, value, message",
    [
        (["base", "seed"], -1, "base.seed: must be in [0, 4294967295]"),
        (["base", "split_seed"], -1, "base.split_seed: must be in [0, 4294967295]"),
        (["search", "seed"], -1, "search.seed: must be in [0, 4294967295]"),
        (["search", "seed"], 2**32, "search.seed: must be in [0, 4294967295]"),
        (["demo_data"], {"seed": -1}, "demo_data.seed: must be in [0, 4294967295]"),
        (["teacher"], {"train": {"seed": -1}}, "teacher.train.seed: must be in [0, 4294967295]"),
        # Selection and verdict runs take the seeds after the base seed: the last must still be one.
        (["confirm"], {"seeds": 2, "verdict_seeds": 2}, None),
    ],
)
def test_seeds_out_of_numpys_range_are_refused_before_ray(tmp_path, path_keys, value, message):
    space = with_change(path_keys, value)
    if message is None:
        space["base"]["seed"] = 2**32 - 4
        message = "base.seed: must be <= 4294967291 (seeds follow it), got 4294967292"
    path = write(tmp_path, space)
    with pytest.raises(UserError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: {message}") and len(str(info.value).splitlines()) == 1


def test_search_settings_take_the_simulated_trainer(tmp_path):
    assert load_space(write(tmp_path, with_change(["search", "trainer"], "simulated"))).search.trainer == "simulated"
    assert load_space(write(tmp_path, VALID)).search.trainer == "torch"


def test_distribution_end_points_must_be_valid_config_values(tmp_path):
    space = with_change(["parameters", "alpha"], {"type": "uniform", "low": 0.5, "high": 1.5})
    with pytest.raises(UserError, match=r"space.yaml: parameters\.alpha: must be in \[0, 1\], got 1.5"):
        load_space(write(tmp_path, space))


def test_bare_name_resolves_in_search_spaces_and_unknown_lists_them():
    assert load_space("demo").source == str(SPACES_DIR / "demo.yaml")
    with pytest.raises(UserError, match=re.escape("demo.yaml")):
        load_space("nope.yaml")


def test_distillation_spaces_get_a_control_arm_and_confirmation_by_default(tmp_path):
    kd = {**VALID, "base": {**VALID["base"], "mode": "distillation"}, "search": {"num_samples": 8}}
    space = load_space(write(tmp_path, kd))
    assert space.has_control and (space.confirm.top_k, space.confirm.seeds, space.confirm.verdict_seeds) == (3, 3, 8)
    assert space.arm_trials() == {"kd": 4, "baseline": 4}  # the same search effort for each arm
    off = load_space(write(tmp_path, {**kd, "control": None, "confirm": None}))
    assert not off.has_control and off.confirm is None and off.arm_trials() == {"kd": 8}
    assert load_space(write(tmp_path, VALID)).confirm is None  # baseline spaces: only when asked


@pytest.mark.parametrize(
    "every, asha, expected",
    [
        (1, AshaSettings(max_t=4, grace_period=1, reduction_factor=3), [1, 2, 3, 4]),
        (4, AshaSettings(max_t=12, grace_period=4, reduction_factor=2), [4, 8, 12]),  # demo.yaml
        (5, AshaSettings(max_t=40, grace_period=5, reduction_factor=3), [5, 10, 15, 20, 25, 30, 35, 40]),  # kd.yaml
        (3, AshaSettings(max_t=10, grace_period=2, reduction_factor=3), [2, 3, 6, 9, 10]),
        (20, AshaSettings(max_t=8, grace_period=8, reduction_factor=2), [8]),
    ],
)
def test_trials_checkpoint_every_n_epochs_at_asha_rungs_and_at_the_end(every, asha, expected):
    assert checkpoint_epochs(every, asha.max_t, asha.rungs()) == expected
