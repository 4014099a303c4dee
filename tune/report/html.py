"""The sweep's page: results/<sweep>/report.html, one self-contained file (matplotlib charts and the winner's
pictures embedded as PNG, static/report.css and static/report.js inlined) that needs no network to read.

Written at the end of every sweep (tune/sweep/finish.py); `python -m tune.report --sweep DIR` rebuilds it.
It shows the settings and wall time, the leaderboard, validation curves, parallel coordinates, importance,
ASHA's rungs, the confirmation and verdict, the Dice–latency front of a sweep with a deploy target, the test
sets, and the winner's best, median and worst validation images.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from core.errors import UserError
from core.files import write_file_atomic
from tune.records import (
    CHARTS_DIRNAME,
    ENDS,
    REPORT_FILE,
    SPACE_FILE,
    FinishedSweep,
    arm_label,
    logged_wandb_runs,
    read_finished,
    read_trial_curve,
    read_trial_curves,
    resolve,
)
from tune.report.charts import (
    MAX_SMALL_MULTIPLES,
    confirmation_figure,
    curves_figure,
    forest_figure,
    importance_figure,
    latency_figure,
    parallel_axes,
    parallel_coordinates_figure,
    png,
    rungs_figure,
    small_multiples_figure,
    source_curves_figure,
)
from tune.report.format import averaged_over, duration, estimate_text, fmt, params_text
from tune.report.gallery import validation_gallery
from tune.space import Parameter, parameter_specs

STATIC = Path(__file__).resolve().parent / "static"


def write_report(folder: str | Path) -> Path:
    """Build `folder`/report.html (and each of its charts as a PNG in `folder`/charts/) from a finished
    sweep folder; returns its path."""
    sweep = read_finished(folder)
    (sweep.folder / CHARTS_DIRNAME).mkdir(exist_ok=True)
    for name in CHART_NAMES:  # a chart this report no longer draws must not stay behind from an earlier one
        (sweep.folder / CHARTS_DIRNAME / f"{name}.png").unlink(missing_ok=True)
    return write_file_atomic(sweep.folder / REPORT_FILE, render(sweep))


CHART_NAMES = (
    "curves",
    "trial_curves",
    "parallel_coordinates",
    "importance",
    "rungs",
    "confirmation",
    "latency",
    "test_effect",
    "source_curves",
)


def chart(s: FinishedSweep, fig: Figure, name: str) -> str:
    """The figure as report.html embeds it, also saved as charts/<name>.png."""
    return png(fig, also_save=s.folder / CHARTS_DIRNAME / f"{name}.png")


# --- the page -----------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value))


def cell(value: Any, digits: int = 4) -> str:
    """A table cell that sorts by its raw value; numbers align right."""
    sort = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    css = ' class="num"' if number else ""
    return f'<td data-sort="{esc(sort)}"{css}>{esc(fmt(value, digits))}</td>'


def num(value: Any) -> str:
    """A number for running text, escaped: a crafted record may hold anything where a number belongs."""
    return esc(fmt(value))


def text_cell(text: str, css: str = "", title: str = "") -> str:
    attrs = (f' class="{css}"' if css else "") + (f' title="{esc(title)}"' if title else "")
    return f"<td{attrs}>{text}</td>"


def img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{esc(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section_summary(s: FinishedSweep) -> str:
    b = s.best
    items = [
        (
            "winner",
            (f"{b.get('winner')} ({b.get('arm')}; seed run {b.get('trial_id')}, search trial {b.get('search_trial')})"),
        ),
        ("parameters", params_text(b.get("params") or {})),
        (
            "validation Dice of the exported checkpoint",
            f"{fmt(b.get('best_val_dice'))} (epoch {b.get('best_epoch')} of {b.get('epochs_trained')})",
        ),
    ]
    estimate = b.get("estimate")
    if estimate:
        items.insert(2, (f"estimated {s.objective.label} (fresh seeds)", estimate_text(estimate)))
        items.append(("selection mean (a maximum over candidates)", fmt(b.get("selection_mean"))))
    test, winner_test = b.get("test"), b.get("winner_test")
    if winner_test:
        mean, label = winner_test["mean"], s.objective.test_label
        items.append(
            (
                f"mean test {label} (over its verdict seeds)",
                f"{fmt(mean['score'])} (95% interval {fmt(mean['ci95'][0])} … {fmt(mean['ci95'][1])}) over "
                f"{len(winner_test) - 1} test sets: the number for new patients",
            )
        )
    elif test:
        mean = test["mean"]
        items.append(
            (
                "mean test Dice / IoU",
                f"{fmt(mean['dice'])} / {fmt(mean['iou'])} over {len(test['test_sets'])} test sets",
            )
        )
    items.append(("export it", f"python -m tune.best export --sweep {s.folder}"))
    verdict = (b.get("kd_vs_baseline") or {}).get("sentence")
    out = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    banner = ""
    if b.get("synthetic_data"):
        banner = '<p class="warn">SYNTHETIC demo data: these numbers say nothing about real polyps.</p>'
    callout = f'<p class="verdict">{esc(verdict)}</p>' if verdict else ""
    return f'<section id="summary"><h2>Summary</h2>{banner}{callout}<table class="kv">{out}</table></section>'


def section_settings(s: FinishedSweep) -> str:
    sp, b = s.space, s.best
    ends = {e: sum(r.end == e for r in s.rows) for e in ENDS}
    states = (b.get("study") or {}).get("states") or {}  # per arm's study: {study: {state: count}}
    search = (
        f"{sp.search.num_samples} trials, {sp.search.max_concurrent_trials} at a time, Optuna TPE seed "
        f"{sp.search.seed}, max_failures {sp.search.max_failures}"
    )
    asha = (
        f"max_t {sp.asha.max_t} epochs, grace_period {sp.asha.grace_period}, reduction_factor "
        f"{sp.asha.reduction_factor}; rungs at epochs {', '.join(map(str, sp.asha.milestones()))}"
    )
    control = (
        f"{sp.control.fraction:.0%} of the trials without a teacher, searched on their own (own study and "
        f"ASHA): " + " + ".join(f"{n} {arm}" for arm, n in sp.arm_trials().items()) + " trials"
        if sp.control is not None and sp.has_control
        else "none"
    )
    confirm = "none (confirm: null)"
    if sp.confirm:
        confirm = (
            f"top {sp.confirm.top_k} configurations of each arm over {sp.confirm.seeds} selection seeds, then "
            f"the winner{', the best KD and its baseline' if sp.has_control else ''} over "
            f"{sp.confirm.verdict_seeds} fresh verdict seeds"
        )
    study = f"{(b.get('study') or {}).get('journal', 'optuna.journal')} (study '{sp.name}'): " + "; ".join(
        f"{name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()) for name, counts in states.items()
    )
    items = [
        ("sweep", f"{sp.name} — {s.folder.resolve()}"),
        ("mode", sp.base.get("mode", "baseline")),
        ("objective", f"{sp.objective.metric} ({sp.objective.mode})"),
        ("data", f"{s.base.get('data_root')}{' [SYNTHETIC]' if b.get('synthetic_data') else ''}"),
        ("image size / batch", f"{s.base.get('img_size')} px / {s.base.get('batch_size')}"),
        ("search", search),
        ("ASHA", asha),
        ("control arm", control),
        ("confirmation", confirm),
        ("teacher", s.base.get("teacher_checkpoint") or "none"),
        ("resources per trial", f"{sp.resources.cpu:g} CPU, {sp.resources.gpu:g} GPU"),
        ("search outcome", ", ".join(f"{n} {e}" for e, n in ends.items() if n)),
        ("Optuna study", study),
        (
            "wall time",
            (f"{duration(b.get('wall_seconds'))} (the last driver run; a resumed sweep counts from its resume)"),
        ),
        ("page written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
    if b.get("deploy"):
        items.insert(-4, ("deploy target", f"{b['deploy']['described']}, measured on {b['deploy']['measured_at']}"))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    space_yaml = (s.folder / SPACE_FILE).read_text()
    base = json.dumps(s.base, indent=2)
    return (
        f'<section id="settings"><h2>Settings</h2><table class="kv">{table}</table>'
        f"<details><summary>space.yaml (resolved)</summary><pre>{esc(space_yaml)}</pre></details>"
        f"<details><summary>every trial's base config (sweep.json)</summary><pre>{esc(base)}</pre></details>"
        f"</section>"
    )


def section_leaderboard(s: FinishedSweep, specs: dict[str, Parameter]) -> str:
    keys = [k for k in specs if any(k in r.params for r in s.rows)]
    keys += sorted({k for r in s.rows for k in r.params} - set(keys))
    confirmed = {c["trial"]: c["name"] for c in (s.best.get("confirmation") or [])}
    wandb_runs = logged_wandb_runs(s.folder)
    latency = any(r.latency_ms is not None for r in s.rows)  # only a sweep with a deploy target times trials
    head = (
        [
            "#",
            "trial",
            "arm",
            "end",
            "epochs",
            f"objective ({s.space.objective.metric})",
            "best val Dice",
            "best val IoU",
            "best epoch",
        ]
        + (["latency (ms)"] if latency else [])
        + keys
        + (["W&B run"] if wandb_runs else [])
        + ["error"]
    )
    body = []
    for r in s.rows:
        marks = ""
        if r.trial_id == s.best.get("search_trial"):
            marks += ' <span class="tag win" title="the winner\'s configuration">winner</span>'
        if r.trial_id in confirmed:
            marks += f' <span class="tag">{esc(confirmed[r.trial_id])}</span>'
        end_css = {"finished": "ok", "stopped by ASHA": "asha"}.get(r.end, "bad")
        error = text_cell(esc(r.error[:80] + ("…" if len(r.error) > 80 else "")), title=r.error)
        body.append(
            f'<tr class="arm-{esc(r.arm)}">'
            + cell(r.rank)
            + f'<td data-sort="{esc(r.trial_id)}">{esc(r.trial_id)}{marks}</td>'
            + text_cell(esc(arm_label(r.arm, s.space.mode)))
            + text_cell(esc(r.end), f"end-{end_css}")
            + cell(r.epochs)
            + cell(r.objective)
            + cell(r.best_val_dice)
            + cell(r.best_val_iou)
            + cell(r.best_epoch)
            + (cell(r.latency_ms, 1) if latency else "")
            + "".join(cell(r.params.get(k)) for k in keys)
            + (wandb_cell(wandb_runs, r.trial_id) if wandb_runs else "")
            + error
            + "</tr>"
        )
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    over = (
        " An infeasible trial was over the deploy target's latency budget: its latency was measured, it was "
        "never trained."
        if any(r.end == "infeasible" for r in s.rows)
        else ""
    )
    return (
        f'<section id="leaderboard"><h2>Leaderboard</h2>'
        f"<p>{len(s.rows)} search trials, ranked by the objective (trials that errored, diverged or were "
        f"interrupted last). A trial stopped by ASHA is ranked by what it reached in fewer epochs.{over} Click "
        f"a column to sort. Also in leaderboard.csv.</p>"
        f'<div class="scroll"><table class="sortable grid"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def wandb_cell(runs: dict[str, str], trial_id: str) -> str:
    """The trial's W&B run id (the Ray trial id), marked offline until `wandb sync` uploads it."""
    if trial_id not in runs:
        return text_cell("")
    return text_cell(esc(trial_id) + (" (offline)" if runs[trial_id] == "offline" else ""))


def section_curves(s: FinishedSweep, curves: dict[str, list[tuple[int, float]]], milestones: list[int]) -> str:
    if not any(curves.values()):
        return (
            f'<section id="curves"><h2>Validation curves</h2>'
            f"{note('no trial results readable here (trials kept in remote storage?)')}</section>"
        )
    shown = sum(1 for r in s.rows if curves.get(r.trial_id))
    more = f" The {MAX_SMALL_MULTIPLES} best-ranked trials are drawn one by one." if shown > MAX_SMALL_MULTIPLES else ""
    return (
        '<section id="curves"><h2>Validation curves</h2><p>Validation Dice after each epoch ('
        + ("dashed: control arm without a teacher; " if s.space.has_control else "")
        + f"dotted verticals: ASHA rungs; a curve that ends early was stopped by ASHA; star: the trial's best "
        f"epoch).{more}</p>"
        + img(
            chart(s, curves_figure(s.rows, curves, milestones, s.space.asha.max_t), "curves"), "all validation curves"
        )
        + img(
            chart(s, small_multiples_figure(s.rows, curves, milestones, s.space.asha.max_t), "trial_curves"),
            "validation curve of each trial",
        )
        + _source_curves(s)
        + "</section>"
    )


def _source_curves(s: FinishedSweep) -> str:
    """The best-ranked search trial's validation Dice per source, where the data has more than one."""
    top = next((r for r in s.rows if r.trial_dir), None)
    curves = read_trial_curves(s.folder, top.trial_dir) if top else {}
    if top is None or sum(key.startswith("val_dice/") for key in curves) < 2:
        return ""
    averaged = averaged_over(s.best.get("val_average"))
    figure = source_curves_figure(curves, s.space.asha.max_t)
    return f"<p>Trial #{top.rank} {esc(top.trial_id)} on each source's validation images: {esc(averaged)}.</p>" + img(
        chart(s, figure, "source_curves"), "validation Dice per source"
    )


def section_parallel(s: FinishedSweep, specs: dict[str, Parameter]) -> str:
    rows = [r for r in s.rows if r.usable]
    title = '<section id="parallel"><h2>Parallel coordinates</h2>'
    if not rows:
        return title + note("no usable trial") + "</section>"
    axes = parallel_axes(rows, specs, s.objective)
    fig = parallel_coordinates_figure(rows, axes, s.objective.maximize)
    return (
        title + "<p>One line per usable search trial, coloured by the objective (yellow: best). Numeric axes "
        "span the search space's range; log-uniform parameters are on a log scale.</p>"
        + img(chart(s, fig, "parallel_coordinates"), "parallel coordinates")
        + "</section>"
    )


def section_importance(s: FinishedSweep) -> str:
    imp = s.best.get("importance")
    title = '<section id="importance"><h2>Hyperparameter importance</h2>'
    if not imp or not imp.get("importance"):
        return (
            title
            + note("not computed: fewer than 3 distillation trials reported a value at the first ASHA rung")
            + "</section>"
        )
    branches = (
        " A conditional parameter carries its branch (<code>choice=value@key</code>)."
        if any("@" in name for name in imp["importance"])
        else ""
    )
    return (
        title + f"<p>PED-ANOVA on the {esc(imp['trials'])} distillation trials' validation value at epoch "
        f"{esc(imp['at_epoch'])}, which every trial reached (most were stopped by ASHA later), from the Optuna "
        f"study; few trials give a rough ranking only.{branches}</p>"
        + img(chart(s, importance_figure(imp["importance"]), "importance"), "importance")
        + "</section>"
    )


def section_rungs(s: FinishedSweep, milestones: list[int]) -> str:
    budgets = milestones + ([s.space.asha.max_t] if s.space.asha.max_t not in milestones else [])
    arms = [a for a in ("kd", "baseline") if any(r.arm == a for r in s.rows)]
    reached = [(e, {a: sum(1 for r in s.rows if r.arm == a and r.epochs >= e) for a in arms}) for e in budgets]
    stopped = {e: sum(1 for r in s.rows if r.end == "stopped by ASHA" and r.epochs == e) for e in budgets}
    lines = "".join(
        "<tr>"
        + text_cell(f"{e}{' (max_t)' if e == s.space.asha.max_t else ''}")
        + "".join(cell(by_arm[a]) for a in arms)
        + text_cell(f"{sum(by_arm.values())} of {len(s.rows)}", "num")
        + cell(stopped[e])
        + "</tr>"
        for e, by_arm in reached
    )
    head = (
        "<th>epoch budget</th>"
        + "".join(f"<th>{esc(a)}</th>" for a in arms)
        + "<th>all</th><th>stopped there by ASHA</th>"
    )
    return (
        f'<section id="rungs"><h2>ASHA rungs</h2><p>How many search trials reached each epoch budget. ASHA '
        f"compares a trial at each rung with the others that reached it and keeps the top "
        f'1/{s.space.asha.reduction_factor}.</p><div class="row"><table class="grid">'
        f"<thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"
        + img(chart(s, rungs_figure(reached, arms), "rungs"), "trials per rung")
        + "</div></section>"
    )


def runs_table(records: list[dict[str, Any]], winner: str | None) -> str:
    """One row per configuration of best.json's `confirmation` or `verdict_runs`."""
    lines = []
    for c in records:
        seeds = ", ".join(f"{seed}: {fmt(v)}" for seed, v in zip(c["seeds"], c["values"]))
        ci = c["ci95"]
        win = ' <span class="tag win">winner</span>' if c["name"] == winner else ""
        budget = f" ({esc(c['search_epochs'])} ep)" if c.get("search_epochs") else ""
        lines.append(
            "<tr>"
            + text_cell(esc(c["name"]) + win)
            + text_cell(esc(c["arm"]) + (" (teacher)" if c.get("teacher", c["arm"] == "kd") else ""))
            + text_cell(esc(c["trial"]))
            + text_cell(esc(params_text(c["params"])), "wrap")
            + text_cell(f"{esc(fmt(c['search_value']))}{budget}", "num")
            + text_cell(esc(seeds), "wrap")
            + text_cell(f"<b>{esc(fmt(c['mean']))}</b>", "num")
            + text_cell(f"{esc(fmt(ci[0]))} … {esc(fmt(ci[1]))}", "num")
            + "</tr>"
        )
    return (
        '<div class="scroll"><table class="grid"><thead><tr><th>configuration</th><th>arm</th>'
        "<th>search trial</th><th>parameters</th><th>search value</th><th>per seed</th><th>mean</th>"
        f"<th>95% CI</th></tr></thead><tbody>{''.join(lines)}</tbody></table></div>"
    )


def verdict_callout(verdict: dict[str, Any] | None) -> str:
    if not verdict:
        return note("no verdict on the teacher (no distillation configuration ended with a value)")
    ci, ci90 = verdict["ci95"], verdict["ci90"]
    pairs = "; ".join(f"{esc(a)} minus {esc(b)}" for a, b in verdict["pairs"])
    lines = [f'<p class="verdict">{esc(verdict["sentence"])}</p>']
    lines.append(
        f"<p>Design <b>{esc(verdict['design'])}</b>, outcome <b>{esc(verdict['outcome'])}</b>: {pairs} on "
        f"{esc(verdict['student'])}, paired by seed over {esc(verdict['n_valid'])} fresh seeds "
        f"{esc(verdict['verdict_seeds'])}; teacher effect {num(verdict['effect'])}, 95% CI {num(ci[0])} … "
        f"{num(ci[1])}, 90% CI {num(ci90[0])} … {num(ci90[1])} (no effect: inside ±{num(verdict['margin'])}); "
        f"these seeds detect a difference of ±{num(verdict['mde80'])} with 80% power."
        + (f" The {esc(averaged_over(verdict['val_average']))}." if verdict.get("val_average") else "")
        + "</p>"
    )
    interaction, tuned = verdict.get("interaction"), verdict.get("tuned")
    if interaction:
        lines.append(
            f"<p>Interaction (the teacher's effect at {esc(verdict['kd'])}'s settings minus at "
            f"{esc(verdict['baseline'])}'s): {num(interaction['effect'])}, 95% CI {num(interaction['ci95'][0])} … "
            f"{num(interaction['ci95'][1])}.</p>"
        )
    if tuned:
        lines.append(
            f"<p>Against the separately tuned baseline ({esc(tuned['kd'])} minus {esc(tuned['baseline'])}): "
            f"{num(tuned['diff'])}, 95% CI {num(tuned['ci95'][0])} … {num(tuned['ci95'][1])}: this includes what "
            "each search found; it is not a test of the teacher.</p>"
        )
    return "".join(lines)


# What each verdict design retrains (tune/sweep/verdict.py); a sweep without a control arm runs the ablation.
VERDICT_RUNS = {
    "ablation": "the winner, and the same configuration without its teacher",
    "factorial": "the winner, the same configuration without its teacher, and the tuned baseline of the same "
    "student with and without the teacher",
    "tuned": "the winner, and the separately tuned baseline of the same student",
}


def section_confirmation(s: FinishedSweep) -> str:
    b = s.best
    title = '<section id="confirmation"><h2>Selection, estimate and verdict</h2>'
    confirmation = b.get("confirmation")
    if not confirmation:
        return (
            title
            + note("no selection stage (confirm: null): the winner is the best search trial that reached max_t")
            + "</section>"
        )
    metric = s.space.objective.metric
    design = (b.get("kd_vs_baseline") or {}).get("design", "ablation")
    return (
        title + f"<p><b>Selection</b>: the best configurations of each arm (ranked at the highest epoch budget "
        f"they all reached) retrained from scratch at the full budget on the selection seeds; {esc(metric)} "
        f"per seed, mean and Student-t 95% interval. The best mean is chosen, so it overstates.</p>"
        + runs_table(confirmation, b.get("winner"))
        + img(chart(s, confirmation_figure(confirmation, metric), "confirmation"), "selection over seeds")
        + f"<p><b>Verdict runs</b>: {VERDICT_RUNS.get(design, VERDICT_RUNS['ablation'])}, retrained on fresh "
        "seeds no other run used: the winner's estimate and the verdict on the teacher.</p>"
        + verdict_callout(b.get("kd_vs_baseline"))
        + runs_table(b.get("verdict_runs") or [], b.get("winner"))
        + "</section>"
    )


def section_front(s: FinishedSweep) -> str:
    """The Dice–latency front of a sweep with a deploy target (best.json's `front`): the chart and one row per
    student backbone the space names, fastest first."""
    deploy, front = s.best["deploy"], s.best["front"]
    target = deploy["target"]
    budget = target.get("latency_budget_ms")
    lines = []
    for e in front:
        fps = 1000.0 / e["latency_ms"] * target["batch"]
        ci = e["ci95"] or (None, None)
        score = (
            f"<b>{esc(fmt(e['mean']))}</b> ({esc(fmt(ci[0]))} … {esc(fmt(ci[1]))})"
            if e["mean"] is not None
            else "not confirmed"
        )
        feasible = text_cell("yes", "end-ok") if e["feasible"] else text_cell("over budget", "end-bad")
        pareto = '<span class="tag win" title="no other confirmed student is as fast and as good">Pareto</span>'
        lines.append(
            "<tr>"
            + text_cell(esc(e["backbone"]))
            + cell(e["latency_ms"], 1)
            + cell(e["fp32_ms"], 1)
            + cell(e["int8_ms"], 1)
            + cell(fps, 1)
            + feasible
            + text_cell(score, "num")
            + text_cell(esc(e["config"] or "–"))
            + text_cell(pareto if e["pareto"] else "")
            + "</tr>"
        )
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "student backbone",
            "latency at the target (ms)",
            "ONNX Runtime fp32 (ms)",
            "ONNX Runtime int8 (ms)",
            "frames/s at the target",
            "within budget",
            f"confirmed mean {s.objective.label} (95% CI)",
            "configuration",
            "Pareto-optimal",
        )
    )
    over = (
        "a configuration over the budget was never trained, only timed"
        if budget is not None
        else "no latency budget: every configuration was trained"
    )
    fig = latency_figure(s.rows, front, budget, s.objective)
    return (
        f'<section id="front"><h2>Dice–latency front</h2><p>Every student backbone was timed at the deploy '
        f"target — {esc(deploy['described'])} — on {esc(deploy['measured_at'])}, with random weights (latency "
        f"does not depend on them); {esc(over)}. Each backbone's best configuration was confirmed over the "
        f"selection seeds; it is Pareto-optimal when no other confirmed student is both as fast and as good. "
        f"<code>python -m tune.best export --latency-budget-ms MS</code> exports the best one within MS.</p>"
        + img(chart(s, fig, "latency"), "validation score against latency at the deploy target")
        + f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div></section>"
    )


def section_test(s: FinishedSweep) -> str:
    test, winner, effect = s.best.get("test"), s.best.get("winner_test"), s.best.get("test_effect")
    title = '<section id="test"><h2>Test sets</h2>'
    if not test:
        return title + note("no test set was scored") + "</section>"
    label = s.objective.test_label
    synthetic = ' <span class="tag">SYNTHETIC data</span>' if test.get("synthetic") else ""
    missing = note(f"missing (not evaluated): {', '.join(test['missing'])}") if test.get("missing") else ""
    if not winner:  # no verdict seeds (confirm: null): the exported run alone
        lines = []
        for name, m in [*test["test_sets"].items(), ("mean", test["mean"])]:
            total = ' class="total"' if name == "mean" else ""
            lines.append(
                f"<tr{total}>" + text_cell(esc(name)) + cell(m["n"]) + cell(m["dice"]) + cell(m["iou"]) + "</tr>"
            )
        head = "<th>test set</th><th>images</th><th>Dice</th><th>IoU</th>"
        return (
            title + f"<p>The exported run, scored once at the end; never used to select anything.{synthetic}</p>"
            f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}'
            f"</tbody></table></div>{missing}</section>"
        )
    out = title + (
        f"<p>Every verdict checkpoint of the winner{' and of the verdict&#39;s pairs' if effect else ''} "
        f"scored once, at the end; never used to select anything. 95% intervals from a two-way bootstrap: seeds "
        f"and test images resampled (a video's frames together). The mean counts each test set once; per-image "
        f"scores are in <code>test_per_image.csv</code>.{synthetic}</p>"
        + _interval_table(winner, "score", f"{esc(s.best['winner'])} {label}")
    )
    if effect:
        pair = (s.best.get("kd_vs_baseline") or {}).get("pairs", [["with", "without"]])[0]
        out += (
            f'<h3 class="named">The teacher on the test sets: {esc(pair[0])} − {esc(pair[1])}</h3>'
            + img(chart(s, forest_figure(effect, label), "test_effect"), "the teacher's effect per test set")
            + _interval_table(effect, "delta", f"Δ {label}")
        )
    return out + missing + "</section>"


def _interval_table(record: dict[str, Any], key: str, heading: str) -> str:
    head = f"<th>test set</th><th>images</th><th>seeds</th><th>{heading}</th><th>95% interval</th>"
    lines = []
    for name, r in record.items():
        total = ' class="total"' if name == "mean" else ""
        value = text_cell(f"{r[key]:+.4f}", "num") if key == "delta" else cell(r[key])
        span = (
            f"{r['ci95'][0]:+.3f} … {r['ci95'][1]:+.3f}"
            if key == "delta"
            else f"{fmt(r['ci95'][0], 3)} … {fmt(r['ci95'][1], 3)}"
        )
        lines.append(
            f"<tr{total}>"
            + text_cell(esc(name))
            + cell(r["n_images"])
            + cell(r["n_seeds"])
            + value
            + text_cell(esc(span), "num")
            + "</tr>"
        )
    return (
        f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}'
        f"</tbody></table></div>"
    )


def section_gallery(s: FinishedSweep) -> str:
    title = '<section id="gallery"><h2>The winner on validation images</h2>'
    checkpoint = s.best.get("checkpoint")
    if not checkpoint:
        return title + note("best.json names no checkpoint") + "</section>"
    try:
        gallery = validation_gallery(Path(resolve(checkpoint, s.folder)))
    except UserError as err:  # data or checkpoint gone since the sweep: the rest of the page still stands
        return title + note(f"not drawn: {err}") + "</section>"
    groups = []
    for kind in ("best", "median", "worst"):
        cards = "".join(
            f"<figure>{img(c.picture, c.stem)}<figcaption>{esc(c.stem)} · Dice {c.dice:.3f} · IoU "
            f"{c.iou:.3f}</figcaption></figure>"
            for c in gallery.cases
            if c.kind == kind
        )
        if cards:
            groups.append(f'<h3>{kind}</h3><div class="gallery">{cards}</div>')
    return (
        title + f"<p>The exported checkpoint on its {gallery.n_images} validation images (the split it was "
        f"selected on, rebuilt from its config), each scored at its mask's original size: mean Dice "
        f"{gallery.mean_dice:.4f}. Each picture: image | ground truth (green) | prediction (red).</p>"
        + (note(gallery.note) if gallery.note else "")
        + "".join(groups)
        + "</section>"
    )


SECTIONS = (
    ("summary", "Summary"),
    ("settings", "Settings"),
    ("leaderboard", "Leaderboard"),
    ("curves", "Curves"),
    ("parallel", "Parallel coordinates"),
    ("importance", "Importance"),
    ("rungs", "ASHA rungs"),
    ("confirmation", "Selection & verdict"),
    ("front", "Dice–latency front"),
    ("test", "Test sets"),
    ("gallery", "Predictions"),
)


def render(s: FinishedSweep) -> str:
    specs = parameter_specs(s.space.parameters)
    milestones = s.space.asha.milestones()
    curves = {r.trial_id: read_trial_curve(s.folder, r.trial_dir) for r in s.rows}
    front = bool(s.best.get("front"))  # only a sweep with a deploy target has one
    body = "".join(
        [
            section_summary(s),
            section_settings(s),
            section_leaderboard(s, specs),
            section_curves(s, curves, milestones),
            section_parallel(s, specs),
            section_importance(s),
            section_rungs(s, milestones),
            section_confirmation(s),
            section_front(s) if front else "",
            section_test(s),
            section_gallery(s),
        ]
    )
    nav = "".join(f'<a href="#{key}">{esc(label)}</a>' for key, label in SECTIONS if front or key != "front")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sweep {esc(s.space.name)}</title>'
        f"<style>{(STATIC / 'report.css').read_text()}</style></head><body>"
        f"<header><h1>Sweep <code>{esc(s.space.name)}</code></h1></header>"
        f"<nav>{nav}</nav><main>{body}</main><script>{(STATIC / 'report.js').read_text()}</script></body></html>\n"
    )
