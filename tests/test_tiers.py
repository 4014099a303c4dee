"""The test tiers' guard (tests/tier_guard.py): an unmarked test that starts Ray fails, naming the fix; a test
marked `slow` may start it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

PROBE = """
import pytest
import ray


def test_unmarked_starts_ray():
    ray.init(num_cpus=1, include_dashboard=False)
    ray.shutdown()


@pytest.mark.slow
def test_marked_starts_ray():
    ray.init(num_cpus=1, include_dashboard=False)
    ray.shutdown()
"""


@pytest.mark.slow
def test_an_unmarked_test_that_starts_ray_fails_and_a_slow_one_passes(tmp_path):
    probe = tmp_path / "test_tier_probe.py"
    probe.write_text(PROBE)
    # The guard alone, as a plugin (the suite's conftest would import torch and the sweep for nothing); the
    # project's pytest settings (the `slow` marker) still apply from the root folder.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--noconftest",
            "-p",
            "tier_guard",
            str(probe),
        ],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert "1 failed, 1 passed" in out, out[-3000:]
    assert "test_unmarked_starts_ray: it started Ray; mark the test @pytest.mark.slow" in out, out[-3000:]
