"""cluster.yaml against Ray's own cluster schema, the shipped spaces' packing on its worker types, and
launch.sh's commands (dry run, no cloud)."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tune.cluster import storage
from tune.cluster.plan import cluster_shape
from tune.space import SPACES_DIR, load_space

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
    # Stated, so the autoscaler and the packing check below know them before a node exists.
    assert all(w["resources"].get("GPU", 0) >= 1 and w["resources"]["CPU"] >= 1 for w in workers.values())
    assert all(w["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for w in workers.values())
    assert all(w["min_workers"] == 0 and w["max_workers"] >= 1 for w in workers.values())
    assert config["idle_timeout_minutes"] > 0
    assert any("requirements.txt" in c for c in config["setup_commands"])
    assert "." in config["file_mounts"].values()


# Instance type -> (vCPUs, GPUs), from AWS's instance type pages: what the stated resources must match.
AWS_INSTANCES = {"g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.12xlarge": (48, 4), "g5.48xlarge": (192, 8)}


def test_the_control_plane_is_closed():
    """Ray's ports reachable by nobody without the cluster's token; the dashboard on the head's loopback (the
    job API goes through launch.sh's SSH tunnel); SSH only from a stated range; the workers' profile is not
    the head's; git-ignored files and the token never ship with the code."""
    config = load_cluster()
    head_start, worker_start = config["head_start_ray_commands"][-1], config["worker_start_ray_commands"][-1]
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    assert all(
        "RAY_AUTH_MODE=token ray start" in c and "chmod 600 ~/.ray/auth_token" in c for c in (head_start, worker_start)
    )
    assert config["file_mounts"]["~/.ray/auth_token"] == "./.ray_auth_token"
    assert ".ray_auth_token" in (ROOT / ".gitignore").read_text().split()
    assert config["rsync_filter"] == [".gitignore"] and "/.ray_auth_token" in config["rsync_exclude"]
    (rule,) = config["provider"]["security_group"]["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (22, 22) and all(r["CidrIp"] != "0.0.0.0/0" for r in rule["IpRanges"])
    nodes = config["available_node_types"]
    head_profile = nodes[config["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"]
    worker_profiles = {
        n["node_config"]["IamInstanceProfile"]["Name"] for k, n in nodes.items() if k != config["head_node_type"]
    }
    assert worker_profiles == {"polyp-kd-tune-worker"} and head_profile == "polyp-kd-tune-head"


def test_up_writes_an_owner_only_token_once_and_a_sweep_needs_it(tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("launch.sh", "cluster.yaml"):
        (work / name).write_bytes((ROOT / name).read_bytes())
    (work / "launch.sh").chmod(0o755)
    fake_bin = tmp_path / "bin"  # a `ray` that only records how it was called
    fake_bin.mkdir()
    (fake_bin / "ray").write_text('#!/bin/sh\necho "ray $*" >> "$RAY_CALLS"\n')
    (fake_bin / "ray").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "RAY_CALLS": str(tmp_path / "calls"),
        "PYTHON": sys.executable,
    }
    run = subprocess.run([str(work / "launch.sh"), "up"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    token = work / ".ray_auth_token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) == 64
    assert token.read_text().strip() not in run.stdout + run.stderr  # never printed
    first = token.read_text()
    subprocess.run([str(work / "launch.sh"), "up"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert token.read_text() == first  # kept: the running cluster has it
    token.unlink()
    out = subprocess.run(
        [str(work / "launch.sh"), "--storage", "s3://b", "sweep", "--space", "x.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no Ray token here; ./launch.sh up writes it" in out.stderr


def test_worker_resources_match_their_instance_types():
    for worker in cluster_shape().workers:
        assert (worker.cpu, worker.gpu) == AWS_INSTANCES[worker.instance], worker


@pytest.mark.parametrize("space_file", sorted(p.name for p in SPACES_DIR.glob("*.yaml")))
def test_every_shipped_space_fits_a_worker_type(space_file):
    r = load_space(space_file).resources
    fits = {w.name: w.trials_per_node(r.cpu, r.gpu) for w in cluster_shape().workers}
    assert max(fits.values()) >= 1, f"{space_file}: a trial ({r.cpu:g} CPU, {r.gpu:g} GPU) fits no worker: {fits}"


def test_kd_space_packs_two_trials_per_gpu_on_each_worker_type():
    r = load_space("kd.yaml").resources
    for worker in cluster_shape().workers:
        assert worker.trials_per_node(r.cpu, r.gpu) == 2 * worker.gpu, worker


def test_packing_check_can_fail():
    xlarge = next(w for w in cluster_shape().workers if w.instance == "g5.xlarge")
    assert xlarge.trials_per_node(4, 0.5) == 1  # the CPUs, not the GPU, would bound it
    assert xlarge.trials_per_node(8, 1) == 0


def launch(*args, env=None):
    return subprocess.run(
        [str(ROOT / "launch.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env, check=False
    )


def test_help_lists_every_command():
    out = launch("--help")
    assert out.returncode == 0
    for command in ("up", "data", "sweep", "status", "logs", "fetch", "down", "--dry-run"):
        assert command in out.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["up"], "ray up -y cluster.yaml"),
        (["down"], "ray down -y cluster.yaml"),
        (["status"], "ray exec cluster.yaml"),
        (["--storage", "s3://bucket/sweeps", "fetch", "kd"], "aws s3 sync s3://bucket/sweeps/kd results/kd"),
        (
            ["--storage", "gs://bucket/sweeps", "fetch", "kd", "/tmp/kd"],
            "gsutil -m rsync -r gs://bucket/sweeps/kd /tmp/kd",
        ),
    ],
)
def test_dry_run_prints_the_commands(args, expected):
    out = launch("--dry-run", *args)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout


def test_dry_run_sweep_submits_tune_search_with_the_storage():
    out = launch(
        "--dry-run",
        "--storage",
        "s3://bucket/sweeps",
        "sweep",
        "--space",
        "kd.yaml",
        "--num-samples",
        "8",
        "--teacher",
        "s3://bucket/teachers/best.pt",
    )
    assert out.returncode == 0, out.stderr
    submit = next(line for line in out.stdout.splitlines() if line.startswith("ray job submit"))
    assert "python -m tune.search --address auto --storage s3://bucket/sweeps" in submit
    assert "--space kd.yaml --num-samples 8 --teacher s3://bucket/teachers/best.pt" in submit
    assert "tune.storage upload" not in out.stdout  # a teacher already in the storage is not uploaded


def local_teacher_space(tmp_path: Path, teacher: Path, **base) -> Path:
    space = yaml.safe_load((SPACES_DIR / "kd.yaml").read_text())
    space["teacher"]["checkpoint"] = str(teacher)
    space["base"].update(base)
    path = tmp_path / "kd-local-teacher.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def test_dry_run_sweep_uploads_a_local_teacher_and_the_job_reads_it_from_the_storage(teacher_checkpoint, tmp_path):
    space = local_teacher_space(tmp_path, teacher_checkpoint)
    out = launch("--dry-run", "--storage", "s3://bucket/sweeps", "sweep", "--space", str(space))
    assert out.returncode == 0, out.stderr
    upload = next(line for line in out.stdout.splitlines() if "-m tune.cluster.storage upload" in line)
    match = re.search(
        rf"upload {re.escape(str(teacher_checkpoint))} (s3://bucket/sweeps/teachers/[0-9a-f]{{16}}/best.pt)$",
        upload.strip(),
    )
    assert match, upload
    submit = next(line for line in out.stdout.splitlines() if line.startswith("ray job submit"))
    assert submit.strip().endswith(f"--teacher {match.group(1)}")


def test_uploaded_teacher_is_what_the_sweep_checks_and_trials_fetch(teacher_checkpoint, demo_root, tmp_path):
    """The upload launch.sh prints, run against file:// storage; the sweep's teacher check (split included)
    and a node's local copy then read the same bytes from there."""
    from tune.cluster.teacher_upload import teacher_upload
    from tune.sweep.prepare import check_teacher_setting

    # The students' split is the one conftest's teacher was trained on.
    space = load_space(
        local_teacher_space(
            tmp_path, teacher_checkpoint, data_root=str(demo_root), val_fraction=0.25, val_split="random"
        )
    )
    local, uri = teacher_upload(space, f"file://{tmp_path}/bucket")
    upload = [sys.executable, "-m", "tune.cluster.storage", "upload", str(local), uri]
    done = subprocess.run(upload, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    space.teacher.checkpoint = uri
    check_teacher_setting(space)
    assert Path(storage.local_copy(uri, tmp_path / "cache")).read_bytes() == teacher_checkpoint.read_bytes()
    again = subprocess.run(upload, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and "already in the storage" in again.stdout


def test_dry_run_data_syncs_to_every_node(demo_root):
    out = launch("--dry-run", "data", str(demo_root))
    assert out.returncode == 0, out.stderr
    assert f"ray rsync-up --all-nodes cluster.yaml {demo_root}/ " in out.stdout and "polyp-kd-data/" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "--space", "kd.yaml"], "no shared storage"),
        (["--storage", "s3://b", "sweep", "--space", "nope.yaml"], "nope.yaml: search-space file not found"),
        (["--storage", "s3://b", "sweep"], "sweep needs --space"),
        (["--cluster", "missing.yaml", "up"], "missing.yaml: cluster config not found"),
        (
            ["--storage", "s3://b", "sweep", "--space", "kd.yaml", "--teacher", "/nonexistent/teacher.pt"],
            "teacher.checkpoint /nonexistent/teacher.pt is not on this machine",
        ),
        (["data", "/nonexistent"], "no TrainDataset"),
        (["bogus"], "unknown command 'bogus'"),
        (["logs", "x; rm -rf ~"], "job id 'x; rm -rf ~': use letters, digits"),  # never pasted into a remote shell
        (["--storage", "s3://b", "fetch", "../x"], "sweep '../x': use letters, digits"),  # never outside results/
    ],
)
def test_errors_are_one_clear_line(args, message):
    env = {k: v for k, v in os.environ.items() if k != "POLYP_KD_STORAGE"}
    out = launch("--dry-run", *args, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
