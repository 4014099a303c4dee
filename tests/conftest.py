"""Shared fixtures (tiny synthetic datasets made on the fly, a tiny trained teacher, one shared sweep), and the
test tiers' guard (tests/tier_guard.py): a test that starts Ray or a sweep driver must be marked `slow`."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

# The tiers' guard: its hooks, imported here, are registered for every test.
from tier_guard import pytest_runtest_call, pytest_runtest_setup  # noqa: F401

from core.config import TrainConfig, config_from_dict
from core.synthetic import write_demo_dataset
from tune import search as search_cli

# Sweeps log to W&B only where a test asks for it (offline): a W&B run is a process per trial.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# Caches go to a throwaway folder, never to the user's ~/.cache (Ray workers inherit this too).
os.environ["POLYP_KD_TUNE_CACHE"] = tempfile.mkdtemp(prefix="polyp-kd-tune-test-cache-")
TEST_TEACHER_BACKBONE = "mobilenet_v2"
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polyp"
FAKE_KEY = "fake0wandb0key0for0tests0000000000000000"


def trial_reports(result_json: Path) -> list[dict]:
    """Every result a Ray trial reported, in order, from its result.json (one JSON object per line)."""
    return [json.loads(line) for line in result_json.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cache():
    yield
    shutil.rmtree(os.environ["POLYP_KD_TUNE_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("data") / "demo", size=64, n_train=16, n_test=4, seed=0)


def tiny_config(data_root: Path, save_dir: Path, **changes) -> TrainConfig:
    """64 px, random init, no loader workers: fast and deterministic on a CPU."""
    values = dict(
        data_root=str(data_root),
        save_dir=str(save_dir),
        img_size=64,
        batch_size=4,
        epochs=2,
        learning_rate=1e-3,
        encoder_weights=None,
        num_workers=0,
        device="cpu",
        val_fraction=0.25,
    )
    values.update(changes)
    return config_from_dict(values, source="test")


@pytest.fixture(scope="session")
def teacher_checkpoint(demo_root, tmp_path_factory) -> Path:
    from core.train import Trainer

    save_dir = tmp_path_factory.mktemp("teacher")
    # A small U-Net++ keeps the suite fast and its disk use low; the default ResNet50 is 7x the size.
    trainer = Trainer(
        tiny_config(
            demo_root,
            save_dir,
            mode="teacher",
            epochs=1,
            experiment_name="teacher",
            teacher_backbone=TEST_TEACHER_BACKBONE,
        )
    )
    for _ in trainer.epochs():
        pass
    return trainer.save_best(save_dir / "teacher" / "best.pt")


@pytest.fixture(scope="session")
def student_checkpoint(demo_root, tmp_path_factory) -> Path:
    """best.pt of a two-epoch 64 px baseline run: the student that export, predict and int8 tests use."""
    from core.train import Trainer

    save_dir = tmp_path_factory.mktemp("student")
    trainer = Trainer(tiny_config(demo_root, save_dir, epochs=2))
    for _ in trainer.epochs():
        pass
    return trainer.save_best(save_dir / "run" / "best.pt")


@pytest.fixture(scope="session")
def student_export(student_checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, metrics record) of `export_run` on student_checkpoint, made once: tests read it (one tries to
    replace it with an export that must fail, and checks that nothing changed)."""
    from core.export import export_run

    old_umask = os.umask(0o022)  # what most shells use; the folder must then be readable by everyone
    try:
        out = tmp_path_factory.mktemp("exports") / "export"
        record = export_run(student_checkpoint, out, device="cpu")
    finally:
        os.umask(old_umask)
    return out, record


# The light part of the Ray boundary (Ray's file names and rules, no Ray import) and the packages around it:
# the only modules of tune.sweep that readers of a sweep may import.
LIGHT_SWEEP_MODULES = ("tune.sweep", "tune.sweep.ray_compat", "tune.sweep.ray_compat.conventions")


def heavy_modules_imported(module: str, args: list[str]) -> tuple[list[str], str]:
    """Run `python -m module args` in a fresh interpreter; return which of Ray's and the sweep driver's
    modules it imported, and its output. Readers of a sweep and inference must import neither (the light
    part of tune.sweep.ray_compat aside)."""
    probe = (
        f"import runpy, sys\nsys.argv = [{module!r}] + {args!r}\ncode = 0\n"
        f"try:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        f"except SystemExit as exit:\n    code = exit.code\n"
        f"bad = sorted(m for m in sys.modules if (m == 'ray' or m.startswith(('ray.', 'tune.sweep')))\n"
        f"             and m not in {LIGHT_SWEEP_MODULES!r})\n"
        f"print('EXIT', code, 'IMPORTED', bad)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("EXIT ")), "")
    bad = ast.literal_eval(line.split("IMPORTED ", 1)[1]) if line else ["(probe failed)"]
    return bad, run.stdout + run.stderr


def tiny_space(data_root: Path, num_samples: int, max_t: int, cache_dir: Path, **changes) -> dict:
    """A 64 px KD space with a control arm. Trials use the simulated trainer (core/simulated_training.py): what
    these sweeps test is the sweep's machinery, whose decisions then are the same on every CPU; a test about
    real training sets `search.trainer: torch` (the session's `finished_sweep` does)."""
    space = {
        "name": "tiny",
        "base": {
            "mode": "distillation",
            "data_root": str(data_root),
            "encoder_weights": None,
            "cache_dir": str(cache_dir),
            "img_size": 64,
            "batch_size": 4,
            "num_workers": 0,
            "val_fraction": 0.25,
            "device": "cpu",
        },
        "parameters": {
            "alpha": {"type": "uniform", "low": 0.1, "high": 0.9},
            "temperature": {"type": "uniform", "low": 1.0, "high": 10.0},
            # Wide on purpose: trials differ enough for ASHA to cut some.
            "learning_rate": {"type": "loguniform", "low": 1.0e-6, "high": 3.0e-2},
            "student_backbone": {"type": "choice", "values": ["mobilenet_v2", "tu-mobilenetv3_small_100"]},
        },
        "search": {
            "num_samples": num_samples,
            "max_concurrent_trials": 2,
            "seed": 0,
            "max_failures": 1,
            "trainer": "simulated",
        },
        "asha": {"max_t": max_t, "grace_period": 1, "reduction_factor": 3},
        "resources": {"cpu": 1},
        "teacher": {"train": {"epochs": 1, "learning_rate": 3.0e-3, "teacher_backbone": TEST_TEACHER_BACKBONE}},
        "wandb": {"project": "polyp-kd-tune-tests", "mode": "disabled"},
        # The ablation: the KD winner with and without its teacher (the factorial design adds two more
        # configurations; the golden demo test runs it).
        "confirm": {"top_k": 1, "seeds": 2, "verdict_seeds": 2, "verdict": "ablation"},
    }
    space.update(changes)
    return space


@pytest.fixture(scope="session")
def finished_sweep(demo_root, tmp_path_factory):
    """One 6-trial KD sweep, run once per test session with a (fake) W&B key in the environment (read by
    tests/test_sweep.py and tests/test_wandb_report.py); what it printed is kept in console.txt beside it."""
    tmp = tmp_path_factory.mktemp("sweep")
    space_file = tmp / "tiny.yaml"
    space = tiny_space(demo_root, num_samples=6, max_t=4, cache_dir=tmp / "cache")
    space["search"]["checkpoint_every"] = 3  # with ASHA's rungs (1, 3) and the end: epochs 1, 3, 4
    space["search"]["trainer"] = "torch"  # the suite's one sweep of real training, end to end
    space["wandb"]["mode"] = "offline"
    space_file.write_text(yaml.safe_dump(space))
    saved = {k: os.environ.get(k) for k in ("WANDB_API_KEY", "WANDB_MODE")}
    os.environ.update(WANDB_API_KEY=FAKE_KEY, WANDB_MODE="offline")
    try:
        with open(tmp / "console.txt", "w") as console, redirect_stdout(console), redirect_stderr(console):
            search_cli.main(["--space", str(space_file), "--storage", str(tmp / "results"), "--num-cpus", "2"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return tmp / "results" / "tiny"
