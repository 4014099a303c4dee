"""core/export.py: the exported folder is complete, readable by others, consistent with evaluation, and
written whole or not at all; tune.best reads best.json in one place."""

import json
import re
import stat

import pytest
import torch
import yaml

from core import export as export_module
from core.checkpoint import WEIGHTS_FILENAME
from core.errors import UserError
from core.export import EXPORT_FILES, export_run
from core.files import OUTPUT_MANIFEST
from core.quantize import INT8_ONNX_FILENAME
from tune import best as best_cli


@pytest.fixture(scope="module")
def run_checkpoint(student_checkpoint):
    """best.pt of a baseline run (no test_metrics.json beside it)."""
    return student_checkpoint


@pytest.fixture(scope="module")
def exported(student_export):
    return student_export


def test_export_writes_every_file_and_others_can_read_it(exported):
    out, record = exported
    int8 = (INT8_ONNX_FILENAME,) if record["int8"]["written"] else ()  # decided on validation Dice
    assert sorted(p.name for p in out.iterdir()) == sorted((*EXPORT_FILES, *int8, OUTPUT_MANIFEST))
    assert set(json.loads((out / OUTPUT_MANIFEST).read_text())["files"]) == {*EXPORT_FILES, *int8}
    # tempfile.mkdtemp's 0700 must not survive the rename: group and others can list and read the folder.
    assert stat.S_IMODE(out.stat().st_mode) & 0o055 == 0o055
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in out.iterdir())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary sibling left
    state = torch.load(out / WEIGHTS_FILENAME, weights_only=True)
    assert yaml.safe_load((out / "config.yaml").read_text()) == state["config"]
    assert json.loads((out / "metrics.json").read_text()) == record
    assert record["onnx"]["max_abs_diff"] < 1e-3 and "test image" in record["onnx"]["checked_on"]
    assert record["sweep"] is None and record["best_epoch"] == 1 and record["synthetic_data"] is True
    card = (out / "MODEL_CARD.md").read_text()
    assert "SYNTHETIC" in card and "Best-validation weights of run" in card and "tune.best predict" in card


def test_exported_scores_are_what_core_evaluate_measures_on_the_export(exported, tmp_path):
    from core import evaluate as evaluate_cli

    out, record = exported
    evaluate_cli.main(["--checkpoint", str(out), "--out", str(tmp_path / "eval"), "--device", "cpu"])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["mean"]["n"] == record["test"]["mean"]["n"] > 0
    assert report["mean"]["dice"] == pytest.approx(record["test"]["mean"]["dice"], abs=1e-6)


def test_failed_export_keeps_the_previous_folder_and_leaves_no_temporary(exported, run_checkpoint, monkeypatch):
    out, _ = exported
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def broken_onnx(*args, **kwargs):
        raise RuntimeError("ONNX export differs from PyTorch")

    monkeypatch.setattr(export_module, "export_onnx", broken_onnx)
    with pytest.raises(RuntimeError):
        export_run(run_checkpoint, out, device="cpu")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_export_never_replaces_a_folder_that_is_not_an_export(run_checkpoint, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match=r"mine: not an export folder \(no .polyp-kd-tune-output.json: this project"):
        export_run(run_checkpoint, mine, device="cpu")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_export_cli_on_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        export_module.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "export")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "export").exists()


def test_read_winner_turns_best_json_into_export_metrics(tmp_path):
    test = {
        "test_sets": {"Kvasir": {"dice": 0.5, "iou": 0.4, "n": 2}},
        "mean": {"dice": 0.5, "iou": 0.4, "n": 2},
        "missing": [],
        "synthetic": True,
    }
    sentence = "no evidence that distillation helped: +0.01 val Dice over the same student without a teacher"
    best = {
        "checkpoint": "confirm/trial/checkpoint_000003/trainer.pt",
        "sweep": "kd",
        "trial_id": "t1",
        "objective": {"metric": "best_val_dice", "mode": "max"},
        "best_val_dice": 0.6,
        "best_val_iou": 0.5,
        "best_epoch": 3,
        "params": {"alpha": 0.3},
        "test": test,
        "synthetic_data": True,
        "kd_vs_baseline": {"sentence": sentence},
    }
    (tmp_path / "best.json").write_text(json.dumps(best))
    winner = best_cli.read_winner(tmp_path)
    assert winner.checkpoint == tmp_path / "confirm" / "trial" / "checkpoint_000003" / "trainer.pt"
    metrics = winner.metrics
    assert (metrics.sweep, metrics.trial_id, metrics.best_epoch, metrics.objective) == ("kd", "t1", 3, "best_val_dice")
    assert metrics.params == {"alpha": 0.3} and metrics.test == test and metrics.verdict == sentence
    del best["params"]
    (tmp_path / "best.json").write_text(json.dumps(best))
    with pytest.raises(UserError, match=re.escape("best.json: no 'params' entry")):
        best_cli.read_winner(tmp_path)
