"""cluster.yaml against Ray's own cluster schema, and launch.sh's commands (dry run, no cloud)."""
import copy
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def load_cluster():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    config = prepare_config(copy.deepcopy(load_cluster()))
    validate_config(config)


def test_schema_check_can_fail():
    broken = load_cluster()
    broken["available_node_types"]["gpu_worker"]["min_wrkers"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_cluster_shape_head_runs_no_trials_and_workers_are_spot_gpus():
    config = load_cluster()
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert all(w["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for w in workers.values())
    assert all(w["min_workers"] == 0 and w["max_workers"] >= 1 for w in workers.values())
    assert config["idle_timeout_minutes"] > 0
    assert any("requirements.txt" in c for c in config["setup_commands"])
    assert "." in config["file_mounts"].values()


def launch(*args, env=None):
    return subprocess.run([str(ROOT / "launch.sh"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


def test_help_lists_every_command():
    out = launch("--help")
    assert out.returncode == 0
    for command in ("up", "data", "sweep", "status", "logs", "fetch", "down", "--dry-run"):
        assert command in out.stdout


@pytest.mark.parametrize("args, expected", [
    (["up"], "ray up -y cluster.yaml"),
    (["down"], "ray down -y cluster.yaml"),
    (["status"], "ray exec cluster.yaml"),
    (["--storage", "s3://bucket/sweeps", "fetch", "kd"], "aws s3 sync s3://bucket/sweeps/kd results/kd"),
    (["--storage", "gs://bucket/sweeps", "fetch", "kd", "/tmp/kd"], "gsutil -m rsync -r gs://bucket/sweeps/kd /tmp/kd"),
])
def test_dry_run_prints_the_commands(args, expected):
    out = launch("--dry-run", *args)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout


def test_dry_run_sweep_submits_tune_search_with_the_storage():
    out = launch("--dry-run", "--storage", "s3://bucket/sweeps", "sweep", "--space", "kd.yaml", "--num-samples", "8")
    assert out.returncode == 0, out.stderr
    submit = next(line for line in out.stdout.splitlines() if line.startswith("ray job submit"))
    assert "python -m tune.search --address auto --storage s3://bucket/sweeps" in submit
    assert "--space kd.yaml --num-samples 8" in submit


def test_dry_run_data_syncs_to_every_node(demo_root):
    out = launch("--dry-run", "data", str(demo_root))
    assert out.returncode == 0, out.stderr
    assert f"ray rsync-up --all-nodes cluster.yaml {demo_root}/ " in out.stdout and "polyp-kd-data/" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["sweep", "--space", "kd.yaml"], "no shared storage"),
    (["--storage", "s3://b", "sweep", "--space", "nope.yaml"], "nope.yaml: search-space file not found"),
    (["--storage", "s3://b", "sweep"], "sweep needs --space"),
    (["--cluster", "missing.yaml", "up"], "missing.yaml: cluster config not found"),
    (["data", "/nonexistent"], "no TrainDataset"),
    (["bogus"], "unknown command 'bogus'"),
])
def test_errors_are_one_clear_line(args, message):
    env = {k: v for k, v in __import__("os").environ.items() if k != "POLYP_KD_STORAGE"}
    out = launch("--dry-run", *args, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
