"""tune/tracking/mode.py: W&B goes online when wandb finds a key (environment or `wandb login`'s netrc), offline
otherwise, WANDB_MODE wins; a netrc key never enters the environment Ray hands its processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_NETRC_KEY = "fake0netrc0key0for0tests00000000000000000"


def resolve_in(home: Path, env: dict[str, str], configured: str = "auto", entity: str = "") -> list[str]:
    """resolve_mode in a fresh interpreter with HOME=`home` (never the user's real netrc) and `env`, after
    Ray's W&B callback set itself up; prints mode, entity and whether a key reached the environment."""
    code = (
        "import os\n"
        "from tune.tracking.mode import apply, resolve_mode\n"
        f"t = resolve_mode({configured!r}, {entity!r} or None)\n"
        "apply(t)\n"
        "from ray.air.integrations.wandb import _set_api_key\n"
        "_set_api_key()\n"  # what WandbLoggerCallback.setup does before starting logging actors
        "print(t.mode, t.entity, 'WANDB_API_KEY' in os.environ)\n"
        "print(t.line())\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "HOME": str(home), "WANDB_CONFIG_DIR": str(home / ".config"), **env},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-2:]


@pytest.fixture
def netrc_home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {FAKE_NETRC_KEY}\n")
    netrc.chmod(0o600)
    return home


def test_no_key_is_offline_and_says_how_to_go_online(tmp_path):
    (tmp_path / "empty").mkdir()
    state, line = resolve_in(tmp_path / "empty", {})
    assert state == "offline None False"
    assert "wandb login" in line
    state, line = resolve_in(tmp_path / "empty", {}, configured="online")
    assert state == "offline None False" and "no API key" in line


def test_wandb_login_netrc_is_online_and_the_key_stays_out_of_the_environment(netrc_home):
    state, line = resolve_in(netrc_home, {}, entity="my-team")
    assert state == "online my-team False" and "API key was found" in line


def test_env_key_is_online_and_wandb_mode_wins(tmp_path, netrc_home):
    (tmp_path / "empty").mkdir()
    state, _ = resolve_in(tmp_path / "empty", {"WANDB_API_KEY": "x" * 40, "WANDB_ENTITY": "env-team"})
    assert state == "online env-team True"
    state, line = resolve_in(netrc_home, {"WANDB_MODE": "offline"})
    assert state == "offline None False" and "WANDB_MODE" in line
    state, _ = resolve_in(netrc_home, {}, configured="disabled")
    assert state.startswith("disabled")
