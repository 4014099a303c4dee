"""The sweep's W&B Report: the verdict, the search's parallel coordinates, importance and curves, and the
summary run's tables, built with wandb-workspaces from a finished sweep folder; one Report per sweep, saved
over on each publish. Verified against wandb 0.31 and wandb-workspaces 0.4.13.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import wandb
import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from core.errors import UserError
from tune.records import REPORT_FILE, WANDB_DIRNAME, FinishedSweep, read_finished
from tune.report.format import estimate_text, fmt, params_text
from tune.space import SearchSpace, parameter_specs
from tune.tracking.artifacts import artifact_name
from tune.tracking.mode import resolve_mode
from tune.tracking.run_metrics import objective_summary_key

if TYPE_CHECKING:
    from wandb_workspaces.reports.v2.interface import BlockTypes

DEFAULT_APP_URL = "https://wandb.ai"
SEARCH_JOB_TYPES = ("trial",)  # the search: one run per Optuna trial
RETRAIN_JOB_TYPES = ("confirm", "verdict")  # the selection and verdict stages' retrained runs
SUMMARY_JOB_TYPE = "summary"  # one per sweep: tune/report/wandb_summary.py
# The wandb.Tables the summary run logs; `test` holds the winner's and the baseline's test scores.
SUMMARY_TABLES = ("confirmation", "test", "leaderboard")
EPOCH_KEY, CURVE_KEY, ARM_KEY = "epoch", "val_dice", "arm"  # history keys of every trial's run; config key


@dataclass(frozen=True)
class ReportPlace:
    """Where a sweep's runs are in W&B (entity, project, group) and the app that shows them."""

    entity: str
    project: str
    group: str
    app_url: str = DEFAULT_APP_URL

    @classmethod
    def of(cls, space: SearchSpace, entity: str, app_url: str = DEFAULT_APP_URL) -> ReportPlace:
        # The group rule of tune/sweep/runtime.py's W&B callback and of the summary run.
        return cls(entity, space.wandb.project, space.wandb.group or space.name, app_url)


def report_title(sweep_name: str) -> str:
    """The title the sweep's one Report is found by (W&B allows 128 characters)."""
    return f"polyp-kd-tune sweep {sweep_name}"[:128]


def sweep_name(sweep: FinishedSweep) -> str:
    """The name the summary run and its artifacts carry (best.json's, the space's when it has none)."""
    return sweep.best.get("sweep") or sweep.space.name


def runset(place: ReportPlace, name: str, job_types: tuple[str, ...]) -> wr.Runset:
    """The sweep's runs of some job types. Filters are written with wandb-workspaces' own keys (`Group`,
    `JobType`: the runs' `group` and `jobType`), so a reader can parse them back."""
    job = (
        expr.Metric("JobType") == job_types[0] if len(job_types) == 1 else expr.Metric("JobType").isin(list(job_types))
    )
    return wr.Runset(
        entity=place.entity, project=place.project, name=name, filters=[expr.Metric("Group") == place.group, job]
    )


def curves_panel(title: str, y: int) -> wr.LinePlot:
    """Validation Dice against the logged `epoch` (Ray's step counter lags it after a restore), one mean line
    and min–max band per arm."""
    return wr.LinePlot(
        title=title,
        x=wr.Metric(EPOCH_KEY),
        y=[wr.Metric(CURVE_KEY)],
        groupby=wr.Config(ARM_KEY),
        groupby_aggfunc="mean",
        groupby_rangefunc="minmax",
        title_x="epoch",
        title_y="validation Dice",
        layout=wr.Layout(x=0, y=y, w=24, h=8),
    )


def search_panels(sweep: FinishedSweep) -> list:
    """Parallel coordinates of the searched config keys against the objective, importance and the curves.
    Parameters are named as Config: `learning_rate` is also a logged metric (the scheduled rate)."""
    target = objective_summary_key(sweep.objective)
    columns = [
        wr.ParallelCoordinatesPlotColumn(metric=wr.Config(key), log=spec.type == "loguniform" or None)
        for key, spec in parameter_specs(sweep.space.parameters).items()
    ]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(target)))
    return [
        wr.ParallelCoordinatesPlot(
            title=f"search trials: parameters → {target}", columns=columns, layout=wr.Layout(x=0, y=0, w=24, h=9)
        ),
        wr.ParameterImportancePlot(with_respect_to=target, layout=wr.Layout(x=0, y=9, w=24, h=8)),
        curves_panel("search trials: validation Dice per epoch, by arm", 17),
    ]


def table_panels(sweep: FinishedSweep) -> list:
    """The summary run's tables: selection over seeds (when the sweep had a selection stage), the test sets
    of the winner and the baseline, and the leaderboard."""
    names = [t for t in SUMMARY_TABLES if t != "confirmation" or sweep.best.get("confirmation")]
    return [
        wr.WeavePanelSummaryTable(table_name=name, layout=wr.Layout(x=0, y=10 * i, w=24, h=10))
        for i, name in enumerate(names)
    ]


def verdict_markdown(sweep: FinishedSweep) -> str:
    """The verdict and the winner in a few lines: what report.html's summary opens with."""
    b, label = sweep.best, sweep.objective.label
    lines = ["**SYNTHETIC demo data: these numbers say nothing about real polyps.**"] if b.get("synthetic_data") else []
    verdict = (b.get("kd_vs_baseline") or {}).get("sentence")
    lines.append(f"**Does the teacher help?** {verdict}" if verdict else "No verdict on the teacher in this sweep.")
    winner = f"**Winner:** {b.get('winner')} ({b.get('arm')}, {b.get('student')}): {params_text(b.get('params') or {})}"
    estimate = b.get("estimate")
    winner += (
        f"; estimated {label} {estimate_text(estimate)}"
        if estimate
        else f"; {label} {fmt(b.get('best_val_dice'))} (the run that selected it)"
    )
    return "\n\n".join([*lines, winner])


def artifact_url(place: ReportPlace, name: str) -> str:
    """The page of the report.html artifact (`<sweep>-report`, type `report`) that the summary run logs."""
    return f"{place.app_url}/{place.entity}/{place.project}/artifacts/report/{artifact_name(name)}-report/latest"


def build_report(sweep: FinishedSweep, place: ReportPlace) -> wr.Report:
    """The Report of a finished sweep, not saved: nothing here touches the network."""
    name = sweep_name(sweep)
    link = (
        f"The sweep's self-contained page (charts, leaderboard, the winner's validation images): "
        f"[{REPORT_FILE}]({artifact_url(place, name)}), artifact `{name}-report` of the summary run."
    )
    blocks: list[BlockTypes] = [
        wr.MarkdownBlock(text=verdict_markdown(sweep)),
        wr.MarkdownBlock(text=link),
        wr.H2(text="Search"),
        wr.MarkdownBlock(
            text=f"Every search trial of both arms; the objective is {sweep.objective.metric} "
            f"({sweep.objective.mode}). Trials stopped by ASHA end early."
        ),
        wr.PanelGrid(runsets=[runset(place, "search trials", SEARCH_JOB_TYPES)], panels=search_panels(sweep)),
        wr.H2(text="Selection and verdict runs"),
        wr.MarkdownBlock(
            text="The best configurations retrained on the selection seeds, then the winner and the "
            "baseline on fresh verdict seeds (the runs the verdict is computed from)."
        ),
        wr.PanelGrid(
            runsets=[runset(place, "selection and verdict runs", RETRAIN_JOB_TYPES)],
            panels=[curves_panel("retrained runs: validation Dice per epoch, by arm", 0)],
        ),
        wr.H2(text="Tables"),
        wr.PanelGrid(runsets=[runset(place, "summary run", (SUMMARY_JOB_TYPE,))], panels=table_panels(sweep)),
    ]
    return wr.Report(
        project=place.project,
        entity=place.entity,
        title=report_title(name),
        description=f"Knowledge-distillation polyp segmentation: sweep {name}, group {place.group}.",
        blocks=blocks,
        width="fluid",
    )


# What wandb raises when the server cannot be reached or refuses the key, and wandb-workspaces' ValueError
# for a runset whose entity/project is not found: each a fixable setting, reported in one line.
W_AND_B_FAILURES = (wandb.errors.Error, requests.exceptions.RequestException, ValueError)


@contextlib.contextmanager
def w_and_b_errors(what: str) -> Iterator[None]:
    """Turn a W&B network, auth or lookup failure into a UserError naming `what` and the fix."""
    try:
        yield
    except W_AND_B_FAILURES as err:
        reason = (str(err).strip().splitlines() or [""])[0][:200].rstrip(".")
        raise UserError(
            f"{what}: {type(err).__name__}: {reason}; check the network, `wandb login`, and "
            f"wandb.entity / wandb.project in the space (or WANDB_ENTITY)"
        ) from None


def save_report(api: wandb.Api, report: wr.Report) -> str:
    """Save `report` over the project's published report of the same title (or create it); its URL."""
    with w_and_b_errors(f"W&B report not saved to {report.entity}/{report.project}"):
        same = [r for r in api.reports(f"{report.entity}/{report.project}") if r.display_name == report.title]
        if same:
            report.id = same[0].id  # upsertView with an id updates that report: one report, one URL per sweep
        report.save()
        return report.url


def save_sweep_report(sweep_dir: str | Path, space: SearchSpace | None = None, entity: str | None = None) -> str:
    """Build and save the Report of the finished sweep in `sweep_dir`; its URL. `space` is the one the runs
    were logged with (W&B settings are not bound to a sweep: a resume may change them); default space.yaml.
    `entity` default: the space's wandb.entity, else the API key's default entity."""
    sweep = read_finished(sweep_dir)
    space = space or sweep.space
    with w_and_b_errors("W&B not reachable"):
        api = wandb.Api()
        entity = entity or getattr(space.wandb, "entity", None) or api.default_entity
        app = wandb.util.api_to_app_url(api.settings["base_url"])  # wandb.ai, or a dedicated server's app
    if not entity:
        raise UserError("W&B entity unknown: set wandb.entity in the space or WANDB_ENTITY")
    return save_report(api, build_report(sweep, ReportPlace.of(space, entity, app)))


def publish_wandb_report(
    sweep_dir: str | Path, space: SearchSpace | None = None, entity: str | None = None
) -> str | None:
    """At the end of an online sweep: save its Report and return the URL; None, after one line on stderr
    saying why, when W&B cannot be reached (the sweep's results stand without it)."""
    try:
        return save_sweep_report(sweep_dir, space, entity)
    except UserError as err:
        print(f"warning: {err}", file=sys.stderr)
        return None


def unsynced_offline_runs(sweep_dir: Path) -> list[Path]:
    """Offline runs in the sweep folder that `wandb sync` has not uploaded (it leaves a .wandb.synced mark)."""
    runs = sorted((sweep_dir / WANDB_DIRNAME).glob("offline-run-*"))
    return [r for r in runs if not any(r.glob("*.wandb.synced"))]


def report_command_line(sweep_dir: Path) -> str:
    """`python -m tune.report --wandb`: save the Report when W&B is online; else one line saying what to do."""
    space = read_finished(sweep_dir).space
    # A sweep logged offline is uploaded later; asking for a report is asking to go online when a key is found.
    configured = "auto" if space.wandb.mode == "offline" else space.wandb.mode
    target = resolve_mode(configured, getattr(space.wandb, "entity", None))
    sync = f"wandb sync {sweep_dir / WANDB_DIRNAME}/offline-run-*"
    if target.mode == "disabled":
        return f"W&B report not made: W&B is disabled ({target.reason})"
    if target.mode == "offline":
        return (
            f"W&B report not made: the runs are offline ({target.reason}); upload them with `{sync}`, then "
            f"run this again with --wandb after `wandb login` (or with WANDB_API_KEY set)"
        )
    unsynced = unsynced_offline_runs(sweep_dir)
    if unsynced:
        return (
            f"W&B report not made: {len(unsynced)} offline runs of this sweep are not uploaded yet; upload "
            f"them with `{sync}`, then run this again with --wandb"
        )
    return f"W&B report: {save_sweep_report(sweep_dir, space, target.entity)}"
