"""W&B's network waits (tune/tracking/network.py) without a network: W&B at a closed local port, a well-formed
key, online. Each wait is announced, ends within its bound ($POLYP_KD_TUNE_WANDB_TIMEOUT_S, small here) and
leaves what W&B did not get on disk for `wandb sync`."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_KEY

from core.errors import UserError
from tune.tracking.network import IDENTITY_LOOKUP_S, TIMEOUT_ENV, call_with_timeout, wandb_timeout_s

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 2


def unreachable_wandb(tmp_path: Path) -> dict[str, str]:
    """Online with a well-formed key, W&B at a closed port (every connection refused), wandb's state its own."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WANDB_")},
        "WANDB_MODE": "online",
        "WANDB_API_KEY": FAKE_KEY,
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_SILENT": "true",
        TIMEOUT_ENV: str(TIMEOUT_S),
    }


def run_python(code: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_a_user_error(value, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(UserError, match=f"{TIMEOUT_ENV}='{value}': must be a number of seconds > 0"):
        wandb_timeout_s()


def test_the_timeout_defaults_to_a_minute(monkeypatch):
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert wandb_timeout_s() == 60.0


def test_a_call_that_does_not_return_in_time_is_left_behind():
    started = time.monotonic()
    assert call_with_timeout(lambda: time.sleep(5), 0.2) == (False, None)
    assert time.monotonic() - started < 1
    assert call_with_timeout(lambda: 7, 1) == (True, 7)
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1)


def test_a_run_that_cannot_reach_wandb_is_logged_offline_within_its_bound(tmp_path):
    code = (
        "import wandb\n"
        "from tune.tracking.network import init_or_offline, run_settings\n"
        f"kwargs = dict(project='p', id='trial1', dir={str(tmp_path)!r}, mode='online')\n"
        f"kwargs['settings'] = run_settings({TIMEOUT_S})\n"
        "run, reason = init_or_offline(wandb.init, kwargs, lambda r: print('offline because:', r))\n"
        "run.log({'epoch': 1})\n"
        "run.finish()\n"
        "print('mode', run.settings.mode)\n"
    )
    done, seconds = run_python(code, unreachable_wandb(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("offline because: ") and lines[1] == "mode offline", done.stdout
    # wandb's identity lookup, then init_timeout; measured 15.5 s with init_timeout 5 (interpreter start aside).
    assert seconds < IDENTITY_LOOKUP_S + TIMEOUT_S + 15, seconds
    [folder] = (tmp_path / "wandb").glob("offline-run-*-trial1")
    assert (folder / "run-trial1.wandb").stat().st_size > 0  # what `wandb sync` uploads later


def test_registering_the_wandb_sweep_without_wandb_is_announced_and_bounded(tmp_path):
    code = (
        "from tune.space import load_space\n"
        "from tune.tracking.wandb_sweep import register_sweep\n"
        "print('id', register_sweep(load_space('demo'), None, 'polyp-kd-tune-tests'))\n"
    )
    done, seconds = run_python(code, unreachable_wandb(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines[0] == f"W&B: registering the W&B Sweep (at most {TIMEOUT_S} s)"
    assert lines[1].startswith("W&B: the sweep was not registered as a W&B Sweep (") and lines[-1] == "id None"
    assert len(lines) == 3, done.stdout
    assert seconds < TIMEOUT_S + 12, seconds  # wandb's own client gives up after 19 s; start-up aside
