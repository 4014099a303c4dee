"""The command-line edge: bad input is one line on stderr, exit code 2, and no output folder."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from core import evaluate as evaluate_cli
from core import train as train_cli
from core.train import Trainer, run_training

ROOT = Path(__file__).resolve().parents[1]


def call(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


def base_args(demo_root, save_dir):
    return [
        "--set",
        f"data_root={demo_root}",
        "--set",
        f"save_dir={save_dir}",
        "--set",
        "img_size=64",
        "--set",
        "epochs=1",
        "--set",
        "encoder_weights=null",
        "--set",
        "num_workers=0",
        "--set",
        "device=cpu",
    ]


def assert_one_line_error(code, err, *needles):
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_missing_data_dir(tmp_path, capsys):
    code, err = call(train_cli.main, base_args(tmp_path / "nope", tmp_path / "runs"), capsys)
    assert_one_line_error(code, err, "nope", "core.data demo")
    assert not (tmp_path / "runs").exists()


def test_yaml_not_a_mapping_and_unknown_key(tmp_path, capsys, demo_root):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert_one_line_error(*call(train_cli.main, ["--config", str(bad)], capsys), "list.yaml", "mapping")
    typo = tmp_path / "typo.yaml"
    typo.write_text("tempreature: 3\n")
    assert_one_line_error(
        *call(train_cli.main, ["--config", str(typo)], capsys), "typo.yaml: tempreature: unknown key; known keys: "
    )


@pytest.mark.parametrize(
    "override, key", [("alpha=1.2", "alpha"), ("temperature=-1", "temperature"), ("learning_rate=0", "learning_rate")]
)
def test_out_of_range_values(demo_root, tmp_path, capsys, override, key):
    code, err = call(train_cli.main, [*base_args(demo_root, tmp_path / "runs"), "--set", override], capsys)
    assert_one_line_error(code, err, f"--set: {key}: must be ")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["seed", "split_seed"])
def test_a_negative_seed_is_one_line_before_training(demo_root, tmp_path, capsys, key):
    # numpy's generators refuse it mid-training (augmentation order, the split) with a traceback.
    code, err = call(train_cli.main, [*base_args(demo_root, tmp_path / "runs"), "--set", f"{key}=-1"], capsys)
    assert_one_line_error(code, err)
    assert err == (
        f"error: --set: {key}: must be in [0, 4294967295] (what numpy's and Optuna's random generators accept), got -1"
    )
    assert not (tmp_path / "runs").exists()


def test_teacher_checkpoint_missing_wrong_or_not_a_checkpoint(demo_root, tmp_path, capsys):
    args = [*base_args(demo_root, tmp_path / "runs"), "--mode", "distillation"]
    code, err = call(train_cli.main, [*args, "--set", f"teacher_checkpoint={tmp_path / 'none.pt'}"], capsys)
    assert_one_line_error(code, err, "none.pt", "not found")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    code, err = call(train_cli.main, [*args, "--set", f"teacher_checkpoint={junk}"], capsys)
    assert_one_line_error(code, err, "junk.pt", "not a polyp-kd-tune checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    code, err = call(train_cli.main, [*args, "--set", f"teacher_checkpoint={foreign}"], capsys)
    assert_one_line_error(code, err, "foreign.pt", "not a polyp-kd-tune checkpoint")
    student = Trainer(tiny_config(demo_root, tmp_path)).save(tmp_path / "student.pt")
    code, err = call(train_cli.main, [*args, "--set", f"teacher_checkpoint={student}"], capsys)
    assert_one_line_error(code, err, "student.pt", "not a teacher")
    assert not (tmp_path / "runs").exists()


def test_bad_data_files_reach_the_cli_as_one_line(demo_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    victim = sorted((root / "TrainDataset" / "masks").iterdir())[0]
    victim.unlink()
    code, err = call(train_cli.main, base_args(root, tmp_path / "runs"), capsys)
    assert_one_line_error(code, err, victim.stem, "has no mask")


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    code, err = call(evaluate_cli.main, ["--checkpoint", str(tmp_path / "gone.pt")], capsys)
    assert_one_line_error(code, err, "gone.pt", "not found")


def test_evaluate_writes_table_json_and_overlays(demo_root, tmp_path, capsys):
    run_dir = run_training(Trainer(tiny_config(demo_root, tmp_path / "runs", epochs=1)), log=lambda *_: None)
    out = tmp_path / "eval"
    evaluate_cli.main(["--checkpoint", str(run_dir), "--save-visuals", "--out", str(out), "--max-visuals", "2"])
    table = capsys.readouterr().out
    assert "Kvasir" in table and "mean" in table and "SYNTHETIC" in table
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["test_sets"]) == {"Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300", "ETIS-LaribPolypDB"}
    panels = sorted((out / "visuals" / "Kvasir").glob("*.png"))
    assert len(panels) == 2
    import cv2

    panel = cv2.imread(str(panels[0]))
    assert panel.shape[0] == 256 and panel.shape[1] == 3 * 256


def test_real_process_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "core.train", "--set", "alpha=7"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --set: alpha: must be in [0, 1], got 7"


def test_failed_weight_download_says_to_set_encoder_weights_null(demo_root, tmp_path):
    # HF_HUB_OFFLINE makes the hub fail at once, as a machine without network does after its retries.
    args = [
        sys.executable,
        "-m",
        "core.train",
        "--set",
        f"data_root={demo_root}",
        "--set",
        "img_size=64",
        "--set",
        f"save_dir={tmp_path}",
        "--set",
        "encoder_weights=imagenet",
    ]
    proc = subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: could not download 'imagenet' weights")
    assert "encoder_weights: null" in proc.stderr and "Traceback" not in proc.stderr
