"""A sweep on Ray's fake autoscaler: a head with 0 CPUs, the worker types of cluster.yaml, no worker at start.

Joining with --address, the sweep asks for the space's GPUs although the cluster has none when it starts, so
the autoscaler launches GPU workers; each trial gets its `resources.gpu`, no node runs more trials than its
GPUs allow, each node builds its caches once, and the workers are removed once the sweep is idle.

Fake nodes are processes on this machine (ray/autoscaler/_private/fake_multi_node): they share one
filesystem, so a node-local cache is made per node by naming it after the node's id, which Ray hands every
fake node's processes in RAY_OVERRIDE_NODE_ID_FOR_TESTING: POLYP_KD_TUNE_CACHE=.../node-$RAY_OVERRIDE_...
(core.files.default_cache_dir expands it on the node). Each cache build appends a line to its kind's
builds.jsonl, which counts the builds per node.

`ray.cluster_utils.AutoscalingCluster` is not used: its start() and shutdown() run `ray stop --force`,
which kills every Ray on the machine (other test runs included), and it reads an example.yaml the Ray
2.60 wheel does not ship. The head here is started on a free port with its own short temp dir, and only
processes under that temp dir (and their children) are stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import ray
import yaml
from conftest import TEST_TEACHER_BACKBONE, trial_reports

from core.cache import BUILD_LOG
from tune.cluster.plan import cluster_shape

pytestmark = pytest.mark.slow  # every test here starts Ray or a sweep driver

ROOT = Path(__file__).resolve().parents[1]
NODE_ID_VARIABLE = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
# Kept small: fake nodes are processes on a small machine. Each is capped at a few workers of its type.
MAX_WORKERS_PER_TYPE = 3
OBJECT_STORE_BYTES = 100 * 1024**2
IDLE_TIMEOUT_MINUTES = 0.2
GPU_PER_TRIAL = 0.5
MAX_T = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def fake_node_types() -> dict:
    """cluster.yaml's worker types, with the resources it states, as fake_multinode node types."""
    types = {"ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}}
    for worker in cluster_shape().workers:
        types[worker.name] = {
            "resources": {"CPU": worker.cpu, "GPU": worker.gpu, "object_store_memory": OBJECT_STORE_BYTES},
            "node_config": {},
            "min_workers": 0,
            "max_workers": min(worker.max_workers, MAX_WORKERS_PER_TYPE),
        }
    return types


class FakeAutoscalingCluster:
    """A fake-multinode autoscaling Ray cluster on this machine, stopped without `ray stop`."""

    def __init__(self, node_types: dict, env: dict[str, str]):
        self.temp_dir = Path(f"/tmp/rfa-{secrets.token_hex(3)}")  # short: Unix socket paths live under it
        self.port = free_port()
        self.address = f"{ray.util.get_node_ip_address()}:{self.port}"
        self.node_types = node_types
        self.env = env

    def start(self) -> None:
        self.temp_dir.mkdir()
        config = {
            "cluster_name": "fake-polyp-kd-tune",
            "max_workers": sum(t["max_workers"] for t in self.node_types.values()),
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": self.address,
            },
            "auth": {"ssh_user": "ubuntu"},
            "available_node_types": self.node_types,
            "head_node_type": "ray.head.default",
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        config_file = self.temp_dir / "autoscaling.yaml"
        config_file.write_text(yaml.safe_dump(config))
        ray_cli = Path(sys.executable).with_name("ray")
        command = [
            str(ray_cli) if ray_cli.exists() else "ray",
            "start",
            "--head",
            "--num-cpus=0",
            f"--port={self.port}",
            f"--temp-dir={self.temp_dir}",
            f"--autoscaling-config={config_file}",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]
        env = {
            **os.environ,
            **self.env,
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            # Nothing outside this machine reaches it; the driver joins by explicit address, without a token.
            "RAY_AUTH_MODE": "disabled",
        }
        env.pop("RAY_ADDRESS", None)
        started = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            self.shutdown()
            raise RuntimeError(f"ray start failed: {started.stderr[-2000:]}")

    def processes(self) -> set[int]:
        """This cluster's processes: those naming its temp dir, and their descendants (Ray's workers rename
        their command line to `ray::...`)."""
        table = _process_table()
        found = {pid for pid, (_, cmdline) in table.items() if str(self.temp_dir) in cmdline}
        while True:
            children = {pid for pid, (parent, _) in table.items() if parent in found} - found
            if not children:
                return found - {os.getpid()}
            found |= children

    def shutdown(self) -> None:
        # A fake node's processes that outlive SIGTERM by 3 s never end on it (measured: the full wait was
        # always used): SIGKILL then, as `ray stop --force` does.
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            pids = self.processes()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.time() + wait
            while self.processes() and time.time() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), from /proc (fake clusters run on Linux)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (parent, cmdline)
    return table


@pytest.fixture()
def fake_cluster(tmp_path, monkeypatch):
    # Trials of this sweep log nothing to W&B; conftest's WANDB_MODE=offline would otherwise take precedence.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    # The cluster runs without token authentication; so must its drivers (this process and the sweep). A local
    # ray.init earlier in this process sets RAY_AUTH_MODE=token in os.environ, and a token-mode driver's trial
    # actors are cancelled before they start on this cluster.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    caches = tmp_path / "node-caches"
    cluster = FakeAutoscalingCluster(
        fake_node_types(), {"POLYP_KD_TUNE_CACHE": f"{caches}/node-${NODE_ID_VARIABLE}", "WANDB_MODE": "disabled"}
    )
    cluster.start()
    try:
        yield cluster, caches
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not cluster.processes(), "a process of the fake cluster outlived its shutdown"


class NodeWatch:
    """What `ray status` would show over time, sampled by a second driver: every worker node seen alive,
    with its resources and when it was first and last seen alive."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def sample(self) -> int:
        """Record the alive nodes now; returns how many GPU nodes are alive."""
        now, alive_gpu = time.time(), 0
        for node in ray.nodes():
            gpus = node["Resources"].get("GPU", 0)
            if not node["Alive"] or not gpus:
                continue
            alive_gpu += 1
            seen = self.nodes.setdefault(
                node["NodeID"], {"gpu": gpus, "cpu": node["Resources"].get("CPU", 0), "first": now}
            )
            seen["last"] = now
        return alive_gpu


def trial_runs(trials_dir: Path) -> list[dict]:
    """Per trial: node, GPUs assigned, device, and the span from the start of its first run to its last result.
    The start is the trial's own clock (trials follow each other within a second in a reused process); the
    end is Ray's whole-second timestamp, rounded down, so spans can only look shorter, never overlap falsely."""
    runs = []
    for progress in trials_dir.glob("*/result.json"):
        rows = trial_reports(progress)
        assert rows and len({r["node_id"] for r in rows}) == 1, f"{progress}: a trial moved between nodes"
        runs.append(
            {
                "trial": rows[0]["trial_id"],
                "node": rows[0]["node_id"],
                "gpus": {r["gpus_assigned"] for r in rows},
                "device": {r["device"] for r in rows},
                "start": rows[0]["run_started_at"],
                "end": rows[-1]["timestamp"],
            }
        )
    return runs


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def cache_builds(caches: Path) -> dict[str, Counter]:
    """Per node id: how many times each kind of cache (decoded, teacher_logits, remote) was built there."""
    out = {}
    for node_dir in caches.glob("node-*"):
        out[node_dir.name.removeprefix("node-")] = Counter(
            {log.parent.name: len(log.read_text().splitlines()) for log in node_dir.glob(f"*/{BUILD_LOG}")}
        )
    return out


def test_sweep_on_an_autoscaling_cluster_gets_gpu_workers_packed_by_the_space(fake_cluster, demo_root, tmp_path):
    cluster, caches = fake_cluster
    space = {
        "name": "autoscaled",
        "base": {
            "mode": "distillation",
            "data_root": str(demo_root),
            "encoder_weights": None,
            "img_size": 64,
            "batch_size": 4,
            "num_workers": 0,
            "val_fraction": 0.25,
            "device": "cpu",
        },
        "parameters": {
            "learning_rate": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-2},
            "alpha": {"type": "uniform", "low": 0.2, "high": 0.8},
        },
        # One retry: the autoscaler may remove a worker that went idle just as a trial was placed on it.
        # A new trial process per trial, as a second worker's first trials need: with processes reused,
        # trials 3-4 (a second each at this size) may follow 1-2 on the first worker before the second is up,
        # and nothing would show that a worker added later gets trials and builds its own caches.
        "search": {"num_samples": 4, "max_concurrent_trials": 4, "seed": 0, "max_failures": 1, "reuse_actors": False},
        "asha": {"max_t": MAX_T, "grace_period": 1, "reduction_factor": 2},
        # One CPU per trial: a 4-CPU worker could hold 4 trials by CPU, so only GPU accounting keeps it to 2.
        "resources": {"cpu": 1, "gpu": GPU_PER_TRIAL},
        "teacher": {
            "checkpoint": None,
            "train": {"epochs": 1, "learning_rate": 3.0e-3, "teacher_backbone": TEST_TEACHER_BACKBONE},
        },
        "control": None,
        "confirm": None,
        "wandb": {"mode": "disabled"},
    }
    space_file = tmp_path / "autoscaled.yaml"
    space_file.write_text(yaml.safe_dump(space))
    shared = tmp_path / "shared"
    watch = NodeWatch()
    ray.init(address=cluster.address)
    try:
        assert "GPU" not in ray.cluster_resources() and not watch.sample(), "the cluster must start without GPUs"
        # The sweep as a user runs it against a cluster; this process only watches the nodes.
        started = time.time()
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tune.search",
                "--space",
                str(space_file),
                "--storage",
                f"file://{shared}",
                "--local-results",
                str(tmp_path / "results"),
                "--address",
                cluster.address,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"},
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(sweep.stdout), daemon=True)
        reader.start()
        while sweep.poll() is None and time.time() - started < 600:
            watch.sample()
            time.sleep(0.5)
        if sweep.poll() is None:
            sweep.kill()
        reader.join(timeout=10)
        out = "".join(lines)
        errors = [e.read_text()[-2000:] for e in (shared / "autoscaled" / "trials").glob("*/error.txt")]
        assert sweep.wait() == 0, out[-3000:] + "".join(errors[:1])
        sweep_ended = time.time()
        # Scale-down: every GPU worker removed once idle (idle timeout 0.2 min, checked every second).
        while watch.sample() and time.time() - sweep_ended < 120:
            time.sleep(0.5)
        gone = time.time()
        assert not watch.sample(), "GPU workers still alive 2 minutes after the sweep"
    finally:
        ray.shutdown()

    # The decision was the space's, not the (GPU-less) cluster's at start; the teacher and the warm-up asked too.
    assert "cluster has no GPU yet" in out
    teacher = re.search(r"teacher: trained on node (\w+) \((.*)\)", out)
    warm = re.search(r"caches: warm on node (\w+) \((.*)\)", out)
    assert teacher and f"GPU {GPU_PER_TRIAL:g}" in teacher.group(2), out[-3000:]
    assert warm and f"GPU {GPU_PER_TRIAL:g}" in warm.group(2), out[-3000:]

    runs = trial_runs(shared / "autoscaled" / "trials")
    assert len(runs) == 4
    assert all(r["gpus"] == {GPU_PER_TRIAL} and r["device"] == {"cpu"} for r in runs), runs
    launched = watch.nodes
    assert launched, "the autoscaler launched no GPU worker"
    assert {r["node"] for r in runs} <= set(launched)
    peaks = {
        node: most_at_once([(r["start"], r["end"]) for r in runs if r["node"] == node])
        for node in {r["node"] for r in runs}
    }
    for node, peak in peaks.items():
        assert peak <= launched[node]["gpu"] / GPU_PER_TRIAL, f"node {node} ran {peak} trials at once"
    # 4 concurrent trials at 0.5 GPU need 2 GPUs: more than the first worker has.
    assert len(peaks) >= 2

    # Caches: built once on every node that used them (the warm-up's node and each node with trials).
    builds = cache_builds(caches)
    assert set(builds) == set(peaks) | {warm.group(1)}, builds
    for node, counts in builds.items():
        assert counts == Counter(decoded=1, teacher_logits=1, remote=1), (node, counts)

    last_trial = max(r["end"] for r in runs)
    first_worker = min(n["first"] for n in launched.values())
    short = {n[-5:]: f"{v['cpu']:g} CPU {v['gpu']:g} GPU" for n, v in sorted(launched.items())}
    print(
        f"\nfake autoscaler: {len(launched)} GPU workers launched {short}, the first "
        f"{first_worker - started:.0f}s after the sweep started; trials per node "
        f"{dict(Counter(r['node'][-5:] for r in runs))}, most at once per node "
        f"{ ({n[-5:]: p for n, p in peaks.items()}) }; "
        f"gpus_assigned seen {sorted({g for r in runs for g in r['gpus']})}; "
        f"caches built per node { ({n[-5:]: dict(c) for n, c in builds.items()}) }; "
        f"sweep {sweep_ended - started:.0f}s; "
        f"no GPU worker left {gone - last_trial:.0f}s after the last trial ended ({gone - sweep_ended:.0f}s after "
        f"the sweep's driver exited; idle timeout {IDLE_TIMEOUT_MINUTES * 60:.0f}s)"
    )
