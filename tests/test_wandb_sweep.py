"""tune/tracking/wandb_sweep.py: the W&B sweep configuration generated from a search space is one W&B accepts,
maps each distribution with its exact bounds, and a run started with `join_sweep`'s arguments records the
sweep id (offline too, so `wandb sync` attaches it). Nothing here reaches the W&B server."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from core.config import TrainConfig
from tune.space import load_space
from tune.tracking.wandb_sweep import SWEEP_YAML, join_sweep, register_sweep, sweep_config, write_sweep_yaml

ROOT = Path(__file__).resolve().parents[1]

# wandb 0.31 ships no sweep schema (its `wandb[sweeps]` extra, the `sweeps` package, holds it). This is the part
# of that schema (wandb/sweeps src/sweeps/config/schema.json, draft 7) the generated configs use; the configs
# of kd.yaml and demo.yaml were also checked with sweeps 0.3.0's schema_violations_from_proposed_config.
_NUMBER, _INTEGER = {"type": "number"}, {"type": "integer"}
W_AND_B_SCHEMA = {
    "type": "object",
    "required": ["method"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "project": {"type": "string"},
        "entity": {"type": "string"},
        "program": {"type": "string"},
        "method": {"enum": ["bayes", "random", "grid", "custom"]},
        "metric": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "goal": {"enum": ["minimize", "maximize"]}},
        },
        "controller": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["local", "cloud"]}}},
        "parameters": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"},
            "additionalProperties": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["values"],
                        "additionalProperties": False,
                        "properties": {
                            "values": {"type": "array", "minItems": 1},
                            "distribution": {"enum": ["categorical"]},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["min", "max", "distribution"],
                        "additionalProperties": False,
                        "properties": {"min": _NUMBER, "max": _NUMBER, "distribution": {"enum": ["uniform"]}},
                    },
                    {
                        "type": "object",
                        "required": ["min", "max", "distribution"],
                        "additionalProperties": False,
                        "properties": {
                            "min": {"type": "number", "exclusiveMinimum": 0},
                            "max": _NUMBER,
                            "distribution": {"enum": ["log_uniform_values"]},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["min", "max"],
                        "additionalProperties": False,
                        "properties": {"min": _INTEGER, "max": _INTEGER, "distribution": {"enum": ["int_uniform"]}},
                    },
                ]
            },
        },
    },
}


def assert_valid_for_wandb(config: dict) -> None:
    """The schema, plus what the `sweeps` package checks beyond it (min below max) and what a sweep with a
    local controller needs from this project: a metric with a goal, every parameter a key of the runs' config."""
    jsonschema.Draft7Validator(W_AND_B_SCHEMA).validate(config)
    for name, spec in config["parameters"].items():
        assert "values" in spec or spec["min"] < spec["max"], name
    assert config["controller"] == {"type": "local"} and config["metric"]["goal"]
    run_config_keys = {f.name for f in dataclasses.fields(TrainConfig)} | {"arm"}  # run_settings.py's run config
    assert set(config["parameters"]) <= run_config_keys


def test_kd_space_maps_every_distribution_with_its_bounds_and_the_objective():
    config = sweep_config(load_space("kd"))
    assert_valid_for_wandb(config)
    assert config["parameters"] == {
        "alpha": {"distribution": "uniform", "min": 0.1, "max": 0.9},
        "temperature": {"distribution": "uniform", "min": 1.0, "max": 10.0},
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 3e-3},
        "student_backbone": {
            "values": [
                "tu-mobilenetv3_small_100",
                "tu-mobilenetv3_large_100",
                "mobilenet_v2",
                "efficientnet-b0",
                "resnet18",
                "resnet34",
            ]
        },
        "weight_decay": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-3},  # conditional
        "arm": {"values": ["kd", "baseline"]},
    }
    assert config["metric"] == {"name": "best_val_dice", "goal": "maximize"}
    assert (config["name"], config["method"], config["project"]) == ("kd", "bayes", "polyp-kd-tune")
    assert "weight_decay is searched only when student_backbone=resnet18" in config["description"]
    assert "does not search alpha, temperature" in config["description"]
    assert sweep_config(load_space("kd"), name="kd-rerun")["name"] == "kd-rerun"


def test_demo_space_config_is_valid_for_wandb():
    config = sweep_config(load_space("demo"))
    assert_valid_for_wandb(config)
    assert config["parameters"]["learning_rate"] == {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-2}
    assert config["parameters"]["student_backbone"] == {"values": ["mobilenet_v2", "resnet18"]}
    assert "searched only when" not in config["description"]  # demo.yaml has no conditional parameter


def test_integer_parameters_and_a_minimised_objective(tmp_path):
    space_file = tmp_path / "ints.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "batch_size": {"type": "int", "low": 2, "high": 8, "step": 2},
                    "img_size": {"type": "int", "low": 32, "high": 64},
                },
                "objective": {"metric": "best_val_dice", "mode": "min"},
            }
        )
    )
    config = sweep_config(load_space(space_file))
    assert_valid_for_wandb(config)
    # A stepped int is Optuna's exact grid (q_uniform would round to multiples of q from 0, as floats).
    assert config["parameters"] == {
        "batch_size": {"values": [2, 4, 6, 8]},
        "img_size": {"distribution": "int_uniform", "min": 32, "max": 64},
    }
    assert config["metric"]["goal"] == "minimize" and "arm" not in config["parameters"]


def test_sweep_yaml_reads_back_as_the_config_with_how_to_register_it(tmp_path):
    space = load_space("kd")
    path = write_sweep_yaml(space, tmp_path / "results" / "kd")
    assert path == tmp_path / "results" / "kd" / SWEEP_YAML
    assert yaml.safe_load(path.read_text()) == sweep_config(space)
    assert "wandb sweep -p polyp-kd-tune" in path.read_text() and "weight_decay is searched only" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == [SWEEP_YAML]  # no temporary file left


def test_join_sweep_puts_the_id_in_the_run_settings_and_keeps_the_rest():
    import wandb

    kwargs = {"project": "p", "id": "t1", "settings": {"console": "off"}}
    assert join_sweep(kwargs, "abc123xy") == {
        "project": "p",
        "id": "t1",
        "settings": {"console": "off", "sweep_id": "abc123xy"},
    }
    assert kwargs["settings"] == {"console": "off"}  # the caller's arguments are not changed
    assert join_sweep(kwargs, None) == kwargs
    joined = join_sweep({"settings": wandb.Settings(console="off")}, "abc123xy")["settings"]
    assert (joined.sweep_id, joined.console) == ("abc123xy", "off")


def test_an_offline_run_started_with_join_sweep_records_the_sweep_id(tmp_path):
    """The run record of the .wandb log holds the sweep id (what `wandb sync` uploads as the run's sweep), and
    the project and run id wandb.init was given (WANDB_SWEEP_ID would have dropped both). The arguments travel
    as plain data, as Ray pickles them to its W&B logging actor."""
    kwargs = join_sweep(
        dict(
            mode="offline",
            dir=str(tmp_path),
            project="polyp-kd-tune",
            id="trial1",
            config={"alpha": 0.5, "arm": "kd"},
            settings={"console": "off"},
        ),
        "abc123xy",
    )
    code = (
        "import json, sys, wandb\n"
        "run = wandb.init(**json.loads(sys.argv[1]))\n"
        "run.log({'best_val_dice': 0.5})\n"
        "run.finish()\n"
    )
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("WANDB_SWEEP_ID", None)
    subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    [run_dir] = (tmp_path / "wandb").glob("offline-run-*-trial1")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    [record] = [
        r["run"]
        for r in map(json.loads, filter(lambda line: line.startswith("{"), out.splitlines()))
        if r.get("type") == "run"
    ]
    assert (record["sweep_id"], record["project"], record["run_id"]) == ("abc123xy", "polyp-kd-tune", "trial1")


def test_register_sweep_sends_the_generated_config_and_a_failure_is_one_line(monkeypatch, capsys):
    import wandb

    space, calls = load_space("demo"), []
    monkeypatch.setattr(wandb, "sweep", lambda **kwargs: calls.append(kwargs) or "abc123xy")
    assert register_sweep(space, "team", "polyp-kd-tune", prior_runs=["t1", "t2"]) == "abc123xy"
    assert calls == [
        {"sweep": sweep_config(space), "entity": "team", "project": "polyp-kd-tune", "prior_runs": ["t1", "t2"]}
    ]
    capsys.readouterr()

    def offline(**_):
        raise wandb.errors.CommError("Network error (ConnectionError), entering retry loop.")

    monkeypatch.setattr(wandb, "sweep", offline)
    assert register_sweep(space, None, "polyp-kd-tune") is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("W&B: registering the W&B Sweep (at most ")
    assert "Network error" in out[1] and SWEEP_YAML in out[1]


@pytest.mark.parametrize("space_name", ["baseline", "teacher"])
def test_the_other_shipped_spaces_are_valid_for_wandb(space_name):
    assert_valid_for_wandb(sweep_config(load_space(space_name)))
