"""A sweep with a deploy target: each student's latency is read from the cache (a second sweep never measures
again), a proposal over the budget is never trained and is infeasible in the Optuna study, best.json holds the
front; a budget no student meets stops the sweep before Ray starts, naming the fastest."""

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_space

from core.files import write_file_atomic
from core.latency import DeployTarget, latency_key, student_arch
from tune import search as search_cli
from tune.space import load_space
from tune.sweep.study import journal_storage

FAST, SLOW = "mobilenet_v2", "tu-mobilenetv3_small_100"  # tiny_space's two students
KNOWN_MS = {FAST: 5.0, SLOW: 50.0}  # seeded in the cache: the test does not time anything
DEPLOY = {"runtime": "onnxruntime", "device": "cpu", "threads": 1, "latency_budget_ms": 10.0}


def budget_space(demo_root: Path, tmp_path: Path, **deploy) -> Path:
    space = tiny_space(
        demo_root,
        num_samples=4,
        max_t=1,
        cache_dir=tmp_path / "cache",
        name="rt",
        control=None,
        # No control arm and the tuned design: no verdict runs but the winner's (the front is what is tested).
        confirm={"top_k": 1, "seeds": 2, "verdict_seeds": 2, "verdict": "tuned"},
        deploy={**DEPLOY, **deploy},
        wandb={"mode": "disabled"},
    )
    space["base"]["mode"] = "baseline"  # no teacher to train: the budget is what is tested
    path = tmp_path / "rt.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def seed_cache(space_file: Path) -> None:
    """What an earlier sweep on this machine measured: both ONNX Runtime precisions of both students."""
    space = load_space(space_file)
    for backbone, ms in KNOWN_MS.items():
        for runtime, factor in (("onnxruntime", 1.0), ("onnxruntime-int8", 0.5)):
            target = dataclasses.replace(space.deploy, runtime=runtime)
            key = latency_key(student_arch(backbone), target)
            record = {"ms": ms * factor, "measured_at": "an earlier sweep", "key": key}
            path = Path(space.base["cache_dir"]) / "latency" / f"{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(path, json.dumps(record))


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("latency measured again: the cache was not used")

    monkeypatch.setattr("core.latency.measure_latency", refuse)


@pytest.mark.slow
def test_over_budget_students_are_never_trained_and_the_front_lists_both(demo_root, tmp_path, no_measuring):
    space_file = budget_space(demo_root, tmp_path)
    seed_cache(space_file)
    search_cli.main(["--space", str(space_file), "--storage", str(tmp_path / "results"), "--num-cpus", "2"])
    sweep = tmp_path / "results" / "rt"
    rows = json.loads((sweep / "search.json").read_text())["rows"]
    trained = [r for r in rows if r["end"] != "infeasible"]
    infeasible = [r for r in rows if r["end"] == "infeasible"]
    # Four trained trials, all of the fast student, each with its latency; never a slow one in Ray's folders.
    assert len(trained) == 4 and {r["params"]["student_backbone"] for r in trained} == {FAST}
    assert all(r["latency_ms"] == KNOWN_MS[FAST] for r in trained)
    assert not [p for p in (sweep / "trials").iterdir() if SLOW in p.name]
    study = optuna.load_study(study_name="rt", storage=journal_storage(sweep))
    told = [t for t in study.trials if t.user_attrs.get("infeasible")]
    assert len(told) == len(infeasible) and all(t.params["student_backbone"] == SLOW for t in told)
    assert all(
        t.state.name == "PRUNED" and t.user_attrs["latency_ms"] == KNOWN_MS[SLOW] and not t.intermediate_values
        for t in told
    )
    # TPE's constraint (latency minus budget): positive for the slow student, negative for every trained one.
    assert all(t.constraints == {"latency_over_budget_ms": 40.0} for t in told)
    assert all(t.constraints == {"latency_over_budget_ms": -5.0} for t in study.trials if t not in told)
    assert all(r["epochs"] == 0 and r["latency_ms"] == KNOWN_MS[SLOW] for r in infeasible)
    header = (sweep / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "latency_ms" in header
    # A `mode: baseline` space's trials and candidates are labelled by what they train, and none has a teacher.
    arms = {line.split(",")[header.index("arm")] for line in (sweep / "leaderboard.csv").read_text().splitlines()[1:]}
    assert arms == {"baseline"}
    best = json.loads((sweep / "best.json").read_text())
    assert best["winner"] == "baseline-1" and not any(c["teacher"] for c in best["confirmation"])
    assert best["deploy"]["target"]["latency_budget_ms"] == 10.0 and best["student"] == FAST
    front = {e["backbone"]: e for e in best["front"]}
    assert front[FAST]["feasible"] and front[FAST]["mean"] is not None and front[FAST]["pareto"]
    assert front[FAST]["fp32_ms"] == 5.0 and front[FAST]["int8_ms"] == 2.5
    assert not front[SLOW]["feasible"] and front[SLOW]["mean"] is None and front[SLOW]["latency_ms"] == 50.0


def test_a_budget_no_student_meets_is_exit_2_before_ray_starts(demo_root, tmp_path, no_measuring, capsys):
    space_file = budget_space(demo_root, tmp_path, latency_budget_ms=1.0)
    seed_cache(space_file)
    with pytest.raises(SystemExit) as info:
        search_cli.main(["--space", str(space_file), "--storage", str(tmp_path / "results"), "--num-cpus", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"the fastest is {FAST} at 5.0 ms" in err and "Traceback" not in err
    assert not (tmp_path / "results" / "rt").exists()  # nothing written: the same command works once fixed


def test_deploy_target_mistakes_are_one_line_naming_the_key(tmp_path):
    from core.errors import UserError

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml").read_text())
    raw["deploy"]["runtime"] = "tensorrt"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"bad.yaml: deploy.runtime: must be one of .*, got 'tensorrt'"):
        load_space(path)
    assert DeployTarget.from_dict({"latency_budget_ms": 40}, "x").runtime == "onnxruntime"
