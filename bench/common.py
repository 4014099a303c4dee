"""Shared setup for the benchmarks: which data (real polyp data when present, else synthetic) and
a subset of it as a data folder of symbolic links, so that every run in a bench, Ray trials
included, reads the same images."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import PolypData, discover  # noqa: E402
from core.synthetic import write_demo_dataset  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "polyp"


def bench_data(n_train: int, workdir: Path, size: int = 320, n_test: int = 20) -> tuple[PolypData, str]:
    """`n_train` training images spread over the pool (Kvasir and CVC-ClinicDB frames alike) and
    the first `n_test` images of each test set."""
    if not REAL_DATA.is_dir():
        root = write_demo_dataset(workdir / "demo", size=size, n_train=n_train, n_test=min(n_test, 8))
        return discover(root), "SYNTHETIC demo data (real data not found)"
    full = discover(REAL_DATA)
    step = max(1, len(full.train) // n_train)
    root = workdir / "subset"
    _link(full.train[::step][:n_train], root / "TrainDataset")
    for name, pairs in full.test_sets.items():
        _link(pairs[:n_test], root / "TestDataset" / name)
    return discover(root), f"real polyp data ({REAL_DATA}, subset)"


def _link(pairs, folder: Path) -> None:
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
    for pair in pairs:
        (folder / "images" / pair.image.name).symlink_to(pair.image)
        (folder / "masks" / pair.mask.name).symlink_to(pair.mask)


def start_local_ray(wandb_mode: str = "disabled") -> float:
    """A new local Ray with every CPU (never a cluster running on this machine), whose trial processes import
    core/ and tune/ from this repository as `python -m tune.search` does from its root; seconds it took."""
    import ray

    os.environ["WANDB_MODE"] = wandb_mode
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    start = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    return time.perf_counter() - start
