"""The sweep CLI refuses, before Ray starts and in one line, what would make a sweep silently wrong or fail
late: masks with no polyp, a --set on a searched key, storage it cannot write, a disk that is full."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from test_sweep import tiny_space

from tune import search as search_cli


def run_cli(tmp_path: Path, space: dict, capsys, *extra: str, storage: str | None = None) -> tuple[int, str]:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(SystemExit) as info:
        search_cli.main(
            ["--space", str(tmp_path / "s.yaml"), "--storage", storage or str(tmp_path / "results"), *extra]
        )
    return info.value.code, capsys.readouterr().err.strip()


def blank_masks(demo_root: Path, tmp_path: Path, which: str) -> Path:
    """A copy of the demo data whose training masks are all black: every one, or only the validation ones."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    masks = sorted((root / "TrainDataset" / "masks").iterdir())
    chosen = masks if which == "all" else None
    if which == "validation":
        from core.config import TrainConfig
        from core.data import discover
        from core.split import training_split

        cfg = TrainConfig(data_root=str(root), val_fraction=0.25, cache_dir=str(tmp_path / "cache"))
        stems = {p.stem for p in training_split(cfg, discover(root).train).val}
        chosen = [m for m in masks if m.stem in stems]
    for mask in chosen:
        cv2.imwrite(str(mask), np.zeros_like(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)))
    return root


@pytest.mark.parametrize("which", ["all", "validation"])
def test_masks_without_any_polyp_stop_the_sweep_before_ray(which, demo_root, tmp_path, capsys):
    root = blank_masks(demo_root, tmp_path, which)
    space = tiny_space(root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache", control=None, confirm=None)
    code, err = run_cli(tmp_path, space, capsys)
    part = "training" if which == "all" else "validation"
    assert code == 2 and f"{part} masks are empty" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "results" / "tiny").exists()


def test_set_on_a_searched_key_is_refused(demo_root, tmp_path, capsys):
    space = tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache")
    code, err = run_cli(tmp_path, space, capsys, "--set", "temperature=4")
    assert code == 2 and "--set temperature: temperature is searched in this space" in err
    assert "remove it from `parameters`" in err
    assert not (tmp_path / "results").exists()


def test_storage_that_cannot_be_written_is_one_line_naming_it(demo_root, tmp_path, capsys):
    # /sys refuses new folders even to root, for whom a chmod-ed folder would still be writable.
    space = tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache")
    code, err = run_cli(tmp_path, space, capsys, storage="/sys/polyp-kd-tune-test")
    assert code == 2 and err.startswith("error: /sys/polyp-kd-tune-test: cannot write the sweep there")
    assert "--storage" in err and "Traceback" not in err


def test_a_full_disk_in_any_command_is_one_line_and_exit_2(capsys):
    from core.errors import cli_errors

    with pytest.raises(SystemExit) as info, cli_errors(), open("/dev/full", "w") as f:  # always full
        f.write("x" * 100_000)
        f.flush()
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "no space left on device" in err and "--resume" in err, err
    assert len(err.splitlines()) == 1


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test where the sweep would start Ray (run_stages: W&B set up, ray.init, the stages)."""
    from tune.sweep import pipeline

    def started(*args, **kwargs):
        pytest.fail("the sweep went on to start Ray")

    monkeypatch.setattr(pipeline, "run_stages", started)


def test_num_samples_from_the_command_line_meets_the_spaces_rules_before_ray(demo_root, tmp_path, capsys, no_ray):
    # A control arm needs 2 trials: --num-samples 1 is refused with the line `search.num_samples: 1` gets.
    space = tiny_space(demo_root, num_samples=4, max_t=1, cache_dir=tmp_path / "cache")
    code, err = run_cli(tmp_path, space, capsys, "--num-samples", "1")
    space["search"]["num_samples"] = 1
    assert (code, err) == run_cli(tmp_path, space, capsys)
    assert code == 2 and err == (
        f"error: {tmp_path / 's.yaml'}: search.num_samples: must be >= 2 with a control arm (or control: null), got 1"
    )
    assert not (tmp_path / "results" / "tiny").exists()


def test_a_cuda_deploy_target_without_a_gpu_or_cluster_stops_before_ray(
    demo_root, tmp_path, capsys, no_ray, monkeypatch
):
    # Its latency would be measured by a Ray task asking for a GPU that a local Ray never has: a wait forever.
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache")
    space["deploy"] = {"runtime": "torch", "device": "cuda", "latency_budget_ms": 40}
    code, err = run_cli(tmp_path, space, capsys)
    assert code == 2 and err == (
        f"error: {tmp_path / 's.yaml'}: deploy.device: cuda, but this machine has no GPU to measure latency on; "
        "run the sweep on a GPU machine or a cluster (--address), or set deploy.device: cpu"
    )
    assert not (tmp_path / "results" / "tiny").exists()


@pytest.mark.parametrize(
    "env, line",
    [
        (
            {"WANDB_MODE": "online"},
            "error: WANDB_MODE=online, but no usable W&B API key (WANDB_API_KEY, `wandb login`): run `wandb login` "
            "or set WANDB_API_KEY, or log offline with WANDB_MODE=offline (`wandb sync` uploads later)",
        ),
        (
            {"WANDB_API_KEY": "not-a-key"},
            "error: WANDB_API_KEY: not a W&B API key (API key must have 40+ characters, has 5); set it to your key "
            "from https://wandb.ai/authorize, or unset it",
        ),
    ],
)
def test_online_wandb_without_a_usable_key_stops_before_ray(demo_root, tmp_path, env, line):
    # In a fresh interpreter with an empty HOME (never the user's netrc), wandb's state its own; Ray's start
    # fails the run, as in `no_ray`.
    space = tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache")
    space["wandb"]["mode"] = "auto"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    (tmp_path / "home").mkdir()
    argv = ["--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "results")]
    code = (
        "from tune.sweep import pipeline\n"
        "def started(*a, **k):\n    raise SystemExit('the sweep went on to start Ray')\n"
        "pipeline.run_stages = started\n"
        f"from tune.search import main\nmain({argv!r})\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = {"HOME": str(tmp_path / "home"), "WANDB_CONFIG_DIR": str(tmp_path / "home" / ".config")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **home, **env},
    )
    assert out.returncode == 2 and out.stderr.strip() == line, out.stderr[-2000:]
    assert "not-a-key" not in out.stdout + out.stderr  # the key is never printed
    assert not (tmp_path / "results" / "tiny").exists()


def test_the_interrupt_hint_repeats_every_option_so_it_resumes_as_printed(demo_root, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("stopped in the search")

    monkeypatch.setattr(search_cli, "run_sweep", interrupted)
    space = tiny_space(demo_root, num_samples=2, max_t=1, cache_dir=tmp_path / "cache")
    storage = str(tmp_path / "my storage")  # a space in a path: the hint quotes it for a shell
    options = ["--name", "n1", "--address", "auto", "--set", "val_fraction=0.3", "--num-samples", "4"]
    code, err = run_cli(tmp_path, space, capsys, *options, storage=storage)
    hint = err.splitlines()[-1]
    assert code == 130 and hint.startswith("sweep interrupted — continue with the same command plus --resume: ")
    command = shlex.split(hint.split(": ", 1)[1].removesuffix(" (stopped in the search)"))
    space_file = str(tmp_path / "s.yaml")
    assert command == ["python", "-m", "tune.search", "--space", space_file, "--storage", storage, *options, "--resume"]
