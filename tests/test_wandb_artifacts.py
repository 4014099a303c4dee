"""tune/tracking/artifacts.py: `tune.best export` logs the winner as a W&B model artifact (read back from the
offline run), never starts W&B when the sweep's W&B is off, and survives W&B failing; the gallery's masked
images and the report artifact on their own."""

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import wandb
import yaml

from core.errors import UserError
from core.files import OUTPUT_MANIFEST
from core.metrics import dice_iou
from tune import best as best_cli
from tune.report.gallery import validation_gallery
from tune.tracking.artifacts import gallery_images, report_artifact

SWEEP = "kd-demo"  # a sweep name (letters, digits, ".", "_", "-"): artifact names and aliases take it as is
PROJECT = "polyp-kd-tune-tests"


def write_sweep(folder: Path, checkpoint: Path | None, mode: str) -> Path:
    """What `tune.best export` reads: best.json naming a copy of `checkpoint` in the sweep folder (a record
    points inside its sweep; None: a test that never reads it) and the space with W&B `mode`."""
    (folder / "confirm" / "t1").mkdir(parents=True)
    if checkpoint is not None:
        shutil.copy(checkpoint, folder / "confirm" / "t1" / "best.pt")
    test = {
        "test_sets": {"Kvasir": {"dice": 0.5, "iou": 0.4, "n": 2}},
        "mean": {"dice": 0.5, "iou": 0.4, "n": 2},
        "missing": [],
        "synthetic": True,
    }
    best = {
        "checkpoint": "confirm/t1/best.pt",
        "sweep": SWEEP,
        "trial_id": "t1",
        "best_val_dice": 0.6,
        "best_val_iou": 0.5,
        "objective": {"metric": "best_val_dice", "mode": "max"},
        "best_epoch": 1,
        "params": {"learning_rate": 1e-3},
        "test": test,
        "synthetic_data": True,
        "kd_vs_baseline": None,
    }
    (folder / "best.json").write_text(json.dumps(best))
    space = {
        "name": SWEEP,
        "parameters": {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
        "wandb": {"project": PROJECT, "group": "tests", "mode": mode},
    }
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    return folder


@pytest.fixture(autouse=True)
def wandb_folders(tmp_path, monkeypatch):
    """wandb stages artifact files under its data folder: a throwaway one, never the user's ~/.local."""
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the space's wandb.mode decides (tracking/mode.py)
    return tmp_path / "wandb_data_dir"


@pytest.fixture(scope="module")
def disabled_export(student_checkpoint, tmp_path_factory):
    """A real `tune.best export` of a sweep whose W&B is disabled, wandb.init refusing to run meanwhile;
    returns the sweep, the export folder, what it printed and the wandb.init calls."""
    tmp = tmp_path_factory.mktemp("wandb-export")
    sweep = write_sweep(tmp / "sweep", student_checkpoint, "disabled")
    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs)
        raise AssertionError("wandb.init called")

    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(output):
        patch.delenv("WANDB_MODE", raising=False)
        patch.setattr(wandb, "init", refuse)
        best_cli.main(["export", "--sweep", str(sweep), "--out", str(tmp / "export")])
    return sweep, tmp / "export", output.getvalue(), calls


def export_again(monkeypatch, out: Path) -> None:
    """`tune.best export` answers with the export already in `out`: the W&B step is under test, and a
    second real export would only repeat the ONNX and int8 work (seconds)."""
    monkeypatch.setattr(
        best_cli, "export", lambda sweep, to, budget_ms=None: json.loads((out / "metrics.json").read_text())
    )


def run_records(run_dir: Path) -> list[dict]:
    """Every record of an offline W&B run, read with wandb's own reader."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_export_with_wandb_disabled_never_starts_wandb(disabled_export):
    sweep, out, printed, calls = disabled_export
    assert calls == [] and not (sweep / "wandb").exists()
    assert (out / "model.onnx").is_file() and "exported trial t1" in printed and "W&B" not in printed


def test_export_logs_the_winner_as_a_model_artifact_with_its_onnx_files(
    disabled_export, tmp_path, monkeypatch, capsys, wandb_folders
):
    _, out, _, _ = disabled_export
    sweep = write_sweep(tmp_path / "offline-sweep", None, "offline")
    export_again(monkeypatch, out)
    best_cli.main(["export", "--sweep", str(sweep), "--out", str(out)])
    printed = capsys.readouterr()
    line = printed.out.strip().splitlines()[-1]
    assert line.startswith("W&B: model artifact kd-demo-student (aliases best, kd-demo) logged offline in ")
    assert "wandb: " not in printed.err  # wandb's banner stays quiet; a deprecation warning would show here
    run_dir = Path(line.rsplit("`wandb sync ", 1)[1].rstrip("`"))
    assert run_dir.parent == (sweep / "wandb").resolve()
    records = run_records(run_dir)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert (run["job_type"], run["run_group"], run["project"]) == ("export", "tests", PROJECT)
    artifact = next(r["artifact"] for r in records if r["type"] == "artifact")
    assert (artifact["name"], artifact["type"]) == ("kd-demo-student", "model")
    assert {"best", "kd-demo"} <= set(artifact["aliases"])
    assert artifact["description"] == (out / "MODEL_CARD.md").read_text()
    metadata = json.loads(artifact["metadata"])
    assert metadata["test"]["mean"]["dice"] == 0.5 and metadata["config"]["img_size"] == 64
    files = {e["path"]: e for e in artifact["manifest"]["contents"]}
    shipped = {p.name for p in out.iterdir() if p.name != OUTPUT_MANIFEST}  # the manifest is for reruns only
    assert set(files) == shipped and {"model.onnx", "model.pt"} <= set(files)
    for name, entry in files.items():  # the bytes `wandb sync` uploads: staged copies, not the export folder
        staged = Path(entry["local_path"])
        assert staged.is_relative_to(wandb_folders) and staged.read_bytes() == (out / name).read_bytes()


def test_no_wandb_skips_the_artifact(disabled_export, tmp_path, monkeypatch, capsys):
    _, out, _, _ = disabled_export
    sweep = write_sweep(tmp_path / "offline-sweep", None, "offline")
    export_again(monkeypatch, out)
    best_cli.main(["export", "--sweep", str(sweep), "--out", str(out), "--no-wandb"])
    assert "W&B" not in capsys.readouterr().out and not (sweep / "wandb").exists()


def test_wandb_failing_is_one_warning_and_the_export_stands(disabled_export, tmp_path, monkeypatch, capsys):
    _, out, _, _ = disabled_export
    sweep = write_sweep(tmp_path / "offline-sweep", None, "offline")
    export_again(monkeypatch, out)

    def unreachable(*args, **kwargs):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(best_cli, "log_model_artifact", unreachable)
    best_cli.main(["export", "--sweep", str(sweep), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: W&B did not log the export (ConnectionError")


def test_gallery_images_carry_prediction_and_ground_truth_masks(student_checkpoint):
    gallery = validation_gallery(student_checkpoint, device="cpu")
    images = gallery_images(gallery)
    assert len(images) == len(gallery.cases) >= 3
    for case, image in zip(gallery.cases, images):
        assert set(image._masks) == {"prediction", "ground_truth"}
        masks = {name: mask._val["mask_data"] for name, mask in image._masks.items()}
        for mask in masks.values():
            assert mask.shape == case.image.shape[:2] and set(mask.ravel().tolist()) <= {0, 1}
        # The masks are the ones the case was scored on.
        dice, _ = dice_iou(torch.from_numpy(masks["prediction"]), torch.from_numpy(masks["ground_truth"]))
        assert dice == pytest.approx(case.dice)
        assert image._caption.startswith(f"{case.kind}: ") and f"Dice {case.dice:.3f}" in image._caption


def test_report_artifact_holds_report_html_and_its_charts_folder(tmp_path):
    with pytest.raises(UserError, match=re.escape("report.html: not found")):
        report_artifact(tmp_path, SWEEP)
    (tmp_path / "report.html").write_text("<html></html>")
    assert set(report_artifact(tmp_path, SWEEP).manifest.entries) == {"report.html"}
    (tmp_path / "charts").mkdir()
    for name in ("curves.png", "parallel_coordinates.png"):
        (tmp_path / "charts" / name).write_bytes(b"\x89PNG")
    artifact = report_artifact(tmp_path, SWEEP)
    assert (artifact.name, artifact.type) == ("kd-demo-report", "report")
    assert set(artifact.manifest.entries) == {"report.html", "charts/curves.png", "charts/parallel_coordinates.png"}
