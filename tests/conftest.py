"""Shared fixtures: tiny synthetic datasets made on the fly and a tiny trained teacher."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from core.config import TrainConfig, config_from_dict
from core.synthetic import write_demo_dataset

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Caches go to a throwaway folder, never to the user's ~/.cache (Ray workers inherit this too).
os.environ["POLYP_KD_TUNE_CACHE"] = tempfile.mkdtemp(prefix="polyp-kd-tune-test-cache-")
TEST_TEACHER_BACKBONE = "mobilenet_v2"
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "polyp"


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
    values = dict(data_root=str(data_root), save_dir=str(save_dir), img_size=64, batch_size=4, epochs=2,
                  learning_rate=1e-3, encoder_weights=None, num_workers=0, device="cpu", val_fraction=0.25)
    values.update(changes)
    return config_from_dict(values, source="test")


@pytest.fixture(scope="session")
def teacher_checkpoint(demo_root, tmp_path_factory) -> Path:
    from core.train import Trainer

    save_dir = tmp_path_factory.mktemp("teacher")
    # A small U-Net++ keeps the suite fast and its disk use low; the default ResNet50 is 7x the size.
    trainer = Trainer(tiny_config(demo_root, save_dir, mode="teacher", epochs=1, experiment_name="teacher",
                                  teacher_backbone=TEST_TEACHER_BACKBONE))
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


def heavy_modules_imported(module: str, args: list[str]) -> tuple[list[str], str]:
    """Run `python -m module args` in a fresh interpreter; return which of Ray's and the sweep driver's
    modules it imported, and its output. Readers of a sweep and inference must import neither."""
    probe = (f"import runpy, sys\nsys.argv = [{module!r}] + {args!r}\ncode = 0\n"
             f"try:\n    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
             f"except SystemExit as exit:\n    code = exit.code\n"
             f"bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'tune.sweep')))\n"
             f"print('EXIT', code, 'IMPORTED', bad)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("EXIT ")), "")
    bad = ast.literal_eval(line.split("IMPORTED ", 1)[1]) if line else ["(probe failed)"]
    return bad, run.stdout + run.stderr
