"""The test tiers' guard, a pytest plugin (tests/conftest.py imports its hooks): a test that starts Ray or a
sweep driver must be marked `slow`, so that the fast tier (`-m "not slow"`) never starts one."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _fail_if_ray_started(item, "its fixtures"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _fail_if_ray_started(item, "it"))


def _fail_if_ray_started(item, who: str):
    """The fast tier (`-m "not slow"`) must not start Ray: an unmarked test runs with Ray's temporary folder
    pointed at an empty folder of its own (subprocesses inherit it), and any Ray session found there after the
    test, or a Ray still connected in this process, fails it."""
    if item.get_closest_marker("slow"):
        return (yield)
    saved = os.environ.get("RAY_TMPDIR")
    # Short: Ray's socket paths live under it, and a Unix socket path has at most 107 characters.
    os.environ["RAY_TMPDIR"] = probe = tempfile.mkdtemp(prefix="raygd", dir="/tmp")
    try:
        result = yield
    finally:
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        started = any(Path(probe).glob("ray/session_*")) or (
            "ray" in sys.modules and sys.modules["ray"].is_initialized()
        )
        shutil.rmtree(probe, ignore_errors=True)
    if started:
        pytest.fail(f"{item.nodeid}: {who} started Ray; mark the test @pytest.mark.slow", pytrace=False)
    return result
