"""End-to-end sweeps on tiny synthetic data: Optuna + ASHA + a control arm + confirmation over seeds,
W&B offline, resume, export."""

import csv
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAKE_KEY, tiny_space, trial_reports

from core.files import OUTPUT_MANIFEST
from tune import best as best_cli
from tune import search as search_cli

pytestmark = pytest.mark.slow  # every test here starts Ray or a sweep driver

ROOT = Path(__file__).resolve().parents[1]
RAY_EXPERIMENTS = ("trials", "control", "confirm", "verdict")  # the sweep's Ray experiment folders


def start_driver(
    space: dict, tmp_path: Path, wandb_mode: str = "disabled", resume: bool = False, log_name: str = "driver.log"
) -> tuple[subprocess.Popen, Path]:
    """`python -m tune.search` on `space` (written to tmp_path/s.yaml, results in tmp_path/results) as a
    separate process, as a user runs it; returns the process and its log file."""
    space_file = tmp_path / "s.yaml"
    space_file.write_text(yaml.safe_dump(space))
    log = tmp_path / log_name
    cmd = [
        sys.executable,
        "-m",
        "tune.search",
        "--space",
        str(space_file),
        "--storage",
        str(tmp_path / "results"),
        "--num-cpus",
        "2",
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def read_rows(sweep_dir: Path) -> list[dict]:
    with (sweep_dir / "leaderboard.csv").open() as f:
        return list(csv.DictReader(f))


def test_sweep_uses_optuna_and_asha_and_writes_the_report(finished_sweep):
    rows = read_rows(finished_sweep)
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    # ASHA cut at least one trial before max_t, and at least one ran the full budget.
    early = [r for r in rows if r["end"] == "stopped by ASHA"]
    assert early and all(int(r["epochs"]) < 4 for r in early)
    assert any(r["end"] == "finished" and int(r["epochs"]) == 4 for r in rows)
    # Ranked by exactly the objective (best_val_dice here).
    values = [float(r["objective"]) for r in rows]
    assert values == sorted(values, reverse=True) and values == [float(r["best_val_dice"]) for r in rows]
    # The control arm: half of 6 trials, the same students without a teacher, searched on its own.
    assert sorted(r["arm"] for r in rows).count("baseline") == 3
    assert len(list((finished_sweep / "control").glob("*/result.json"))) == 3
    assert all(r["param:alpha"] == "" for r in rows if r["arm"] == "baseline")
    for name in (
        "space.yaml",
        "sweep.json",
        "charts/curves.png",
        "charts/parallel_coordinates.png",
        "teacher/best.pt",
        "optuna.journal",
        "search.json",
        "wandb-sweep.yaml",
    ):
        assert (finished_sweep / name).is_file(), name


# Each Ray experiment's progress lines begin with its stage; search trials, selection and verdict runs.
PROGRESS = {
    "trials": "search kd  trial ",
    "control": "search baseline  trial ",
    "confirm": "selection  run ",
    "verdict": "verdict  run ",
}


def test_console_shows_the_stages_and_a_line_per_trial_start_and_end_and_rays_output_goes_to_its_log(finished_sweep):
    console = (finished_sweep.parent.parent / "console.txt").read_text()
    ray_log = finished_sweep / "ray.log"
    assert console.count(str(ray_log)) == 1  # named once, when Ray starts
    # Ray's trial tables, hints, log records and its processes' output: in its log, never on the console.
    for ray_line in (
        "Trial status:",
        "│",
        "View detailed results",
        "tensorboard",
        "core_worker",
        " pid=",
        "Token authentication",
        "A new study created",
    ):
        assert ray_line not in console, ray_line
    logged = ray_log.read_text()
    assert "Trial status:" in logged and "(_train_teacher pid=" in logged
    lines = console.splitlines()
    progress = [line for line in lines if line.startswith(tuple(PROGRESS.values()))]
    trials = 0
    for experiment, stage in PROGRESS.items():
        for result in (finished_sweep / experiment).glob("*/result.json"):
            trial_id = trial_reports(result)[-1]["trial_id"]
            mine = [line for line in progress if line.startswith(stage) and f"  {trial_id}  " in line]
            assert len(mine) == 2 and "  started  " in mine[0], (experiment, mine)
            assert re.search(r"  (finished|stopped by ASHA) at epoch \d+  best_val_dice \d\.\d{4}$", mine[1]), mine
            trials += 1
    assert trials == 6 + 4 + len(json.loads((finished_sweep / "best.json").read_text())["verdict_runs"]) * 2
    assert len(progress) == 2 * trials
    assert "searching arm kd: 3 trials" in lines and any(line.startswith("winner: ") for line in lines)


def test_optuna_study_sees_asha_stops_as_pruned(finished_sweep):
    import optuna

    from tune.sweep.study import journal_storage

    rows = read_rows(finished_sweep)
    for arm, name in (("kd", "tiny"), ("baseline", "tiny.baseline")):  # one study per arm
        study = optuna.load_study(study_name=name, storage=journal_storage(finished_sweep))
        states = [t.state.name for t in study.trials]
        mine = [r for r in rows if r["arm"] == arm]
        assert len(states) == len(mine) == 3
        assert states.count("PRUNED") == sum(r["end"] == "stopped by ASHA" for r in mine)
        assert states.count("COMPLETE") == sum(r["end"] == "finished" for r in mine)
        for trial in study.trials:  # one intermediate value per epoch, at step = epoch
            assert sorted(trial.intermediate_values) == list(range(1, len(trial.intermediate_values) + 1))
        # One trial, three views: each Optuna trial names its Ray trial (a folder of its arm's experiment) and
        # W&B run (an offline run of that id); the study names its metric.
        assert study.metric_names == ["best_val_dice"]
        experiment = finished_sweep / ("trials" if arm == "kd" else "control")
        runs = {p.name.rsplit("-", 1)[-1] for p in (finished_sweep / "wandb").glob("offline-run-*")}
        for trial in study.trials:
            ray_id = trial.user_attrs["ray_trial_id"]
            assert trial.user_attrs["arm"] == arm and trial.user_attrs["wandb_run_id"] == ray_id
            assert [p for p in experiment.iterdir() if p.is_dir() and ray_id in p.name], ray_id
            assert ray_id in runs
            assert dict(trial.params.items()) == {
                k.removeprefix("param:"): float(v) if k != "param:student_backbone" else v
                for r in mine
                if r["trial_id"] == ray_id
                for k, v in r.items()
                if k.startswith("param:") and v
            }


def test_trials_checkpoint_at_the_policy_epochs_and_where_they_ended(finished_sweep):
    for result in finished_sweep.glob("trials/*/result.json"):
        reports = trial_reports(result)
        with_checkpoint = [r["epoch"] for r in reports if r.get("checkpoint_dir_name")]
        assert set(with_checkpoint) <= {1, 3, 4} and with_checkpoint[-1] == reports[-1]["epoch"], result
        # The one checkpoint kept (num_to_keep=1) is the epoch the trial ended on, ASHA-stopped or not.
        kept = list(result.parent.glob("checkpoint_*/epoch.json"))
        assert len(kept) == 1 and json.loads(kept[0].read_text())["epoch"] == reports[-1]["epoch"]


def test_every_trial_used_the_one_sweep_teacher(finished_sweep):
    teacher = str(finished_sweep / "teacher" / "best.pt")
    assert json.loads((finished_sweep / "sweep.json").read_text())["base"]["teacher_checkpoint"] == teacher
    for params in (finished_sweep / "trials").glob("*/params.json"):
        assert "teacher_checkpoint" not in json.loads(params.read_text())
    configs = [
        torch.load(c, weights_only=True)["config"]
        for arm in ("trials", "control")
        for c in (finished_sweep / arm).glob("*/checkpoint_*/trainer.pt")
    ]
    assert configs and all(c["teacher_checkpoint"] == teacher for c in configs if c["mode"] == "distillation")
    assert all(c["teacher_checkpoint"] is None for c in configs if c["mode"] == "baseline")
    assert {c["mode"] for c in configs} == {"distillation", "baseline"}


def test_trials_on_one_node_share_one_cache(finished_sweep):
    cache = finished_sweep.parent.parent / "cache"
    assert len(list(cache.glob("decoded/*/images.npy"))) == 1
    assert len(list(cache.glob("teacher_logits/*/logits.npy"))) == 1
    trained = list((finished_sweep / "trials").glob("*/checkpoint_*/trainer.pt"))
    assert all(torch.load(c, weights_only=True)["config"]["teacher_logits"] == "cached" for c in trained)


def test_winner_is_selected_and_estimated_on_different_seeds_with_a_verdict(finished_sweep):
    best = json.loads((finished_sweep / "best.json").read_text())
    confirmation = best["confirmation"]
    assert sorted(c["arm"] for c in confirmation) == ["baseline", "kd"]  # top 1 of each arm
    for c in confirmation:  # selection seeds: never the search's seed (42)
        assert c["seeds"] == [43, 44] and len(c["values"]) == 2
        assert c["mean"] == pytest.approx(sum(c["values"]) / 2)
        assert c["ci95"][0] <= c["mean"] <= c["ci95"][1]
    winner = confirmation[0]  # ranked by selection mean
    assert best["winner"] == winner["name"] and best["selection_mean"] == pytest.approx(winner["mean"])
    runs = {r["name"]: r for r in best["verdict_runs"]}
    assert all(r["seeds"] == [45, 46] for r in runs.values())  # fresh: neither search nor selection seeds
    estimate = best["estimate"]
    assert estimate["seeds"] == [45, 46] and estimate["mean"] == pytest.approx(runs[best["winner"]]["mean"])
    assert best["best_val_dice"] == pytest.approx(max(runs[best["winner"]]["val_dice"]))  # its best run exported
    verdict = best["kd_vs_baseline"]  # the ablation (tests/conftest.py: tiny_space)
    assert verdict["design"] == "ablation" and verdict["verdict_seeds"] == [45, 46] and verdict["n_valid"] == 2
    assert verdict["outcome"] in ("helped", "hurt", "no effect", "inconclusive", "no verdict")
    assert verdict["pairs"] == [[verdict["kd"], f"{verdict['kd']}.no-teacher"]] and verdict["margin"] == 0.01
    kd, ablated, base = runs[verdict["kd"]], runs[f"{verdict['kd']}.no-teacher"], runs[verdict["baseline"]]
    assert (kd["teacher"], ablated["teacher"], base["teacher"]) == (True, False, False)
    assert verdict["effect"] == pytest.approx(kd["mean"] - ablated["mean"])
    assert verdict["tuned"]["diff"] == pytest.approx(kd["mean"] - base["mean"])
    assert "2 seeds" in verdict["sentence"] or verdict["outcome"] == "no verdict"
    kd_student = kd["params"].get("student_backbone", "mobilenet_v2")
    assert base["params"].get("student_backbone", "mobilenet_v2") == kd_student == verdict["student"]
    assert {k: v for k, v in kd["params"].items() if k not in ("alpha", "temperature")} == ablated["params"]
    assert best["selection_failures"] == {"kd": 0, "baseline": 0}
    # Test sets scored once, at the end: the exported run, and every verdict checkpoint of the winner and of
    # the verdict's pair, per image, with intervals over seeds and images.
    sets = {"Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300", "ETIS-LaribPolypDB"}
    assert set(best["test"]["test_sets"]) == sets
    assert 0 <= best["test"]["mean"]["dice"] <= 1 and best["synthetic_data"] is True
    assert set(best["winner_test"]) == set(best["test_effect"]) == sets | {"mean"}
    for name, r in best["test_effect"].items():
        assert r["n_seeds"] == 2 and r["n_images"] == (20 if name == "mean" else 4)
        assert -1 <= r["ci95"][0] <= r["delta"] <= r["ci95"][1] <= 1
    assert 0 <= best["winner_test"]["mean"]["ci95"][0] <= best["winner_test"]["mean"]["score"] <= 1
    with open(finished_sweep / "test_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    scored = {(r["config"], r["seed"]) for r in rows}
    assert scored == {(name, seed) for name in {best["winner"], *verdict["pairs"][0]} for seed in ("45", "46")}
    assert len(rows) == len(scored) * 20 and all(0 <= float(r["dice"]) <= 1 for r in rows)
    kd_dice = [float(r["dice"]) for r in rows if r["config"] == verdict["kd"] and r["test_set"] == "Kvasir"]
    no_teacher = [float(r["dice"]) for r in rows if r["config"] == ablated["name"] and r["test_set"] == "Kvasir"]
    # test_per_image.csv keeps 6 decimals
    assert best["test_effect"]["Kvasir"]["delta"] == pytest.approx((sum(kd_dice) - sum(no_teacher)) / 8, abs=1e-5)
    report = (finished_sweep / "report.html").read_text()
    assert "The teacher on the test sets" in report and (finished_sweep / "charts" / "test_effect.png").is_file()
    # Paths in best.json are relative to the sweep folder (a copied sweep still exports).
    assert not Path(best["checkpoint"]).is_absolute()
    state = torch.load(finished_sweep / best["checkpoint"], weights_only=True)
    assert state["epoch"] == 4 and state["config"]["seed"] == best["seed"] and best["seed"] in (45, 46)


def test_no_trial_scores_or_logs_test_sets(finished_sweep):
    results = [p for d in RAY_EXPERIMENTS for p in finished_sweep.glob(f"{d}/*/result.json")]
    verdict_runs = len(list(finished_sweep.glob("verdict/*/result.json")))
    assert len(results) == 6 + 4 + verdict_runs and verdict_runs in (6, 8)  # 3 or 4 configurations x 2 seeds
    for path in results:
        assert "test/" not in path.read_text(), path


def test_wandb_offline_runs_exist_per_trial_and_hold_no_api_key(finished_sweep):
    runs = list((finished_sweep / "wandb").glob("offline-run-*"))
    trial_ids = {r["trial_id"] for r in read_rows(finished_sweep)}
    confirm_ids = {
        json.loads(line)["trial_id"]
        for d in RAY_EXPERIMENTS
        if d not in ("trials", "control")
        for p in (finished_sweep / d).glob("*/result.json")
        for line in p.read_text().splitlines()[:1]
    }
    summary = [run for run in runs if "-summary-" in run.name]
    assert len(summary) == 1
    runs = [run for run in runs if "-export-" not in run.name]  # the export's run (another test may export)
    assert {run.name.rsplit("-", 1)[-1] for run in runs if run not in summary} == trial_ids | confirm_ids
    assert all(list(run.glob("*.wandb")) for run in runs)
    # Each trial's run holds its whole config, not only the sampled values.
    # (An offline run keeps its config and tags inside its .wandb record file until synced.)
    for run in runs:
        if run not in summary:
            record = next(run.glob("*.wandb")).read_bytes()
            assert all(key in record for key in (b"img_size", b"kd_loss", b"teacher_checkpoint", b"val_split")), run
            assert b"arm:kd" in record or b"arm:baseline" in record
    # Logging processes are reused from trial to trial: each run holds exactly its own trial's results.
    reported = {}
    for result in [p for d in RAY_EXPERIMENTS for p in (finished_sweep / d).glob("*/result.json")]:
        rows = trial_reports(result)
        reported[rows[0]["trial_id"]] = [(r["epoch"], r["val_dice"]) for r in rows]
    for run in runs:
        if run not in summary:
            assert wandb_history(run) == reported[run.name.rsplit("-", 1)[-1]], run
    places = [finished_sweep] + [Path(p) for p in glob.glob("/tmp/ray/session_latest/logs")]
    for place in places:
        for path in place.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert FAKE_KEY.encode() not in path.read_bytes(), path


def wandb_records(run: Path) -> list[dict]:
    """The records of an offline W&B run, read with wandb's own reader."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wandb_history(run: Path) -> list[tuple[int, float]]:
    """(epoch, val_dice) of each history record of an offline W&B run."""
    return [
        (h["history"]["item"]["epoch"], h["history"]["item"]["val_dice"])
        for h in wandb_records(run)
        if h.get("type") == "history"
    ]


def test_wandb_trial_runs_chart_against_the_epoch_and_tables_keep_numbers(finished_sweep):
    runs = sorted((finished_sweep / "wandb").glob("offline-run-*"))
    trial_run = next(r for r in runs if "-summary-" not in r.name)
    metrics = [r["metric"] for r in wandb_records(trial_run) if r.get("type") == "metric"]
    assert {"name": "epoch", "options": {"defined": True}} in metrics
    assert any(m.get("glob_name") == "*" and m["step_metric"] == "epoch" for m in metrics)
    objective = next(m for m in metrics if m.get("name") == "best_val_dice")
    assert objective["step_metric"] == "epoch" and objective["summary"] == {"max": True}
    summaries = [r["summary"]["update"] for r in wandb_records(trial_run) if r.get("type") == "summary"]
    assert any(isinstance(u.get("best_val_dice"), dict) and "max" in u["best_val_dice"] for u in summaries)
    # The summary run's tables: a searched number is a number (W&B can plot it), a choice its text.
    summary = next(r for r in runs if "-summary-" in r.name)
    table = json.loads(next((summary / "files" / "media" / "table").glob("leaderboard_*.table.json")).read_text())
    columns = table["columns"]
    alpha, backbone = columns.index("alpha"), columns.index("student_backbone")
    kd_rows = [row for row in table["data"] if row[columns.index("arm")] == "kd"]
    assert kd_rows and all(isinstance(row[alpha], float) for row in kd_rows)
    assert all(isinstance(row[columns.index("learning_rate")], float) for row in table["data"])
    assert {row[backbone] for row in table["data"]} <= {"mobilenet_v2", "tu-mobilenetv3_small_100"}
    charts = {p.name.split("_")[0] for p in (summary / "files" / "media" / "images" / "charts").glob("*.png")}
    assert {"curves", "parallel"} <= charts, charts


def test_show_and_export_round_trip_and_onnx_matches_pytorch_on_a_batch(finished_sweep, tmp_path, capsys):
    best_cli.main(["show", "--sweep", str(finished_sweep)])
    out = capsys.readouterr().out
    assert "stopped by ASHA" in out and "selection (val Dice" in out and "verdict runs (val Dice" in out
    assert "estimate: val Dice" in out and "\nverdict: " in out
    out = tmp_path / "export"
    best_cli.main(["export", "--sweep", str(finished_sweep), "--out", str(out)])
    names = {p.name for p in out.iterdir()}
    # model.int8.onnx only when it keeps validation Dice (core/quantize.py)
    expected = {"model.pt", "model.onnx", "config.yaml", "metrics.json", "MODEL_CARD.md", OUTPUT_MANIFEST}
    assert names - {"model.int8.onnx"} == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["onnx"]["max_abs_diff"] < 1e-3 and "test image" in metrics["onnx"]["checked_on"]
    state = torch.load(out / "model.pt", weights_only=True)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg == state["config"]
    assert "SYNTHETIC" in (out / "MODEL_CARD.md").read_text()
    # The exported folder is a checkpoint core.evaluate understands.
    from core import evaluate as evaluate_cli

    evaluate_cli.main(["--checkpoint", str(out), "--out", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    best = json.loads((finished_sweep / "best.json").read_text())
    assert report["mean"]["dice"] == pytest.approx(best["test"]["mean"]["dice"], abs=1e-6)
    # The exported ONNX model matches PyTorch on a random batch of 3 (not only the test image export checks).
    import numpy as np
    import onnxruntime as ort

    from core.models import load_model

    model, _ = load_model(out)
    x = torch.randn(3, 3, 64, 64)
    expected = model(x).detach().numpy()
    actual = ort.InferenceSession(str(out / "model.onnx")).run(None, {"image": x.numpy()})[0]
    assert np.abs(actual - expected).max() < 1e-3


def test_existing_sweep_name_is_refused(finished_sweep, capsys):
    space = finished_sweep / "space.yaml"
    with pytest.raises(SystemExit) as info:
        search_cli.main(["--space", str(space), "--storage", str(finished_sweep.parent), "--name", "tiny"])
    assert info.value.code == 2 and "--resume" in capsys.readouterr().err


def _trained(trials: Path, epochs: int) -> list[Path]:
    """Trial folders whose last result reports `epochs` epochs trained."""
    done = []
    for result in trials.glob("*/result.json"):
        lines = result.read_text().strip().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == epochs:
            done.append(result.parent)
    return done


def _finished(trials: Path) -> list[Path]:
    """Trial folders whose last result says the trial is done (max_t reached)."""
    done = []
    for result in trials.glob("*/result.json"):
        lines = result.read_text().strip().splitlines()
        if lines and json.loads(lines[-1]).get("done"):
            done.append(result.parent)
    return done


def test_sweep_on_uri_storage_keeps_teacher_and_trials_where_every_node_reaches(demo_root, tmp_path):
    shared = tmp_path / "bucket"
    # No selection stage: its experiments go to the same storage the same way (run_config), and its two
    # extra Ray experiments cost a quarter of a minute.
    space = tiny_space(demo_root, num_samples=2, max_t=2, cache_dir=tmp_path / "cache", name="remote", confirm=None)
    space_file = tmp_path / "remote.yaml"
    space_file.write_text(yaml.safe_dump(space))
    search_cli.main(
        [
            "--space",
            str(space_file),
            "--storage",
            f"file://{shared}",
            "--num-cpus",
            "2",
            "--local-results",
            str(tmp_path / "local"),
        ]
    )
    remote = shared / "remote"
    assert (remote / "teacher" / "best.pt").is_file()
    # One trial per arm, each arm's experiment in the shared storage.
    for arm in ("trials", "control"):
        assert len([p for p in (remote / arm).iterdir() if p.name.startswith("train_trial")]) == 1
    for name in ("best.json", "leaderboard.csv", "sweep.json", "space.yaml", "data.json"):
        assert (remote / name).is_file(), name
    # Its records may point into that storage (Ray records the trials there by path), and nowhere else outside.
    assert json.loads((remote / "sweep.json").read_text())["storage"] == f"file://{remote}"
    base = json.loads((remote / "sweep.json").read_text())["base"]
    assert base["teacher_checkpoint"] == f"file://{remote}/teacher/best.pt"
    best = json.loads((tmp_path / "local" / "remote" / "best.json").read_text())
    assert (tmp_path / "local" / "remote" / best["checkpoint"]).is_file()


def test_missing_teacher_checkpoint_is_exit_2_before_anything_is_written(demo_root, tmp_path, capsys):
    space = tiny_space(
        demo_root,
        num_samples=2,
        max_t=2,
        cache_dir=tmp_path / "cache",
        name="noteacher",
        teacher={"checkpoint": str(tmp_path / "nope" / "best.pt")},
    )
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(SystemExit) as info:
        search_cli.main(["--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "does not exist" in err and "teacher.yaml" in err and "checkpoint: null" in err
    assert not (tmp_path / "results" / "noteacher").exists()


def test_teacher_trained_on_the_students_validation_images_is_refused(demo_root, teacher_checkpoint, tmp_path, capsys):
    # The fixture teacher used val_fraction 0.25: with 0.5 the students' validation set differs.
    space = tiny_space(
        demo_root,
        num_samples=2,
        max_t=2,
        cache_dir=tmp_path / "cache",
        name="leak",
        teacher={"checkpoint": str(teacher_checkpoint)},
    )
    space["base"]["val_fraction"] = 0.5
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(SystemExit) as info:
        search_cli.main(["--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "results")])
    assert info.value.code == 2 and "students' validation images" in capsys.readouterr().err
    assert not (tmp_path / "results" / "leak").exists()


def test_diverged_trial_ends_at_once_as_failed_without_retry(demo_root, teacher_checkpoint, tmp_path, capsys):
    import optuna

    from tune.sweep.study import journal_storage

    space = tiny_space(
        demo_root,
        num_samples=1,
        max_t=2,
        cache_dir=tmp_path / "cache",
        name="nan",
        teacher={"checkpoint": str(teacher_checkpoint)},
        control=None,
        confirm=None,
    )
    space["parameters"] = {"learning_rate": {"type": "loguniform", "low": 1.0e29, "high": 1.0e30}}
    space["search"].update(max_failures=2, trainer="torch")  # a real loss becomes NaN
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    with pytest.raises(SystemExit) as info:  # nothing usable: no winner
        search_cli.main(
            ["--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "results"), "--num-cpus", "2"]
        )
    assert info.value.code == 2
    sweep = tmp_path / "results" / "nan"
    (row,) = read_rows(sweep)
    assert row["end"] == "diverged" and "training loss became nan" in row["error"]
    # The console says it in the trial's progress line (the trial process's own line reaches ray.log
    # through Ray's asynchronous log forwarding, which may still be on its way when the driver exits).
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("search kd  trial 1/1  ")]
    assert len(said) == 2 and re.search(r"diverged at epoch \d+: .*training loss became nan", said[1]), said
    (result,) = sweep.glob("trials/*/result.json")
    assert len(result.read_text().splitlines()) == 1  # one diverged result, no retry from a checkpoint
    study = optuna.load_study(study_name="nan", storage=journal_storage(sweep))
    assert [t.state.name for t in study.trials] == ["FAIL"]


def test_confirmation_resumed_after_a_driver_kill_reruns_no_finished_seed(demo_root, teacher_checkpoint, tmp_path):
    space = tiny_space(
        demo_root,
        num_samples=1,
        max_t=2,
        cache_dir=tmp_path / "cache",
        name="confirmkill",
        teacher={"checkpoint": str(teacher_checkpoint)},
        control=None,
        confirm={"top_k": 1, "seeds": 3, "verdict_seeds": 2, "verdict": "tuned"},  # no verdict runs but the winner's
    )
    # Real epochs: the kill must land while some selection seeds are still training.
    space["search"].update(max_concurrent_trials=1, trainer="torch")
    space_file, storage = tmp_path / "s.yaml", tmp_path / "results"
    confirm = storage / "confirmkill" / "confirm"
    proc, _ = start_driver(space, tmp_path)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not _trained(confirm, epochs=2):
            time.sleep(0.2)
        assert _trained(confirm, epochs=2), (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray, at once: no clean shutdown
        proc.wait()
    before = {trial: (trial / "progress.csv").read_text() for trial in _trained(confirm, epochs=2)}
    assert len(before) < 3, "every seed finished before the kill: nothing was tested"
    search_cli.main(["--space", str(space_file), "--storage", str(storage), "--num-cpus", "2", "--resume"])
    for trial, progress in before.items():
        assert (trial / "progress.csv").read_text() == progress, f"{trial.name} was re-run"
    best = json.loads((storage / "confirmkill" / "best.json").read_text())
    (confirmed,) = best["confirmation"]
    assert confirmed["seeds"] == [43, 44, 45] and all(0 <= v <= 1 for v in confirmed["values"])


def test_a_copied_sweep_folder_still_exports(finished_sweep, tmp_path):
    import shutil

    best = json.loads((finished_sweep / "best.json").read_text())
    copy = tmp_path / "moved" / "tiny"
    # What export reads, and nothing else: paths in best.json are relative to the sweep folder.
    (copy / best["checkpoint"]).parent.mkdir(parents=True)
    shutil.copy(finished_sweep / best["checkpoint"], copy / best["checkpoint"])
    for name in ("best.json", "leaderboard.csv"):
        shutil.copy(finished_sweep / name, copy / name)
    best_cli.main(["export", "--sweep", str(copy), "--out", str(tmp_path / "export")])
    assert (tmp_path / "export" / "model.pt").is_file()


def test_rerunning_the_end_of_a_sweep_updates_its_one_w_and_b_summary_run(finished_sweep, monkeypatch):
    """--resume on a finished sweep runs its last stage again: the summary run keeps its id."""

    def summary_ids():
        return [p.name.rsplit("-summary-", 1)[-1] for p in (finished_sweep / "wandb").glob("offline-run-*-summary-*")]

    before = summary_ids()
    monkeypatch.setenv("WANDB_MODE", "offline")
    search_cli.main(
        [
            "--space",
            str(finished_sweep / "space.yaml"),
            "--storage",
            str(finished_sweep.parent),
            "--num-cpus",
            "2",
            "--resume",
        ]
    )
    after = summary_ids()
    assert len(before) == 1 and len(after) == 2 and set(after) == set(before)
    assert json.loads((finished_sweep / "sweep.json").read_text())["uid"] in before[0]


def test_a_sweep_online_without_wandb_says_what_it_waits_for_and_ends_complete(demo_root, tmp_path):
    """W&B online with a well-formed key and no W&B (a closed local port): every wait on W&B is announced and
    bounded ($POLYP_KD_TUNE_WANDB_TIMEOUT_S), the runs are logged offline for `wandb sync`, and the sweep's
    results are complete: exit 0."""
    space = tiny_space(demo_root, num_samples=2, max_t=2, cache_dir=tmp_path / "cache", control=None, confirm=None)
    space["wandb"]["mode"] = "online"
    space["base"]["mode"] = "baseline"  # no teacher to train first: W&B's waits are what is tested
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="online",
        WANDB_API_KEY=FAKE_KEY,
        WANDB_BASE_URL="http://127.0.0.1:9",
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
        WANDB_SILENT="true",
        POLYP_KD_TUNE_WANDB_TIMEOUT_S="3",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "tune.search", "--space", str(tmp_path / "s.yaml"), "--storage", str(tmp_path / "r")]
    started = time.monotonic()
    done = subprocess.run([*cmd, "--num-cpus", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweep, out = tmp_path / "r" / "tiny", done.stdout
    assert (sweep / "best.json").is_file() and (sweep / "report.html").is_file()
    wandb_dir = sweep / "wandb"
    assert "W&B: registering the W&B Sweep (at most 3 s)" in out
    assert "W&B: the sweep was not registered as a W&B Sweep (" in out
    assert f"runs of this stage (at most 26 s; what W&B does not get stays in {wandb_dir} for `wandb sync`)" in out
    assert f"W&B: logging the sweep's summary run (at most 26 s; without W&B it is kept in {wandb_dir}" in out
    assert f"the summary run is logged offline in {wandb_dir}: upload it later with `wandb sync {wandb_dir}`" in out
    assert f"W&B: 3 runs of this sweep are offline in {wandb_dir}: upload them with `wandb sync {wandb_dir}`" in out
    assert "W&B Report not made: W&B did not get every run" in out and "Traceback" not in done.stderr
    assert len(list(wandb_dir.glob("offline-run-*"))) == 3  # both trials and the summary, for `wandb sync`
    # Without the bounds: 100 s for each run's start (wandb's default init_timeout), 19 s for the Sweep.
    assert seconds < 240, seconds
