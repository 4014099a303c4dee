"""core.evaluate on any test folder: a root holding only TestDataset, sets of any name, or one folder."""

import json
import shutil

import cv2
import pytest

from core.evaluate import main as evaluate_cli
from core.synthetic import SYNTHETIC_MARKER, TEST_SET_NAMES


@pytest.fixture()
def tests_only_root(demo_root, tmp_path):
    """Two standard test sets and one of another name; no TrainDataset."""
    root = tmp_path / "tests-only"
    for name in ("Kvasir", "CVC-ClinicDB"):
        shutil.copytree(demo_root / "TestDataset" / name, root / "TestDataset" / name)
    shutil.copytree(demo_root / "TestDataset" / "CVC-300", root / "TestDataset" / "Hospital-A")
    shutil.copy(demo_root / SYNTHETIC_MARKER, root)
    return root


def test_root_with_only_test_sets_is_scored_with_other_names_and_missing_named(
    tests_only_root, teacher_checkpoint, tmp_path, capsys
):
    out = tmp_path / "eval"
    evaluate_cli(
        [
            "--checkpoint",
            str(teacher_checkpoint),
            "--data-root",
            str(tests_only_root),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--save-visuals",
            "--max-visuals",
            "1",
        ]
    )
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["test_sets"]) == ["Kvasir", "CVC-ClinicDB", "Hospital-A"]
    assert all(s["n"] == 4 and 0 <= s["dice"] <= 1 for s in report["test_sets"].values())
    assert report["missing"] == [n for n in TEST_SET_NAMES if n not in ("Kvasir", "CVC-ClinicDB")]
    assert report["mean"]["n"] == 12 and report["synthetic"]
    assert len(list((out / "visuals" / "Hospital-A").glob("*.png"))) == 1
    table = capsys.readouterr().out
    assert "Hospital-A" in table and "missing (not evaluated): CVC-ColonDB, CVC-300, ETIS-LaribPolypDB" in table


def test_test_dir_scores_one_folder_under_its_name(tests_only_root, teacher_checkpoint, tmp_path):
    out = tmp_path / "eval"
    folder = tests_only_root / "TestDataset" / "Hospital-A"
    evaluate_cli(
        ["--checkpoint", str(teacher_checkpoint), "--test-dir", str(folder), "--out", str(out), "--device", "cpu"]
    )
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["test_sets"]) == ["Hospital-A"] and report["missing"] == []
    assert report["mean"] == report["test_sets"]["Hospital-A"]
    assert report["synthetic"]  # the demo root's marker, two levels up


def test_truncated_test_image_is_one_line_error_and_no_output(tests_only_root, teacher_checkpoint, tmp_path, capsys):
    victim = sorted((tests_only_root / "TestDataset" / "Kvasir" / "images").iterdir())[2]
    image = cv2.imread(str(victim))
    victim.unlink()
    victim = victim.with_suffix(".jpg")
    cv2.imwrite(str(victim), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli(
            [
                "--checkpoint",
                str(teacher_checkpoint),
                "--data-root",
                str(tests_only_root),
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: {victim}: truncated or corrupt image")
    assert not out.exists() and list(tmp_path.glob(".eval-*")) == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--data-root", "{tmp}"], "no test sets found"),
        (["--test-dir", "{tmp}/nope"], "test folder not found"),
        (["--test-dir", "{tmp}"], "folder not found; expected"),
    ],
)
def test_missing_test_data_is_one_line_error(teacher_checkpoint, tmp_path, capsys, args, needle):
    argv = ["--checkpoint", str(teacher_checkpoint), "--out", str(tmp_path / "eval")]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli(argv + [a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and needle in err
