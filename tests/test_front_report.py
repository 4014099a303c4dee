"""The Dice–latency front in a sweep's reports (tune/report/html.py, charts.py, tables.py; tune.best show): a
fake finished sweep with a deploy target, built from known numbers, so no trial trains."""

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tune import best as best_cli
from tune.front import build_front
from tune.objective import Objective
from tune.records import Candidate, Confirmed, Sampled, TrialRow, write_leaderboard, write_search
from tune.report.charts import latency_figure
from tune.report.html import write_report

MAX = Objective("best_val_dice", "max")
MEASURED_AT = "this machine (CPU: Test CPU, 2 cores)"
TARGET = {
    "runtime": "onnxruntime-int8",
    "device": "cpu",
    "img_size": 64,
    "batch": 2,
    "threads": 2,
    "latency_budget_ms": 50.0,
}
DESCRIBED = "ONNX Runtime int8, CPU, 2 threads, 64 px, batch 2, budget 50 ms"
# Milliseconds per call at the target; resnet34 is over the 50 ms budget.
LATENCY = {
    "tu-mobilenetv3_small_100": 10.0,
    "mobilenet_v2": 20.0,
    "efficientnet-b0": 30.0,
    "resnet18": 45.0,
    "resnet34": 90.0,
}


def confirmed(name: str, backbone: str, values: list[float], arm: str = "kd") -> Confirmed:
    sampled = Sampled(
        arm, {"student_backbone": backbone, "learning_rate": 1e-3} | ({"alpha": 0.5} if arm == "kd" else {})
    )
    return Confirmed(
        Candidate(name, f"t-{name}", sampled, max(values), 4, front=arm == "kd"),  # each backbone's front entry
        [43, 44, 45],
        values,
        values,
        [f"confirm/{name}-{i}/checkpoint_000004" for i in range(3)],
        [f"r-{name}-{i}" for i in range(3)],
    )


CONFIRMED = [
    confirmed("kd-1", "resnet18", [0.80, 0.82, 0.81]),
    confirmed("kd-2", "mobilenet_v2", [0.78, 0.80, 0.79]),
    confirmed("baseline-1", "mobilenet_v2", [0.70, 0.72, 0.71], arm="baseline"),
    confirmed("kd-3", "efficientnet-b0", [0.74, 0.76, 0.75]),  # slower and worse: not Pareto
    confirmed("kd-4", "tu-mobilenetv3_small_100", [math.nan] * 3),
]  # every seed failed: not confirmed


def front() -> list[dict]:
    students = {
        b: {
            "latency_ms": ms,
            "fp32_ms": round(ms * 1.8, 2),
            "int8_ms": ms,
            "measured_at": MEASURED_AT,
            "feasible": ms <= TARGET["latency_budget_ms"],
        }
        for b, ms in LATENCY.items()
    }
    return json.loads(json.dumps(build_front(students, CONFIRMED, MAX, "mobilenet_v2")))


def trial(trial_id: str, arm: str, backbone: str, score: float, end: str = "finished") -> TrialRow:
    params = {"student_backbone": backbone, "learning_rate": 1e-3} | ({"alpha": 0.4} if arm == "kd" else {})
    epochs = 0 if end == "infeasible" else 4
    return TrialRow(
        trial_id,
        Sampled(arm, params),
        end,
        epochs,
        score,
        score,
        score * 0.8,
        epochs,
        score,
        latency_ms=LATENCY[backbone],
    )


ROWS = [
    trial("t-kd-1", "kd", "resnet18", 0.79),
    trial("t-kd-2", "kd", "mobilenet_v2", 0.77),
    trial("t-kd-3", "kd", "efficientnet-b0", 0.74),
    trial("t-kd-4", "kd", "tu-mobilenetv3_small_100", 0.60, "stopped by ASHA"),
    trial("t-baseline-1", "baseline", "mobilenet_v2", 0.70),
    trial("t-kd-5", "kd", "resnet34", math.nan, "infeasible"),
    trial("t-baseline-2", "baseline", "resnet34", math.nan, "infeasible"),
]
for rank, row in enumerate(ROWS, 1):
    row.rank = rank


def best_record(with_front: bool = True) -> dict:
    """best.json of a finished sweep whose winner is kd-1 (resnet18, 45 ms), as tune/sweep/finish.py writes it."""
    test = {
        "test_sets": {"Kvasir": {"dice": 0.7, "iou": 0.6, "n": 4}},
        "mean": {"dice": 0.7, "iou": 0.6, "n": 4},
        "missing": [],
        "synthetic": True,
    }
    best = {
        "sweep": "rt",
        "objective": MAX.to_dict(),
        "winner": "kd-1",
        "arm": "kd",
        "student": "resnet18",
        "trial_id": "v-kd-1-0",
        "search_trial": "t-kd-1",
        "params": CONFIRMED[0].candidate.params,
        "seed": 46,
        "checkpoint": "verdict/kd-1-0/checkpoint_000004/trainer.pt",
        "test": test,
        "synthetic_data": True,
        "best_val_dice": 0.82,
        "best_val_iou": 0.7,
        "best_epoch": 3,
        "epochs_trained": 4,
        "kd_vs_baseline": None,
        "estimate": None,
        "confirmation": [c.to_dict() for c in CONFIRMED],
        "verdict_runs": [],
    }
    if with_front:
        best.update(deploy={"target": TARGET, "described": DESCRIBED, "measured_at": MEASURED_AT}, front=front())
    return best


def write_fake_sweep(folder: Path, with_front: bool = True) -> Path:
    """A finished sweep folder as the report reads it (space, base, search rows, leaderboard, best.json);
    its trials have no folders and its checkpoints are absent (the gallery says so)."""
    folder.mkdir(parents=True, exist_ok=True)
    space = {
        "name": "rt",
        "base": {"mode": "baseline", "data_root": str(folder / "data"), "img_size": 64, "encoder_weights": None},
        "parameters": {
            "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
            "student_backbone": {"type": "choice", "values": list(LATENCY)},
        },
        "asha": {"max_t": 4, "grace_period": 1, "reduction_factor": 2},
        "wandb": {"mode": "disabled"},
    }
    if with_front:
        space["deploy"] = TARGET
    (folder / "space.yaml").write_text(yaml.safe_dump(space))
    (folder / "sweep.json").write_text(json.dumps({"name": "rt", "base": {"img_size": 64, "batch_size": 4}}))
    rows = ROWS if with_front else [replace(r, latency_ms=None) for r in ROWS if r.end != "infeasible"]
    write_search(rows, folder)
    write_leaderboard(rows, folder / "leaderboard.csv")
    (folder / "best.json").write_text(json.dumps(best_record(with_front)))
    return folder


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    return write_report(write_fake_sweep(tmp_path_factory.mktemp("front") / "rt")).read_text()


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.DOTALL)
    assert match, f"no section {name}"
    return match.group(1)


def table_rows(html: str) -> list[list[str]]:
    """Each body row's cells as text (tags dropped)."""
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.DOTALL).group(1)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)
    ]


def test_front_section_lists_every_backbone_fastest_first_with_frames_per_second_and_pareto_marks(page):
    front_html = section(page, "front")
    assert '<a href="#front">' in page and front_html.count('<img src="data:image/png;base64,') == 1
    assert f"target — {DESCRIBED} — on {MEASURED_AT}" in front_html
    assert "a configuration over the budget was never trained" in front_html
    assert f"<th>deploy target</th><td>{DESCRIBED}, measured on {MEASURED_AT}</td>" in section(page, "settings")
    rows = {r[0]: r for r in table_rows(front_html)}
    assert list(rows) == list(LATENCY)  # fastest first
    # backbone, ms, fp32 ms, int8 ms, frames/s (batch 2: 2000 / ms), within budget, mean (CI), config, Pareto
    assert rows["mobilenet_v2"][1:5] == ["20.0", "36.0", "20.0", "100.0"]
    assert rows["mobilenet_v2"][6].startswith("0.7900 (") and rows["mobilenet_v2"][7] == "kd-2"
    assert {b for b, r in rows.items() if r[8] == "Pareto"} == {"mobilenet_v2", "resnet18"}
    assert rows["efficientnet-b0"][8] == "" and rows["efficientnet-b0"][7] == "kd-3"
    assert rows["resnet34"][5] == "over budget" and rows["resnet34"][6] == "not confirmed"
    assert rows["tu-mobilenetv3_small_100"][5] == "yes" and rows["tu-mobilenetv3_small_100"][6] == "not confirmed"


def test_leaderboard_shows_latency_and_infeasible_trials_as_unusable(page):
    board = section(page, "leaderboard")
    assert "<th>latency (ms)</th>" in board and "never trained" in board
    infeasible = re.findall(r'<td class="end-bad">infeasible</td>', board)
    assert len(infeasible) == 2
    rows = {r[1].split()[0]: r for r in table_rows(board)}  # a trial cell also holds its tags (winner, kd-1)
    assert rows["t-kd-5"][9] == "90.0" and rows["t-kd-5"][4] == "0" and rows["t-kd-2"][9] == "20.0"


def test_latency_chart_draws_trials_infeasible_crosses_the_front_and_the_budget():
    fig = latency_figure(ROWS, front(), 50.0, MAX)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert {
        "search trial (kd)",
        "search trial (baseline)",
        "infeasible (not trained)",
        "budget 50 ms",
        "Pareto front",
    } <= set(labels)
    assert ax.get_xscale() == "log"  # 10 .. 90 ms spans more than 5x
    names = {t.get_text() for t in ax.texts}
    assert names == {"mobilenet_v2", "efficientnet-b0", "resnet18"}  # the confirmed backbones
    step = next(line for line in ax.lines if line.get_label() == "Pareto front")
    assert list(step.get_xdata()) == [20.0, 45.0] and list(step.get_ydata()) == pytest.approx([0.79, 0.81])


def test_a_sweep_without_a_deploy_target_has_no_front_section_nor_latency_column(tmp_path):
    page = write_report(write_fake_sweep(tmp_path / "rt", with_front=False)).read_text()
    assert 'id="front"' not in page and 'href="#front"' not in page and "latency (ms)" not in page
    assert not (tmp_path / "rt" / "charts" / "latency.png").exists()


def test_show_prints_the_front_with_its_budget(tmp_path, capsys):
    sweep = write_fake_sweep(tmp_path / "rt")
    best_cli.main(["show", "--sweep", str(sweep)])
    out = capsys.readouterr().out
    assert f"Dice–latency front at {DESCRIBED}, measured on {MEASURED_AT}" in out
    assert "budget 50 ms at the target" in out
    lines = out[out.index("Dice–latency front") :].splitlines()
    table = {line.split()[0]: line.split() for line in lines[3 : 3 + len(LATENCY)]}
    assert list(table) == list(LATENCY)
    assert table["mobilenet_v2"][:5] == ["mobilenet_v2", "20.0", "36.0", "20.0", "100.0"]
    assert table["resnet18"][-1] == "*" and table["mobilenet_v2"][-1] == "*" and table["efficientnet-b0"][-1] == "kd-3"
    assert "over budget" in " ".join(table["resnet34"]) and "not confirmed" in " ".join(table["resnet34"])
    # The leaderboard shows each trial's latency too.
    assert re.search(r"t-kd-5\s+kd\s+infeasible\s+0\s+–\s+–\s+90\.0", out)
