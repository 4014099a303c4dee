"""Multi-node sweeps on one machine (`ray.cluster_utils.Cluster`: a head with no CPUs for trials and
two 1-CPU worker nodes): trials spread over nodes, survive a lost worker node, and a killed driver."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
import yaml
from conftest import trial_reports
from ray.cluster_utils import Cluster

from tune import search as search_cli

pytestmark = pytest.mark.slow  # every test here starts Ray or a sweep driver

ROOT = Path(__file__).resolve().parents[1]
MAX_T = 8


@pytest.fixture()
def cluster(monkeypatch):
    # The spaces below disable W&B; conftest's WANDB_MODE=offline would otherwise take precedence.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def space_file(tmp_path: Path, demo_root: Path, name: str, num_samples: int = 4, checkpoint_every: int = 1) -> Path:
    space = {
        "name": name,
        "base": {
            "mode": "baseline",
            "data_root": str(demo_root),
            "encoder_weights": None,
            "img_size": 64,
            "batch_size": 4,
            "num_workers": 0,
            "val_fraction": 0.25,
            "device": "cpu",
        },
        "parameters": {"learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}},
        "search": {
            "num_samples": num_samples,
            "max_concurrent_trials": 2,
            "seed": 0,
            "max_failures": 3,
            "checkpoint_every": checkpoint_every,
        },
        # grace_period = max_t: ASHA stops nothing, so every trial must reach max_t.
        "asha": {"max_t": MAX_T, "grace_period": MAX_T, "reduction_factor": 2},
        "resources": {"cpu": 1},
        "wandb": {"mode": "disabled"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def trial_results(trials_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for progress in trials_dir.glob("*/result.json"):
        rows = trial_reports(progress)
        if rows:
            out[rows[0]["trial_id"]] = pd.DataFrame(rows)
    return out


def recovery_report(trials_dir: Path) -> dict:
    """Trials, trials that resumed from a checkpoint, epochs trained twice, and nodes used."""
    results = trial_results(trials_dir)
    resumed, epochs_lost = 0, 0
    for df in results.values():
        restarts = df[df["restored_from_epoch"] > 0]
        for start in sorted(set(restarts["restored_from_epoch"])):
            resumed += 1
            before = df[df.index < restarts[restarts["restored_from_epoch"] == start].index[0]]
            epochs_lost += int(before["epoch"].max()) - int(start)
        # Never back to epoch 1 once a checkpoint existed: the first report of every run follows its restore.
        assert (
            df.groupby("restored_from_epoch")["epoch"].min()
            == df.groupby("restored_from_epoch")["restored_from_epoch"].min() + 1
        ).all()
    nodes = {n for df in results.values() for n in df["node_id"]}
    return {"trials": len(results), "resumed_from_checkpoint": resumed, "epochs_lost": epochs_lost, "nodes": len(nodes)}


def read_rows(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "leaderboard.csv").open() as f:
        return list(csv.DictReader(f))


def move_checkpoints_of_unfinished_trials(trials_dir: Path) -> list[str]:
    """Rename each unfinished trial's checkpoint to a later name, so that the one Ray recorded is gone.

    This is the race a killed driver can leave behind (Ray deletes a trial's older checkpoint as soon as
    a newer one arrives, but saves its experiment state only every few seconds), made certain."""
    moved = []
    for progress in trials_dir.glob("*/result.json"):
        rows = trial_reports(progress)
        checkpoints = sorted(progress.parent.glob("checkpoint_*"))
        # A checkpoint folder whose report never arrived (the driver died while it was copied) is not Ray's.
        if rows and not rows[-1]["done"] and checkpoints and any(r.get("checkpoint_dir_name") for r in rows):
            checkpoints[-1].rename(progress.parent / "checkpoint_000099")
            moved.append(rows[0]["trial_id"])
    return moved


def checkpointed_running_trial(trials_dir: Path):
    """(trial id, node id) of a trial that has a checkpoint and is not finished, else None."""
    for trial_id, df in trial_results(trials_dir).items():
        if len(df) >= 2 and not df["done"].iloc[-1] and int(df["epoch"].iloc[-1]) < MAX_T - 2:
            return trial_id, df["node_id"].iloc[-1]
    return None


def test_trials_spread_over_nodes_and_survive_a_lost_worker(cluster, demo_root, tmp_path):
    cluster, workers = cluster
    storage = tmp_path / "results"
    trials_dir = storage / "lost-node" / "trials"
    killed = {}

    def kill_a_busy_worker():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            found = checkpointed_running_trial(trials_dir)
            if found:
                node = next(w for w in workers if w.node_id == found[1])
                cluster.remove_node(node, allow_graceful=False)
                killed.update(trial=found[0], node=found[1])
            time.sleep(0.3)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    started = time.time()
    killer.start()
    search_cli.main(
        [
            "--space",
            str(space_file(tmp_path, demo_root, "lost-node")),
            "--storage",
            str(storage),
            "--address",
            cluster.address,
        ]
    )
    killer.join(timeout=5)
    wall = time.time() - started
    assert killed, "no worker was killed mid-trial"
    rows = read_rows(storage / "lost-node")
    assert len(rows) == 4 and all(r["end"] == "finished" and int(r["epochs"]) == MAX_T for r in rows)
    report = recovery_report(trials_dir)
    assert report["nodes"] >= 2
    assert report["resumed_from_checkpoint"] >= 1
    print(f"\nlost worker node: {report}, wall {wall:.0f}s, killed trial {killed['trial']}")


def test_killed_driver_resumes_without_rerunning_finished_trials(cluster, demo_root, tmp_path):
    cluster, _ = cluster
    storage = tmp_path / "results"
    trials_dir = storage / "lost-driver" / "trials"
    every = 2  # checkpoints at epochs 2, 4, 6, 8: a resumed trial may retrain at most one epoch
    space = space_file(tmp_path, demo_root, "lost-driver", num_samples=5, checkpoint_every=every)
    cmd = [
        sys.executable,
        "-m",
        "tune.search",
        "--space",
        str(space),
        "--storage",
        str(storage),
        "--address",
        cluster.address,
    ]
    started = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            results = trial_results(trials_dir)
            done = [t for t, df in results.items() if df["done"].iloc[-1]]
            if done and checkpointed_running_trial(trials_dir):
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished_before = {t: len(df) for t, df in trial_results(trials_dir).items() if df["done"].iloc[-1]}
    assert finished_before, "no trial finished before the driver was killed"
    moved = move_checkpoints_of_unfinished_trials(trials_dir)
    assert moved, "no unfinished trial had a checkpoint when the driver was killed"
    search_cli.main(["--space", str(space), "--storage", str(storage), "--address", cluster.address, "--resume"])
    wall = time.time() - started
    rows = read_rows(storage / "lost-driver")
    assert len(rows) == 5 and len({r["trial_id"] for r in rows}) == 5
    assert all(r["end"] == "finished" and int(r["epochs"]) == MAX_T for r in rows)
    after = trial_results(trials_dir)
    for trial_id, reports in finished_before.items():
        assert len(after[trial_id]) == reports, f"finished trial {trial_id} was re-run"
    report = recovery_report(trials_dir)
    # Every moved trial went on from its moved checkpoint (none started again from epoch 1), losing at most
    # the epochs since its last checkpoint.
    assert report["resumed_from_checkpoint"] >= len(moved)
    assert report["epochs_lost"] <= (every - 1) * report["resumed_from_checkpoint"]
    print(
        f"\nkilled driver: {report}, finished before the kill {len(finished_before)}, "
        f"recorded checkpoint gone for {len(moved)}, wall {wall:.0f}s"
    )
