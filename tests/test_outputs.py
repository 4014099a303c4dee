"""core/files.py's one rule for every --out (export, predict, evaluate, demo data, split): only an output of
the same kind that this project wrote is replaced (told by its manifest, not by file names), and of it only the
files it wrote; never an input or a sweep folder; a full disk or a read-only folder is one line with the
earlier output left as it was."""

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from core import export as export_module
from core import files as files_module
from core import predict as predict_module
from core.cache import decoded_samples
from core.data import discover
from core.data import main as data_cli
from core.errors import UserError
from core.evaluate import main as evaluate_cli
from core.export import export_run
from core.files import OUTPUT_MANIFEST, OutputKind, atomic_folder, check_output, output_folder
from core.synthetic import SYNTHETIC_MARKER, write_demo_dataset
from tune import best as best_cli

KIND = OutputKind("an export folder")
NOT_OURS = f"no {OUTPUT_MANIFEST}: this project did not write it"
CHOOSE = "choose another --out or remove it"
DEMO_ARGS = ["--size", "32", "--train", "2", "--test", "1"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, with its bytes: equal snapshots mean nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(path: Path) -> Path:
    """A folder of someone's own files, one of them two levels down."""
    (path / "notes" / "2024").mkdir(parents=True)
    (path / "todo.txt").write_text("keep me")
    (path / "notes" / "2024" / "scan.png").write_bytes(b"\x89PNG not really")
    return path


def one_line_exit_2(info, capsys) -> str:
    # predict's progress bar (tqdm, on stderr, desc "predict") is not part of the message.
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    err = "\n".join(line for line in lines if line.strip() and not line.startswith("predict:"))
    assert info.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.removeprefix("error: ")


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


TEST_REPORT = {
    "test_sets": {"Kvasir": {"dice": 0.5, "iou": 0.4, "n": 2}},
    "mean": {"dice": 0.5, "iou": 0.4, "n": 2},
    "missing": [],
    "synthetic": True,
}


@pytest.fixture()
def run_dir(student_checkpoint, tmp_path):
    """A copy of the student's run with its test scores beside it, so an export does not score test sets."""
    run = tmp_path / "runs" / "student"
    run.mkdir(parents=True)
    shutil.copy(student_checkpoint, run / "best.pt")
    (run / "test_metrics.json").write_text(json.dumps(TEST_REPORT))
    return run


def written_by_us(folder: Path, kind: OutputKind, files: dict[str, str]) -> Path:
    """A folder `output_folder` wrote as `kind`, holding `files` (relative path: text), with its manifest."""
    with output_folder(folder, kind) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return folder


@pytest.fixture()
def old_export(tmp_path):
    """What replacing an export may not touch when it fails: an earlier export's files (stand-ins)."""
    files = {"metrics.json": "{}", "model.pt": "weights", "MODEL_CARD.md": "# card"}
    return written_by_us(tmp_path / "export", export_module.EXPORT_KIND, files)


@pytest.fixture(scope="module")
def model_dir(student_checkpoint):
    """A --model folder for predict (a run folder: PyTorch runtime, no export needed)."""
    return student_checkpoint.parent


@pytest.fixture()
def image(demo_root, tmp_path):
    """One test image in a folder of its own, tmp_path/shots/one.png."""
    (tmp_path / "shots").mkdir()
    shutil.copy(min((demo_root / "TestDataset" / "Kvasir" / "images").iterdir()), tmp_path / "shots" / "one.png")
    return tmp_path / "shots" / "one.png"


# --- the rule itself ---


def test_absent_empty_and_own_folders_may_be_written(tmp_path):
    (tmp_path / "empty").mkdir()
    written_by_us(tmp_path / "own", KIND, {"metrics.json": "{}"})
    for name in ("absent", "empty", "own"):
        assert check_output(tmp_path / name, KIND) == (tmp_path / name).resolve()


def test_a_folder_without_a_manifest_a_file_or_another_kind_is_refused_naming_it(tmp_path):
    user_folder(tmp_path / "mine")
    with pytest.raises(UserError) as info:
        check_output(tmp_path / "mine", KIND)
    assert str(info.value) == f"{tmp_path / 'mine'}: not an export folder ({NOT_OURS}); {CHOOSE}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"file: not an export folder \(a file\)"):
        check_output(tmp_path / "file", KIND)
    written_by_us(tmp_path / "eval", OutputKind("an evaluation folder"), {"metrics.json": "{}"})
    with pytest.raises(UserError, match=rf"eval: not an export folder \(its {OUTPUT_MANIFEST} says an evaluation"):
        check_output(tmp_path / "eval", KIND)


def test_a_rerun_replaces_what_it_wrote_and_carries_over_what_the_user_added(tmp_path):
    out = written_by_us(tmp_path / "out", KIND, {"metrics.json": "1", "masks/a.png": "a", "gone.txt": "old"})
    (out / "notes.txt").write_text("keep me")
    (out / "masks" / "mine.png").write_text("my own mask")
    user_folder(out / "mine")
    (out / "empty").mkdir()
    (out / "link").symlink_to(tmp_path)  # moved as a link, never followed
    theirs = {k: v for k, v in snapshot(out).items() if k.startswith(("notes", "mine", "masks/mine"))}
    written_by_us(out, KIND, {"metrics.json": "2", "masks/a.png": "b"})
    after = snapshot(out)
    assert {k: after[k] for k in theirs} == theirs and (out / "empty").is_dir()
    assert (out / "link").readlink() == tmp_path
    assert after["metrics.json"] == b"2" and after["masks/a.png"] == b"b" and "gone.txt" not in after
    assert no_temporaries(tmp_path)


def test_an_edited_output_file_or_a_user_file_in_the_way_stops_the_rerun_before_anything_changes(tmp_path):
    out = written_by_us(tmp_path / "out", KIND, {"metrics.json": "1", "masks/a.png": "a"})
    (out / "metrics.json").write_text("my edit")
    before = snapshot(out)
    with pytest.raises(UserError, match=r"not an export folder \(metrics.json changed since it was written\)"):
        written_by_us(out, KIND, {"metrics.json": "2"})
    (out / "metrics.json").write_text("1")
    (out / "masks" / "b.png").write_text("mine")  # the rerun writes masks/b.png too
    before = snapshot(out)
    with pytest.raises(UserError) as info:
        written_by_us(out, KIND, {"metrics.json": "2", "masks/b.png": "new"})
    assert str(info.value) == (
        f"{out / 'masks' / 'b.png'}: this project did not write it and the new output has a file of that name; "
        f"move it away and run again (nothing was changed)"
    )
    assert snapshot(out) == before and no_temporaries(tmp_path)


def test_a_failed_swap_puts_the_users_files_back(tmp_path, monkeypatch):
    out = written_by_us(tmp_path / "out", KIND, {"metrics.json": "1"})
    user_folder(out / "mine")
    before = snapshot(out)
    real = os.replace

    def swap_fails(src, dst):
        if Path(src) == out.resolve() or Path(src) == out:
            raise OSError(errno.EIO, "Input/output error", str(src))
        real(src, dst)

    monkeypatch.setattr(files_module.os, "replace", swap_fails)
    with pytest.raises(OSError), atomic_folder(out, keep=files_module.users_entries) as tmp:
        (tmp / "metrics.json").write_text("2")
    assert snapshot(out) == before and no_temporaries(tmp_path)


@pytest.mark.parametrize(
    "out, relation",
    [
        ("inputs", "is"),
        ("inputs/a/b", "lies inside"),
        ("..", "contains"),
        ("link", "is"),
        ("link/x/../y", "lies inside"),
        ("inputs/../inputs", "is"),
    ],
)
def test_an_out_that_is_holds_or_lies_inside_an_input_is_refused_after_resolving(tmp_path, out, relation):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "inputs")
    with pytest.raises(UserError) as info:
        check_output(tmp_path / out, KIND, [("input", tmp_path / "inputs")])
    assert f"the output {relation} the input {tmp_path / 'inputs'}; choose another --out" in str(info.value)


def test_an_allowed_path_may_lie_inside_a_protected_folder_but_not_be_it(tmp_path):
    sweep = tmp_path / "sweep"
    assert check_output(sweep / "export", KIND, [("sweep folder", sweep)], allowed=[sweep / "export"])
    with pytest.raises(UserError, match="the output is the sweep folder"):
        check_output(sweep, KIND, [("sweep folder", sweep)], allowed=[sweep / "export"])


# --- export ---


def test_export_cli_leaves_a_user_folder_byte_identical(student_checkpoint, tmp_path, capsys):
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    with pytest.raises(SystemExit) as info:
        export_module.main(["--checkpoint", str(student_checkpoint), "--out", str(mine)])
    assert one_line_exit_2(info, capsys) == f"{mine}: not an export folder ({NOT_OURS}); {CHOOSE}"
    assert snapshot(mine) == before


def test_a_user_made_lookalike_of_an_export_is_not_taken_for_one(student_checkpoint, tmp_path, capsys):
    mine = user_folder(tmp_path / "mine")
    (mine / "metrics.json").write_text("{}")
    (mine / "model.pt").write_text("my weights")
    before = snapshot(mine)
    with pytest.raises(SystemExit) as info:
        export_module.main(["--checkpoint", str(student_checkpoint), "--out", str(mine)])
    assert NOT_OURS in one_line_exit_2(info, capsys)
    assert snapshot(mine) == before


def test_export_refuses_an_out_that_holds_the_checkpoint_run_even_when_it_looks_like_an_export(
    student_checkpoint, tmp_path, capsys
):
    run = tmp_path / "work" / "runs" / "baseline"
    run.mkdir(parents=True)
    shutil.copy(student_checkpoint, run / "best.pt")  # no test scores beside it: refused before scoring
    for name in ("metrics.json", "model.pt"):  # the marker alone would let it be replaced
        (tmp_path / "work" / name).write_text("{}")
    before = snapshot(tmp_path / "work")
    for out in (tmp_path / "work", run / "exports" / "new"):
        with pytest.raises(SystemExit) as info:
            export_module.main(["--checkpoint", str(run), "--out", str(out)])
        relation = "contains" if out == tmp_path / "work" else "lies inside"
        assert f"the output {relation} the checkpoint folder {run}" in one_line_exit_2(info, capsys)
    assert snapshot(tmp_path / "work") == before


@pytest.fixture()
def fake_sweep(student_checkpoint, tmp_path):
    """A finished sweep folder whose winner is the student run: sweep.json, best.json, confirm/t1/best.pt."""
    sweep = tmp_path / "results" / "kd"
    (sweep / "confirm" / "t1").mkdir(parents=True)
    shutil.copy(student_checkpoint, sweep / "confirm" / "t1" / "best.pt")
    test = {
        "test_sets": {"Kvasir": {"dice": 0.5, "iou": 0.4, "n": 2}},
        "mean": {"dice": 0.5, "iou": 0.4, "n": 2},
        "missing": [],
        "synthetic": True,
    }
    best = {
        "checkpoint": "confirm/t1/best.pt",
        "sweep": "kd",
        "trial_id": "t1",
        "best_epoch": 1,
        "objective": {"metric": "best_val_dice", "mode": "max"},
        "best_val_dice": 0.6,
        "best_val_iou": 0.5,
        "params": {},
        "test": test,
        "synthetic_data": True,
        "kd_vs_baseline": None,
    }
    (sweep / "best.json").write_text(json.dumps(best))
    (sweep / "sweep.json").write_text("{}")
    return sweep


@pytest.mark.parametrize(
    "pointer",
    [
        "../../../../etc/hostname",
        "confirm/../../outside.pt",
        "/etc/hostname",
        "file:///etc/hostname",
        "STORAGE/../other/confirm/t1/best.pt",
    ],
)
def test_a_record_pointing_outside_its_sweep_is_refused_and_never_followed(pointer, fake_sweep, tmp_path, capsys):
    storage = tmp_path / "storage" / "kd"  # where the sweep says it ran: its records may point there
    (fake_sweep / "sweep.json").write_text(json.dumps({"storage": f"file://{storage}"}))
    pointer = pointer.replace("STORAGE", str(storage))
    best = json.loads((fake_sweep / "best.json").read_text())
    (fake_sweep / "best.json").write_text(json.dumps({**best, "checkpoint": pointer}))
    with pytest.raises(SystemExit) as info:
        best_cli.main(["export", "--sweep", str(fake_sweep), "--out", str(tmp_path / "export")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert f"a record names {pointer!r}, outside the sweep folder and its storage" in err
    assert not (tmp_path / "export").exists()


def test_a_record_may_point_into_the_sweep_folder_or_the_storage_it_ran_in(fake_sweep, tmp_path):
    from tune.records import resolve

    storage = tmp_path / "storage" / "kd"
    (fake_sweep / "sweep.json").write_text(json.dumps({"storage": f"file://{storage}"}))
    for inside in (str(storage / "trials" / "t1"), f"file://{storage}/trials/t1", str(fake_sweep / "confirm")):
        assert resolve(inside, fake_sweep) == inside
    assert resolve("confirm/t1/best.pt", fake_sweep) == str(fake_sweep / "confirm" / "t1" / "best.pt")
    for outside in (str(tmp_path / "storage" / "kd2"), f"file://{storage}/../other", "s3://bucket/kd"):
        with pytest.raises(UserError, match="outside the sweep folder and its storage"):
            resolve(outside, fake_sweep)
    (fake_sweep / "sweep.json").write_text(json.dumps({"storage": "s3://bucket/sweeps/kd"}))
    assert resolve("s3://bucket/sweeps/kd/trials/t1", fake_sweep) == "s3://bucket/sweeps/kd/trials/t1"
    with pytest.raises(UserError):
        resolve("s3://bucket/sweeps/kd-other/t1", fake_sweep)


def test_sweep_names_are_one_folder_inside_the_storage(tmp_path, capsys):
    from tune import search as search_cli

    for name in ("../../ESCAPED dir", "..", "a/b", "-rf", ".hidden"):
        with pytest.raises(SystemExit) as info:
            search_cli.main(["--space", "demo.yaml", f"--name={name}", "--storage", str(tmp_path / "results")])
        err = capsys.readouterr().err
        assert info.value.code == 2 and "--name: must be letters, digits" in err and repr(name) in err, name
    assert not (tmp_path / "results").exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    space = tmp_path / "spaces" / "my sweep.yaml"  # a space named by its file: the file name must pass too
    space.parent.mkdir()
    demo = yaml.safe_load((Path(search_cli.__file__).parents[1] / "search_spaces" / "demo.yaml").read_text())
    space.write_text(yaml.safe_dump({k: v for k, v in demo.items() if k != "name"}))

    with pytest.raises(SystemExit):
        search_cli.main(["--space", str(space), "--storage", str(tmp_path / "results")])
    assert "name: must be letters, digits" in capsys.readouterr().err


def test_sweep_export_refuses_an_out_inside_or_around_the_sweep(fake_sweep, capsys):
    around = fake_sweep.parent
    for name in ("metrics.json", "model.pt"):
        (around / name).write_text("{}")
    before = snapshot(around)
    for out, relation in ((fake_sweep / "confirm" / "new", "lies inside"), (around, "contains")):
        with pytest.raises(SystemExit) as info:
            best_cli.main(["export", "--sweep", str(fake_sweep), "--out", str(out)])
        assert f"the output {relation} the sweep folder {fake_sweep}" in one_line_exit_2(info, capsys)
    assert snapshot(around) == before


def test_sweep_export_writes_its_default_folder_inside_the_sweep(fake_sweep, capsys):
    best_cli.main(["export", "--sweep", str(fake_sweep)])
    assert (fake_sweep / "export" / "model.pt").is_file() and "exported trial t1" in capsys.readouterr().out


def test_full_disk_during_export_is_one_line_and_the_old_export_stays(
    run_dir, old_export, tmp_path, capsys, monkeypatch
):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    before = snapshot(old_export)

    def save_to_full_disk(state, path):
        torch.save(state, "/dev/full")  # PyTorch's own writer: a RuntimeError without errno or file name

    monkeypatch.setattr(export_module, "save_checkpoint", save_to_full_disk)
    with pytest.raises(SystemExit) as info:
        export_module.main(["--checkpoint", str(run_dir), "--out", str(old_export)])
    err = one_line_exit_2(info, capsys)
    assert err.startswith(f"{old_export / 'model.pt'}: PyTorch's writer stopped") and "MB needed" in err
    assert f"{old_export} is as it was before" in err
    assert snapshot(old_export) == before and no_temporaries(tmp_path)


def test_file_too_large_names_the_file_it_was_writing(run_dir, old_export, tmp_path, monkeypatch):
    before = snapshot(old_export)

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")  # as a write() reports it: no file name

    monkeypatch.setattr(export_module, "export_onnx", too_large)
    with pytest.raises(UserError, match=rf"^{old_export / 'model.onnx'}: file too large while writing it \(about"):
        export_run(run_dir, old_export, device="cpu")
    assert snapshot(old_export) == before and no_temporaries(tmp_path)


# --- predict ---


def test_predict_refuses_an_out_holding_its_inputs_and_deletes_nothing(model_dir, image, tmp_path, capsys):
    work = tmp_path / "work"
    best_cli.main(["predict", "--model", str(model_dir), str(image), "--out", str(work)])  # an earlier run
    new = work / "new" / "batch1"
    new.mkdir(parents=True)
    shutil.copy(image, new / "two.png")
    before = snapshot(work)
    with pytest.raises(SystemExit) as info:
        best_cli.main(["predict", "--model", str(model_dir), str(new), "--out", str(work)])
    assert one_line_exit_2(info, capsys) == f"{work}: the output contains the input {new}; choose another --out"
    assert snapshot(work) == before


@pytest.mark.parametrize(
    "layout", ["out is the input folder through a link", "out holds the model folder", "out inside a sweep folder"]
)
def test_predict_refuses_inputs_the_model_and_sweeps_as_out(layout, model_dir, image, tmp_path, capsys):
    model, source = model_dir, image
    if layout == "out is the input folder through a link":
        source, out, needle = image.parent, tmp_path / "link", f"the output is the input {image.parent}"
        out.symlink_to(image.parent)
    elif layout == "out holds the model folder":
        model = tmp_path / "project" / "models" / "student"
        shutil.copytree(model_dir, model)
        (tmp_path / "project" / "predictions.csv").write_text("image,mask\n")  # looks like an earlier run
        out, needle = tmp_path / "project", f"the output contains the --model folder {model}"
    else:
        sweep = tmp_path / "results" / "kd"
        (sweep / "trials").mkdir(parents=True)
        (sweep / "sweep.json").write_text("{}")
        out, needle = sweep / "trials" / "predictions", f"the output lies inside the sweep folder {sweep}"
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        best_cli.main(["predict", "--model", str(model), str(source), "--out", str(out)])
    assert needle in one_line_exit_2(info, capsys)
    assert snapshot(tmp_path) == before


def test_full_disk_during_predict_is_one_line_and_the_old_predictions_stay(
    model_dir, image, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    best_cli.main(["predict", "--model", str(model_dir), str(image), "--out", str(out)])
    before = snapshot(out)

    def full(path, picture):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(predict_module, "write_png", full)
    with pytest.raises(SystemExit) as info:
        best_cli.main(["predict", "--model", str(model_dir), str(image), "--out", str(out)])
    err = one_line_exit_2(info, capsys)
    assert err.startswith(f"{out / 'masks' / 'one.png'}: no space left on device while writing it (")
    assert "MB free in" in err and f"{out} is as it was before" in err
    assert snapshot(out) == before and no_temporaries(tmp_path)


@pytest.mark.parametrize("command", ["demo", "predict"])
def test_out_in_a_read_only_folder_is_one_line_naming_it(command, model_dir, image, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anyway: the file system answers as a read-only mount does
        real = tempfile.mkdtemp

        def read_only(*args, dir=None, prefix="", **kwargs):
            if dir is not None and Path(dir) == locked.resolve():
                raise OSError(errno.EROFS, "Read-only file system", str(locked / f"{prefix}x1y2"))
            return real(*args, dir=dir, prefix=prefix, **kwargs)

        monkeypatch.setattr(files_module.tempfile, "mkdtemp", read_only)
    else:
        locked.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as info:
            if command == "demo":
                data_cli(["demo", "--out", str(locked / "data"), *DEMO_ARGS])
            else:
                best_cli.main(["predict", "--model", str(model_dir), str(image), "--out", str(locked / "out")])
    finally:
        locked.chmod(0o755)
    assert one_line_exit_2(info, capsys) in (
        f"{locked}: cannot write there ({reason}); choose another --out or make it writable"
        for reason in ("read-only file system", "permission denied")
    )
    assert list(locked.iterdir()) == []


# --- evaluate ---


@pytest.fixture()
def test_dir(demo_root, tmp_path):
    folder = tmp_path / "hospital"
    shutil.copytree(demo_root / "TestDataset" / "Kvasir", folder)
    return folder


def evaluate(checkpoint, test_dir, out, *more):
    evaluate_cli(
        ["--checkpoint", str(checkpoint), "--test-dir", str(test_dir), "--out", str(out), "--device", "cpu", *more]
    )


def test_evaluate_replaces_its_own_output_but_not_a_user_or_export_folder(
    student_checkpoint, test_dir, tmp_path, capsys
):
    out = tmp_path / "eval"
    for _ in range(2):
        evaluate(student_checkpoint, test_dir, out, "--save-visuals", "--max-visuals", "1")
    assert (out / "EVALUATION.txt").is_file() and len(list((out / "visuals" / "hospital").iterdir())) == 1
    capsys.readouterr()
    exported = written_by_us(tmp_path / "exported", export_module.EXPORT_KIND, {"metrics.json": "{}"})
    for folder, why in (
        (user_folder(tmp_path / "mine"), NOT_OURS),
        (exported, f"its {OUTPUT_MANIFEST} says an export folder"),
    ):
        before = snapshot(folder)
        with pytest.raises(SystemExit) as info:
            evaluate(student_checkpoint, test_dir, folder, "--save-visuals")
        assert (
            one_line_exit_2(info, capsys) == f"{folder}: not an evaluation folder ({why}); choose another --out "
            f"or remove it"
        )
        assert snapshot(folder) == before


def test_evaluate_refuses_an_out_inside_the_test_dir_or_holding_the_checkpoint(
    student_checkpoint, test_dir, tmp_path, capsys
):
    run = tmp_path / "work" / "runs" / "teacher"
    run.mkdir(parents=True)
    shutil.copy(student_checkpoint, run / "best.pt")
    before = snapshot(tmp_path)
    for out, needle in (
        (test_dir / "results" / "eval", f"the output lies inside the --test-dir folder {test_dir}"),
        (tmp_path / "work", f"the output contains the checkpoint folder {run}"),
    ):
        with pytest.raises(SystemExit) as info:
            evaluate(run, test_dir, out)
        assert needle in one_line_exit_2(info, capsys)
    assert snapshot(tmp_path) == before


# --- demo data and split files ---


def test_demo_data_replaces_earlier_demo_data_but_not_a_user_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    write_demo_dataset(out, size=32, n_train=2, n_test=1, seed=1)
    data_cli(["demo", "--out", str(out), *DEMO_ARGS, "--seed", "2"])
    assert "seed=2" in (out / SYNTHETIC_MARKER).read_text()
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    with pytest.raises(SystemExit) as info:
        data_cli(["demo", "--out", str(mine), *DEMO_ARGS])
    assert (
        one_line_exit_2(info, capsys) == f"{mine}: not a demo data folder ({NOT_OURS}); choose another --out or "
        f"remove it"
    )
    assert snapshot(mine) == before


@pytest.mark.parametrize("command", ["export", "predict", "evaluate", "demo"])
def test_rerunning_a_command_into_its_own_output_keeps_the_files_the_user_added(
    command, run_dir, student_export, model_dir, image, test_dir, tmp_path
):
    out = tmp_path / "out"

    def export() -> None:  # the first run: the session's export of the same run, copied
        _ = export_run(run_dir, out, device="cpu") if out.exists() else shutil.copytree(student_export[0], out)

    commands = {
        "export": export,
        "predict": lambda: best_cli.main(["predict", "--model", str(model_dir), str(image), "--out", str(out)]),
        "evaluate": lambda: evaluate(run_dir, test_dir, out, "--save-visuals", "--max-visuals", "1"),
        "demo": lambda: data_cli(["demo", "--out", str(out), *DEMO_ARGS]),
    }
    commands[command]()
    ours = snapshot(out)
    (out / "notes.txt").write_text("my notes")
    user_folder(out / "mine")
    theirs = {k: v for k, v in snapshot(out).items() if k not in ours}
    for folder in [p for p in out.iterdir() if p.is_dir() and p.name != "mine"][:1]:  # export writes none
        (folder / "added.txt").write_text("inside one of its folders")
        theirs[f"{folder.name}/added.txt"] = b"inside one of its folders"
    commands[command]()
    after = snapshot(out)
    assert {k: after[k] for k in theirs} == theirs
    assert set(after) == set(ours) | set(theirs) and no_temporaries(tmp_path)


def test_split_replaces_its_own_file_but_not_a_user_file_or_its_groups(demo_root, tmp_path, capsys):
    out = tmp_path / "val.txt"
    for _ in range(2):
        data_cli(["split", "--data-root", str(demo_root), "--out", str(out)])
    assert out.read_text().splitlines()
    capsys.readouterr()
    notes = tmp_path / "notes.txt"
    notes.write_text("buy milk\n")
    groups = tmp_path / "groups.csv"
    groups.write_text("stem,group\n")
    for args, needle in (
        (["--out", str(notes)], f"{notes}: not a split file (line 'buy milk' is no training"),
        (
            ["--val-split", "grouped", "--val-groups", str(groups), "--out", str(groups)],
            f"{groups}: the output is the --val-groups file {groups}",
        ),
    ):
        with pytest.raises(SystemExit) as info:
            data_cli(["split", "--data-root", str(demo_root), *args])
        assert one_line_exit_2(info, capsys).startswith(needle)
    assert notes.read_text() == "buy milk\n" and groups.read_text() == "stem,group\n"


def test_split_refuses_an_out_inside_the_data_root(demo_root, capsys):
    before = snapshot(demo_root)
    inside = demo_root / "TrainDataset" / "images" / "zz.png"
    with pytest.raises(SystemExit) as info:
        data_cli(["split", "--data-root", str(demo_root), "--out", str(inside)])
    assert one_line_exit_2(info, capsys) == (
        f"{inside}: the output lies inside the data root {demo_root}; choose another --out"
    )
    assert snapshot(demo_root) == before


def test_a_cache_in_a_user_folder_writes_beside_their_files_and_deletes_none(demo_root, tmp_path):
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    samples = decoded_samples(discover(demo_root).train, 32, mine)
    # Its own folders only, named by a hash of their inputs: <cache>/decoded/<20 hex digits>.
    assert samples.folder.parent == mine / "decoded" and len(samples.folder.name) == 20
    assert {k: v for k, v in snapshot(mine).items() if not k.startswith("decoded")} == before
