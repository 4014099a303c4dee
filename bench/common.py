"""Shared setup for the benchmarks: which data (real polyp data when present, else synthetic) and
a subset of it, so every bench says what it measured on."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import PolypData, discover  # noqa: E402
from core.synthetic import write_demo_dataset  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "polyp"


def bench_data(n_train: int, workdir: Path, size: int = 320) -> tuple[PolypData, str]:
    """`n_train` training images spread over the pool (Kvasir and CVC-ClinicDB frames alike)."""
    if REAL_DATA.is_dir():
        data, label = discover(REAL_DATA), f"real polyp data ({REAL_DATA})"
    else:
        root = write_demo_dataset(workdir / "demo", size=size, n_train=n_train, n_test=4)
        data, label = discover(root), "SYNTHETIC demo data (real data not found)"
    step = max(1, len(data.train) // n_train)
    data.train = data.train[::step][:n_train]
    return data, label
