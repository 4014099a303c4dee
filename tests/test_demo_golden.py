"""The demo space's sweep, shrunk, run one trial at a time (so Optuna sees results in a fixed order) and with
the simulated trainer (core/simulated_training.py: each epoch's Dice a fixed function of configuration, seed
and epoch), gives the recorded leaderboard, selection, verdict and winner exactly, on every CPU: a change of
the sweep's decisions (ASHA's stops, TPE's proposals, selection, the verdict's arithmetic) must not change them.

Real training is not pinned here: torch's CPU kernels take other floating-point paths on another CPU
(AVX-512 against AVX2), and every later TPE proposal follows from the values a trial reports.
`RECORD_GOLDEN=1 pytest tests/test_demo_golden.py` rewrites tests/data/demo_golden.json; do that only for an
intended change of results.
"""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import TEST_TEACHER_BACKBONE

from tune import search as search_cli
from tune.cluster.plan import expected_search
from tune.space import load_space

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "demo_golden.json"


def demo_space(data_root: Path, cache_dir: Path) -> dict:
    space = yaml.safe_load((ROOT / "search_spaces" / "demo.yaml").read_text())
    space.pop("demo_data")
    # Latency is timed on this machine, so which proposals a budget rules out is not a recorded constant:
    # the golden run has no deploy target (tests/test_latency_budget.py covers one, with seeded latencies).
    space.pop("deploy")
    space["base"].update(data_root=str(data_root), cache_dir=str(cache_dir), device="cpu")
    space["search"].update(num_samples=8, max_concurrent_trials=1, trainer="simulated")
    space["asha"] = {"max_t": 4, "grace_period": 1, "reduction_factor": 2}
    space["resources"] = {"cpu": 1}
    space["confirm"].update(seeds=2, verdict_seeds=2)  # demo.yaml's design (factorial) and top_k
    space["teacher"]["train"] = {"epochs": 1, "learning_rate": 3.0e-3, "teacher_backbone": TEST_TEACHER_BACKBONE}
    return space


def sweep_values(sweep_dir: Path) -> dict:
    """What a user reads off a finished sweep: every trial's arm, end, epochs, objective and parameters
    (in no particular order: ties are ordered by Ray's random trial ids), the confirmation and the winner."""
    with (sweep_dir / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    trials = sorted(
        (
            {
                "arm": r["arm"],
                "end": r["end"],
                "epochs": int(r["epochs"]),
                "objective": round(float(r["objective"]), 9),
                "params": {k[6:]: v for k, v in r.items() if k.startswith("param:") and v != ""},
            }
            for r in rows
        ),
        key=json.dumps,
    )
    best = json.loads((sweep_dir / "best.json").read_text())
    verdict = best["kd_vs_baseline"]
    confirmation = sorted(
        (
            {"name": c["name"], "arm": c["arm"], "seeds": c["seeds"], "values": [round(v, 9) for v in c["values"]]}
            for c in best["confirmation"]
        ),
        key=lambda c: c["name"],
    )
    return {
        "trials": trials,
        "confirmation": confirmation,
        "winner": best["winner"],
        "best_val_dice": round(best["best_val_dice"], 9),
        "estimate": round(best["estimate"]["mean"], 9),
        "verdict": {
            "design": verdict["design"],
            "pairs": verdict["pairs"],
            "effect": round(verdict["effect"], 9),
            "outcome": verdict["outcome"],
            "interaction": round(verdict["interaction"]["effect"], 9),
            "tuned": round(verdict["tuned"]["diff"], 9),
        },
        "verdict_runs": sorted(
            [r["name"], r["arm"], r["teacher"], [round(v, 9) for v in r["values"]]] for r in best["verdict_runs"]
        ),
    }


def test_demo_sweep_gives_the_recorded_leaderboard_and_winner(demo_root, tmp_path, monkeypatch, capsys):
    space_file = tmp_path / "demo.yaml"
    space_file.write_text(yaml.safe_dump(demo_space(demo_root, tmp_path / "cache")))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    search_cli.main(["--space", str(space_file), "--storage", str(tmp_path / "results"), "--num-cpus", "2"])
    capsys.readouterr()
    values = sweep_values(tmp_path / "results" / "demo")
    if os.environ.get("RECORD_GOLDEN"):
        GOLDEN.write_text(json.dumps(values, indent=1) + "\n")
    assert values == json.loads(GOLDEN.read_text())
    # The verdict isolates the teacher: kd-1 without it differs from kd-1 only in its teacher-only keys.
    best = json.loads((tmp_path / "results" / "demo" / "best.json").read_text())
    runs = {r["name"]: r for r in best["verdict_runs"]}
    kd, ablated = runs["kd-1"], runs["kd-1.no-teacher"]
    assert kd["teacher"] and not ablated["teacher"] and ablated["arm"] == "baseline"
    assert {k: v for k, v in kd["params"].items() if k not in ("alpha", "temperature")} == ablated["params"]
    assert runs["baseline-1.with-teacher"]["params"]["alpha"] == kd["params"]["alpha"]
    selection_seeds = {s for c in best["confirmation"] for s in c["seeds"]}
    assert not selection_seeds & set(best["kd_vs_baseline"]["verdict_seeds"])
    # `--plan`'s simulation of this schedule (one trial at a time) expects the trial-epochs ASHA let run.
    expected = expected_search(load_space(space_file), 1, epoch_seconds=1.0)
    real = sum(trial["epochs"] for trial in values["trials"])
    assert expected.low <= real <= expected.high, (real, expected)
