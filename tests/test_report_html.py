"""results/<sweep>/report.html (tune/report/html.py, charts.py, gallery.py): written by a real tiny sweep,
self-contained, a row per trial, rebuilt by `python -m tune.report`; the parallel-coordinates axes, ASHA's
rungs and the gallery's case picking on their own."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import heavy_modules_imported

from tune.objective import Objective
from tune.records import TrialRow
from tune.report import __main__ as report_cli
from tune.report.charts import Axis, parallel_axes, parallel_coordinates_figure
from tune.report.gallery import pick_cases
from tune.sampling import Sampled
from tune.space import load_space, parameter_specs

# Any attribute that would make the browser fetch something (src, href, srcset, poster, data, action).
NETWORK = re.compile(r"""\b(?:src|href|srcset|poster|data|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture
def sweep_copy(finished_sweep, tmp_path) -> Path:
    """A copy of the session's shared sweep, for a test that deletes its report (the shared one is read-only)."""
    copy = tmp_path / finished_sweep.name
    shutil.copytree(finished_sweep, copy, symlinks=True)
    return copy


def leaderboard_ids(sweep: Path) -> list[str]:
    with (sweep / "leaderboard.csv").open() as f:
        return [row["trial_id"] for row in csv.DictReader(f)]


def section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.DOTALL)
    assert match, f"no section {name}"
    return match.group(1)


@pytest.mark.slow
def test_sweep_writes_a_self_contained_page_with_a_row_per_trial(finished_sweep):
    page = (finished_sweep / "report.html").read_text()
    assert not NETWORK.findall(page)
    assert "<link" not in page and "@import" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    images = re.findall(r'<img src="([^"]*)"', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)

    ids = leaderboard_ids(finished_sweep)
    with (finished_sweep / "leaderboard.csv").open() as f:
        baseline_rows = sum(row["arm"] == "baseline" for row in csv.DictReader(f))
    board = section(page, "leaderboard")
    assert len(ids) == 6 and board.count('<tr class="arm-') == len(ids)
    assert all(f">{trial_id}" in board for trial_id in ids)
    assert 0 < board.count('<tr class="arm-baseline">') == baseline_rows and "winner</span>" in board

    # ASHA's budgets: epoch 1 (every trial), 3 and 4 (max_t).
    rungs = section(page, "rungs")
    assert ">1</td>" in rungs and ">3</td>" in rungs and ">4 (max_t)</td>" in rungs
    assert f"{len(ids)} of {len(ids)}" in rungs
    # The confirmation of the KD and the baseline configuration, the verdict, and the test sets.
    confirmation = section(page, "confirmation")
    assert "kd-1" in confirmation and "baseline-1" in confirmation and 'class="verdict"' in confirmation
    assert "Kvasir" in section(page, "test") and "SYNTHETIC" in section(page, "test")
    # The winner's validation images: best, median and worst, one picture each at least.
    gallery = section(page, "gallery")
    for kind in ("best", "median", "worst"):
        assert f"<h3>{kind}</h3>" in gallery
    assert gallery.count("<figure>") >= 3 and "Dice" in gallery
    assert 'id="parallel"' in page and 'id="curves"' in page and "<img" in section(page, "curves")


@pytest.mark.slow
def test_report_rebuilt_in_a_fresh_interpreter_imports_neither_ray_nor_the_sweep(sweep_copy):
    (sweep_copy / "report.html").unlink()
    bad, output = heavy_modules_imported("tune.report", ["--sweep", str(sweep_copy)])
    assert bad == [] and "EXIT 0" in output, output[-2000:]
    assert "Selection, estimate and verdict" in (sweep_copy / "report.html").read_text()


@pytest.mark.slow
def test_report_cli_rebuilds_the_page_and_names_a_missing_sweep(sweep_copy, capsys, tmp_path):
    (sweep_copy / "report.html").unlink()
    report_cli.main(["--sweep", str(sweep_copy)])
    assert (sweep_copy / "report.html").is_file() and "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        report_cli.main(["--sweep", str(tmp_path / "nowhere")])
    assert info.value.code == 2 and "best.json" in capsys.readouterr().err


PAYLOAD = "<script>alert(1)</script>"
# Keys whose value the report uses as a path or an enumeration rather than prints: a crafted value there fails
# its own check. Every other string, dictionary key of free names and number below gets the payload.
NOT_TEXT = {"checkpoint", "metric", "mode", "journal"}
NAMED_KEYS = {"params", "sampled", "test_sets", "importance"}
NUMBERS = {"effect", "margin", "mde80", "n_valid", "diff", "trials", "at_epoch", "search_epochs"}


def crafted(node, key=None):
    """best.json with a script payload in every text, free-named key and the numbers running text prints."""
    if isinstance(node, dict):
        return {(k + PAYLOAD if key in NAMED_KEYS else k): crafted(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [crafted(v, key) for v in node]
    if isinstance(node, str) and key not in NOT_TEXT:
        return node + PAYLOAD
    if isinstance(node, (int, float)) and not isinstance(node, bool) and key in NUMBERS:
        return PAYLOAD
    return node


@pytest.mark.slow
def test_a_crafted_best_json_puts_no_raw_markup_in_the_page(sweep_copy):
    best = json.loads((sweep_copy / "best.json").read_text())
    (sweep_copy / "best.json").write_text(json.dumps(crafted(best)))
    report_cli.main(["--sweep", str(sweep_copy)])
    page = (sweep_copy / "report.html").read_text()
    assert PAYLOAD not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def row(trial_id, arm, params, objective, end="finished"):
    return TrialRow(trial_id, Sampled(arm, params), end, 4, objective, objective, objective / 2, 4, objective)


def test_parallel_axes_use_real_ranges_log_scale_and_mark_conditional_parameters_not_sampled(tmp_path):
    space_file = tmp_path / "s.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "base": {"mode": "distillation"},
                "parameters": {
                    "alpha": {"type": "uniform", "low": 0.1, "high": 0.9},
                    "learning_rate": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
                    "student_backbone": {
                        "type": "choice",
                        "values": ["mobilenet_v2", "resnet18"],
                        "when": {"resnet18": {"weight_decay": {"type": "loguniform", "low": 1.0e-6, "high": 1.0e-3}}},
                    },
                },
            }
        )
    )
    rows = [
        row(
            "a", "kd", {"alpha": 0.5, "learning_rate": 1e-3, "student_backbone": "resnet18", "weight_decay": 1e-5}, 0.8
        ),
        row("b", "kd", {"alpha": 0.1, "learning_rate": 1e-4, "student_backbone": "mobilenet_v2"}, 0.6),
        row("c", "baseline", {"learning_rate": 1e-2, "student_backbone": "mobilenet_v2"}, 0.4, "stopped by ASHA"),
    ]
    axes = parallel_axes(rows, parameter_specs(load_space(space_file).parameters), Objective("best_val_dice", "max"))
    by_label = {a.label: a for a in axes}
    assert [a.label for a in axes] == [
        "alpha",
        "learning_rate",
        "student_backbone",
        "weight_decay",
        "best_val_dice (max)",
    ]
    lr = by_label["learning_rate"]
    assert lr.kind == "log" and (lr.low, lr.high) == (1e-4, 1e-2)
    assert [lr.position(v) for v in lr.values] == pytest.approx([0.5, 0.0, 1.0])  # 1e-3 sits mid-way on log
    assert by_label["alpha"].kind == "linear" and by_label["alpha"].position(0.5) == pytest.approx(0.5)
    assert by_label["alpha"].values[2] is None and by_label["alpha"].position(None) is None  # control arm
    assert by_label["weight_decay"].values == [1e-5, None, None]
    assert by_label["student_backbone"].categories == ["mobilenet_v2", "resnet18"]
    fig = parallel_coordinates_figure(rows, axes, maximize=True)
    fig.canvas.draw()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("not sampled") == 2 and "learning_rate\n(log scale)" in texts
    log_axis = fig.axes[1 + 1]  # twins follow the host in axis order
    assert log_axis.get_yscale() == "log" and [t.get_text() for t in log_axis.get_yticklabels()] == [
        "1e-4",
        "0.001",
        "0.01",
    ]


def test_objective_axis_spans_the_scores_with_a_margin():
    axes = parallel_axes(
        [row("a", "kd", {"alpha": 0.2}, 0.3), row("b", "kd", {"alpha": 0.4}, 0.7)], {}, Objective("val_iou", "min")
    )
    objective = axes[-1]
    assert isinstance(objective, Axis) and objective.label == "val_iou (min)"
    assert objective.low < 0.3 and objective.high > 0.7 and axes[0].low == 0.2  # no spec: the data's range


def test_gallery_picks_best_median_and_worst_each_image_once():
    dice = [0.9, 0.1, 0.5, 0.7, 0.3, 0.95, 0.0, 0.6, 0.4]
    picks = pick_cases(dice, per_kind=2)
    assert [k for k, _ in picks] == ["best"] * 2 + ["median"] * 2 + ["worst"] * 2
    assert [dice[i] for _, i in picks] == [0.95, 0.9, 0.6, 0.5, 0.1, 0.0]
    few = pick_cases([0.2, 0.8], per_kind=3)
    assert sorted(i for _, i in few) == [0, 1]


@pytest.mark.parametrize(
    "max_t, grace, factor, expected", [(2, 1, 2, [1, 2]), (12, 4, 2, [4, 8]), (30, 5, 3, [5, 15]), (4, 1, 2, [1, 2, 4])]
)
def test_asha_milestones_are_ray_asha_rungs(tmp_path, max_t, grace, factor, expected):
    from ray.tune.schedulers import ASHAScheduler

    space_file = tmp_path / "s.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "parameters": {"alpha": {"type": "uniform", "low": 0.1, "high": 0.9}},
                "asha": {"max_t": max_t, "grace_period": grace, "reduction_factor": factor},
            }
        )
    )
    assert load_space(space_file).asha.milestones() == expected
    # Ray's own scheduler, as tune/sweep/runtime.py builds it, records the same milestones.
    scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace, reduction_factor=factor)
    assert sorted(m for m, _ in scheduler._brackets[0]._rungs) == expected


@pytest.mark.slow
def test_a_sweep_without_a_control_arm_speaks_of_no_tuned_baseline(sweep_copy):
    from tune.space import fingerprint

    page = (sweep_copy / "report.html").read_text()
    assert "dashed: control arm" in page  # the shared sweep has a control arm (and the ablation design)
    space = yaml.safe_load((sweep_copy / "space.yaml").read_text())
    space["control"] = None
    (sweep_copy / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    record = json.loads((sweep_copy / "sweep.json").read_text())
    (sweep_copy / "sweep.json").write_text(json.dumps({**record, "fingerprint": fingerprint(space)}))
    best = json.loads((sweep_copy / "best.json").read_text())
    best["kd_vs_baseline"]["tuned"] = None  # as the verdict of a sweep without a control arm records it
    (sweep_copy / "best.json").write_text(json.dumps(best))
    report_cli.main(["--sweep", str(sweep_copy)])
    page = (sweep_copy / "report.html").read_text()
    assert "dashed: control arm" not in page and "tuned baseline" not in page
    assert "<b>Verdict runs</b>: the winner, and the same configuration without its teacher, retrained" in page


@pytest.mark.slow
def test_readers_of_a_finished_sweep_never_unpickle(sweep_copy, demo_root, tmp_path, monkeypatch, capsys):
    """The trust boundary (docs/cluster.md): a sweep folder you only read is data. show, report, export and
    predict read JSON, CSV, YAML, weights-only checkpoints and ONNX; any unpickling here fails the test."""
    import pickle

    from ray import cloudpickle

    from tune import best as best_cli

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled while reading a finished sweep")

    for module in (pickle, cloudpickle):
        for name in ("load", "loads"):
            monkeypatch.setattr(module, name, refuse)
    best_cli.main(["show", "--sweep", str(sweep_copy)])
    report_cli.main(["--sweep", str(sweep_copy)])
    best_cli.main(["export", "--sweep", str(sweep_copy), "--out", str(tmp_path / "export")])
    image = next((demo_root / "TestDataset" / "Kvasir" / "images").iterdir())
    best_cli.main(["predict", "--model", str(tmp_path / "export"), str(image), "--out", str(tmp_path / "pred")])
    assert (tmp_path / "pred" / "masks").is_dir() and "exported trial" in capsys.readouterr().out
