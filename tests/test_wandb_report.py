"""The sweep's W&B Report (tune/report/wandb_report.py), built offline from a finished tiny sweep whose W&B
runs are offline: every panel names keys those runs really logged, read back with wandb's own reader."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from tune.records import read_finished
from tune.report.wandb_report import ReportPlace, build_report

pytestmark = pytest.mark.slow  # every test here starts Ray or a sweep driver

ROOT = Path(__file__).resolve().parents[1]
ENTITY = "offline-entity"  # a Report needs an entity; nothing here reaches a server
FAKE_KEY = "fake0wandb0key0for0report0tests000000000"


@dataclass
class LoggedRun:
    """What one offline W&B run logged: its group and job type, config keys, history keys, summary keys
    (nested ones joined with '.', as W&B names them) and the summary keys that hold a wandb.Table."""

    group: str
    job_type: str
    config: set[str] = field(default_factory=set)
    history: set[str] = field(default_factory=set)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def tables(self) -> set[str]:
        return {k.removesuffix("._type") for k, v in self.summary.items() if k.endswith("._type") and v == "table-file"}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_logged_run(run_dir: Path) -> LoggedRun:
    """An offline run as `wandb leet inspect --json` reads it (one JSON record per line)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    header = next(r["run"] for r in records if r["type"] == "run")
    run = LoggedRun(group=header.get("run_group", ""), job_type=header.get("job_type", ""))
    summary: dict[str, Any] = {}
    for r in records:
        if r["type"] == "run":  # the config wandb.init was given
            run.config |= set(r["run"].get("config", {}).get("update", {}))
        elif r["type"] == "config":  # later updates (Ray adds its own keys)
            run.config |= set(r["config"].get("update", {}))
        elif r["type"] == "history":
            run.history |= set(r["history"]["item"])
        elif r["type"] == "summary":
            summary.update(r["summary"].get("update", {}))
    run.summary = flatten(summary)
    return run


def selected(runset: wr.Runset, runs: list[LoggedRun]) -> list[LoggedRun]:
    """The runs a runset's filters select, its filters parsed back with wandb-workspaces' own parser. Only the
    keys the Report uses are understood; any other filter fails the test."""
    wanted: dict[str, set[str]] = {}
    for f in expr.string_to_filterexpr_list(runset.filters):
        assert isinstance(f.key, expr.Metric) and f.key.name in ("Group", "JobType"), f
        wanted[f.key.name] = set(f.value) if f.op == "IN" else {f.value}
    assert set(wanted) == {"Group", "JobType"}, runset.filters
    return [r for r in runs if r.group in wanted["Group"] and r.job_type in wanted["JobType"]]


def panel_keys_missing(panel: Any, run: LoggedRun) -> list[str]:
    """The keys `panel` reads that `run` never logged, as '<section>:<key>'."""
    need: list[tuple[str, str]] = []
    if isinstance(panel, wr.ParallelCoordinatesPlot):
        sections = {wr.Config: "config", wr.SummaryMetric: "summary"}
        need += [(sections[type(c.metric)], c.metric.name) for c in panel.columns]
    elif isinstance(panel, wr.ParameterImportancePlot):
        need.append(("summary", panel.with_respect_to))
    elif isinstance(panel, wr.LinePlot):
        need += [("history", m.name) for m in [panel.x, *panel.y]]
        need.append(("config", panel.groupby.name))
    elif isinstance(panel, wr.WeavePanelSummaryTable):
        need.append(("table", panel.table_name))
    else:
        raise AssertionError(f"no check written for {type(panel).__name__}")
    have = {"config": run.config, "history": run.history, "summary": set(run.summary), "table": run.tables}
    return [f"{section}:{key}" for section, key in need if key not in have[section]]


def report_keys_logged(sweep_dir: Path) -> int:
    """Assert that every panel of the sweep's Report (built offline) reads keys that every run its runset
    selects logged, and that each runset selects some run; returns how many (panel, run) pairs were checked."""
    sweep = read_finished(sweep_dir)
    report = build_report(sweep, ReportPlace.of(sweep.space, ENTITY))
    runs = [read_logged_run(p) for p in sorted((sweep_dir / "wandb").glob("offline-run-*"))]
    checked, missing = 0, []
    for grid in (b for b in report.blocks if isinstance(b, wr.PanelGrid)):
        chosen = [r for rs in grid.runsets for r in selected(rs, runs)]
        assert chosen, f"runset {grid.runsets[0].name!r} selects none of the sweep's runs"
        for panel in grid.panels:
            for run in chosen:
                missing += [
                    f"{type(panel).__name__} in {grid.runsets[0].name!r}: {key} ({run.job_type})"
                    for key in panel_keys_missing(panel, run)
                ]
                checked += 1
    assert not missing, "\n".join(missing)
    return checked


def test_every_report_panel_reads_keys_the_offline_runs_logged(finished_sweep):
    # 3 search panels x 2 trials + 1 curves panel x >= 4 retrained runs + 3 tables x 1 summary run
    assert report_keys_logged(finished_sweep) >= 13
    sweep = read_finished(finished_sweep)
    report = build_report(sweep, ReportPlace.of(sweep.space, ENTITY))
    panels = [p for b in report.blocks if isinstance(b, wr.PanelGrid) for p in b.panels]
    # The keys as W&B's backend receives them: parameters from the config, the objective from the summary
    # (its max, as the runs declared it), curves against the logged epoch and grouped by the config's arm.
    parallel = next(p for p in panels if isinstance(p, wr.ParallelCoordinatesPlot))._to_model().config
    assert {c.accessor: c.log for c in parallel.columns} == {
        "config:alpha.value": None,
        "config:temperature.value": None,
        "config:learning_rate.value": True,
        "config:student_backbone.value": None,
        "summary:best_val_dice.max": None,
    }  # learning_rate: log-uniform
    assert parallel.columns[-1].accessor == "summary:best_val_dice.max"  # the objective last, on the right
    importance = next(p for p in panels if isinstance(p, wr.ParameterImportancePlot))
    assert importance.with_respect_to == "best_val_dice.max"
    curves = [p._to_model().config for p in panels if isinstance(p, wr.LinePlot)]
    assert len(curves) == 2 and all(
        c.x_axis == "epoch" and c.metrics == ["val_dice"] and c.group_by == "arm.value" for c in curves
    )
    assert [p.table_name for p in panels if isinstance(p, wr.WeavePanelSummaryTable)] == [
        "confirmation",
        "test",
        "leaderboard",
    ]


def test_report_opens_with_the_verdict_the_winner_and_a_link_to_report_html(finished_sweep):
    sweep = read_finished(finished_sweep)
    report = build_report(sweep, ReportPlace.of(sweep.space, ENTITY))
    assert report.title == "polyp-kd-tune sweep tiny" and report.entity == ENTITY
    assert report.project == "polyp-kd-tune-tests"
    text = "\n".join(b.text for b in report.blocks if isinstance(b, wr.MarkdownBlock))
    assert sweep.best["kd_vs_baseline"]["sentence"] in text
    assert f"**Winner:** {sweep.best['winner']} ({sweep.best['arm']}" in text
    assert "(https://wandb.ai/offline-entity/polyp-kd-tune-tests/artifacts/report/tiny-report/latest)" in text
    assert sweep.best["synthetic_data"] and text.startswith("**SYNTHETIC demo data")  # tests use synthetic data


def test_report_command_line_says_what_to_do_when_it_cannot_publish(finished_sweep, monkeypatch):
    from tune.report.wandb_report import report_command_line

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert report_command_line(finished_sweep).startswith("W&B report not made: W&B is disabled (")
    # Online, but the sweep's runs were logged offline and never synced: no report over runs W&B lacks.
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # online needs a key (tune/tracking/mode.py)
    line = report_command_line(finished_sweep)
    assert "offline runs of this sweep are not uploaded yet" in line
    assert f"wandb sync {finished_sweep}/wandb/offline-run-*" in line


def test_report_cli_with_offline_runs_writes_the_page_and_says_sync_first(finished_sweep):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    env["WANDB_MODE"] = "offline"
    (finished_sweep / "report.html").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "tune.report", "--sweep", str(finished_sweep), "--wandb"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (finished_sweep / "report.html").is_file()
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0] == f"wrote {finished_sweep / 'report.html'}"
    assert lines[1].startswith(
        "W&B report not made: the runs are offline (WANDB_MODE is set); upload them with "
        f"`wandb sync {finished_sweep}/wandb/offline-run-*`"
    )
    assert "Traceback" not in done.stderr


def test_publishing_to_an_unreachable_server_warns_in_one_line(finished_sweep, tmp_path):
    """What the sweep calls at its end: no server (a closed local port) costs one warning, no traceback."""
    env = {
        **os.environ,
        "WANDB_MODE": "online",
        "WANDB_API_KEY": FAKE_KEY,
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_CONFIG_DIR": str(tmp_path),
        "WANDB_ENTITY": ENTITY,
        "WANDB_HTTP_TIMEOUT": "3",
    }  # wandb retries a refused connection until this timeout (default 19 s)
    code = (
        "from tune.report.wandb_report import publish_wandb_report\n"
        f"print(publish_wandb_report({str(finished_sweep)!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr
    warning = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("warning: W&B not reachable: "), done.stderr
    assert not any(FAKE_KEY.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_report_serialises_offline_as_save_sends_it(finished_sweep):
    """The spec `Report.save()` uploads, built without a server (an empty entity skips the runsets' project
    lookup): each runset asks the backend for this sweep's group and its job types."""
    sweep = read_finished(finished_sweep)
    model = build_report(sweep, ReportPlace("", "polyp-kd-tune-tests", "wr"))._to_model()
    spec = json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True))
    filters = [
        [(f["key"]["name"], f["op"], f["value"]) for f in run_set["filters"]["filters"]]
        for block in spec["blocks"]
        if block["type"] == "panel-grid"
        for run_set in block["metadata"]["runSets"]
    ]
    assert filters == [
        [("group", "=", "wr"), ("jobType", "=", "trial")],
        [("group", "=", "wr"), ("jobType", "IN", ["confirm", "verdict"])],
        [("group", "=", "wr"), ("jobType", "=", "summary")],
    ]
    assert model.display_name == "polyp-kd-tune sweep tiny"
    assert [type(b).__name__ for b in wr.Report._from_model(model).blocks].count("PanelGrid") == 3
