"""The sweep's page: results/<sweep>/report.html, one self-contained file (matplotlib charts and the winner's
pictures embedded as PNG, a few lines of inline JS to sort the leaderboard) that needs no network to read.

Written at the end of every sweep (tune/search.py `finish`); `python -m tune.report --sweep DIR` rebuilds it.
It shows the settings and wall time, the leaderboard, validation curves, parallel coordinates, importance,
ASHA's rungs, the confirmation and verdict, the test sets, and the winner's best, median and worst
validation images.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.config import config_from_dict
from core.data import EvalSet, SamplePair, discover, eval_loader, read_image
from core.errors import UserError, cli_errors
from core.evaluate import overlay_panel, score_loader
from core.metrics import binarize, dice_iou
from core.models import load_model, resolve_device
from core.split import training_split
from tune.report import ENDS, TrialRow, resolve
from tune.report_charts import (
    MAX_SMALL_MULTIPLES,
    confirmation_figure,
    curves_figure,
    importance_figure,
    parallel_axes,
    parallel_coordinates_figure,
    png,
    rungs_figure,
    small_multiples_figure,
)
from tune.search import SEARCH_FILE, SWEEP_FILE, SweepPaths, load_search_rows
from tune.space import Parameter, SearchSpace, load_space, param_name, rungs

REPORT_FILE = "report.html"
CASES_PER_KIND = 3            # gallery: this many best, median and worst validation images


@dataclass
class Sweep:
    """A finished sweep folder, read back: the resolved space, the search's rows and best.json."""

    folder: Path
    space: SearchSpace
    base: dict[str, Any]
    rows: list[TrialRow]
    best: dict[str, Any]

    @property
    def maximize(self) -> bool:
        return self.space.objective.mode == "max"


def read_sweep(folder: str | Path) -> Sweep:
    folder = Path(folder)
    for name in ("space.yaml", SWEEP_FILE, SEARCH_FILE, "best.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: not found; pass a finished sweep folder (results/<sweep>), or "
                            f"finish the sweep with `python -m tune.search --space <space> --resume`")
    return Sweep(folder=folder, space=load_space(folder / "space.yaml"),
                 base=json.loads((folder / SWEEP_FILE).read_text())["base"],
                 rows=load_search_rows(SweepPaths(folder, str(folder), remote=False)),
                 best=json.loads((folder / "best.json").read_text()))


def write_report(folder: str | Path) -> Path:
    """Build `folder`/report.html from a finished sweep folder; returns its path."""
    sweep = read_sweep(folder)
    page = render(sweep)
    path = sweep.folder / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


# --- reading the sweep's pieces -----------------------------------------------------------------------

def all_parameters(parameters: list[Parameter]) -> Iterator[Parameter]:
    """Every parameter of a space, the conditional ones (opened by a choice's `when`) included."""
    for p in parameters:
        yield p
        for subs in p.when.values():
            yield from all_parameters(subs)


def parameter_specs(space: SearchSpace) -> dict[str, Parameter]:
    """One spec per config key. A key conditional under several branches spans all of their ranges."""
    specs: dict[str, Parameter] = {}
    for p in all_parameters(space.parameters):
        known = specs.get(p.name)
        if known is None:
            specs[p.name] = Parameter(p.name, p.type, p.low, p.high, p.step, list(p.values))
        elif known.type == "choice":
            known.values += [v for v in p.values if v not in known.values]
        elif p.type != "choice":
            known.low, known.high = min(known.low, p.low), max(known.high, p.high)
    return specs


def asha_milestones(space: SearchSpace) -> list[int]:
    """The epochs at which ASHA compares trials, as Ray's ASHAScheduler computes them (one bracket)."""
    a = space.asha
    return rungs(a.max_t, a.grace_period, a.reduction_factor)


def trial_curve(folder: Path, trial_dir: str) -> list[tuple[int, float]]:
    """(epoch, validation Dice) of one Ray trial from its result.json; the last report of an epoch wins
    (a trial restored from a checkpoint reports its epochs again)."""
    path = Path(resolve(trial_dir, folder)) / "result.json"
    if not trial_dir or "://" in trial_dir or not path.is_file():
        return []
    by_epoch: dict[int, float] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            result = json.loads(line)
            if "epoch" in result and "val_dice" in result:
                by_epoch[int(result["epoch"])] = float(result["val_dice"])
    return sorted(by_epoch.items())


# --- the winner's validation images -------------------------------------------------------------------

@dataclass
class Case:
    kind: str          # best | median | worst
    stem: str
    dice: float
    iou: float
    picture: str       # data URI of image | ground truth | prediction


@dataclass
class Gallery:
    cases: list[Case]
    n_images: int
    mean_dice: float
    note: str = ""


def pick_cases(dice: list[float], per_kind: int = CASES_PER_KIND) -> list[tuple[str, int]]:
    """(kind, index) of the best, median and worst images by Dice, each image at most once; listed
    best first, then median, then worst."""
    order = sorted(range(len(dice)), key=lambda i: (-dice[i], i))
    taken: set[int] = set()
    picks: dict[str, list[int]] = {}
    mid = len(order) // 2
    median_slots = order[max(0, mid - per_kind // 2):][:per_kind]
    for kind, slots in (("best", order[:per_kind]), ("worst", order[::-1][:per_kind]), ("median", median_slots)):
        picks[kind] = [i for i in slots if i not in taken]
        taken.update(picks[kind])
    picks["worst"] = picks["worst"][::-1]
    return [(kind, i) for kind in ("best", "median", "worst") for i in picks[kind]]


def validation_gallery(checkpoint: Path, per_kind: int = CASES_PER_KIND, device: str = "auto") -> Gallery:
    """Score the checkpoint's best weights on each image of the validation split it was selected on (rebuilt
    from its config) at each mask's original size, and draw the best, median and worst ones."""
    model, state = load_model(str(checkpoint))
    cfg = config_from_dict(state["config"], source=f"{checkpoint}: config")
    data = discover(cfg.data_root)
    split = training_split(cfg, data.train)
    val, rebuilt = split.val, split.record["val_sha256"]
    note = ""
    recorded = (state.get("split") or {}).get("val_sha256")
    if recorded and recorded != rebuilt:
        note = (f"the files under {cfg.data_root} changed since training: these are not exactly the validation "
                f"images the winner was selected on")
    torch_device = resolve_device(device)
    model.to(torch_device)
    scores: dict[str, tuple[float, float]] = {}

    def keep_score(batch, logits) -> None:
        for stem, mask, one in zip(batch.stems, batch.masks, logits):
            scores[stem] = dice_iou(binarize(one, tuple(mask.shape)), mask)

    amp = torch_device.type == "cuda"
    score_loader(model, eval_loader(EvalSet(val, cfg.img_size), cfg.batch_size, 0), torch_device, amp, keep_score)
    dice = [scores[p.stem][0] for p in val]
    picks = pick_cases(dice, max(1, min(per_kind, len(val) // 3)))  # a small split still shows all three kinds
    chosen: list[SamplePair] = [val[i] for _, i in picks]
    pictures: dict[str, str] = {}

    def draw(batch, logits) -> None:
        for stem, mask, one in zip(batch.stems, batch.masks, logits):
            pair = next(p for p in chosen if p.stem == stem)
            pred = binarize(one, tuple(mask.shape)).numpy()
            panel = overlay_panel(read_image(pair.image), mask.numpy(), pred, height=180)
            _, encoded = cv2.imencode(".png", panel)
            pictures[stem] = "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()

    # Only the few drawn images are run again: keeping every prediction would hold the whole split in memory.
    score_loader(model, eval_loader(EvalSet(chosen, cfg.img_size), cfg.batch_size, 0), torch_device, amp, draw)
    cases = [Case(kind, val[i].stem, *scores[val[i].stem], pictures[val[i].stem]) for kind, i in picks]
    return Gallery(cases, len(val), float(np.mean(dice)), note)


# --- the page -----------------------------------------------------------------------------------------

def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s")


def cell(value: Any, digits: int = 4) -> str:
    """A table cell that sorts by its raw value; numbers align right."""
    sort = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    css = ' class="num"' if number else ""
    return f'<td data-sort="{esc(sort)}"{css}>{esc(fmt(value, digits))}</td>'


def text_cell(text: str, css: str = "", title: str = "") -> str:
    attrs = (f' class="{css}"' if css else "") + (f' title="{esc(title)}"' if title else "")
    return f"<td{attrs}>{text}</td>"


def img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{esc(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{param_name(k)}={fmt(v)}" for k, v in params.items())


def section_summary(s: Sweep) -> str:
    b = s.best
    items = [("winner", (f"{b.get('winner')} ({b.get('arm')}; seed run {b.get('trial_id')}, search trial "
                         f"{b.get('search_trial')})")),
             ("parameters", params_text(b.get("params") or {})),
             ("validation Dice of the exported checkpoint",
              f"{fmt(b.get('best_val_dice'))} (epoch {b.get('best_epoch')} of {b.get('epochs_trained')})")]
    if b.get("confirmed_mean") is not None:
        ci = b.get("confirmed_ci95") or [None, None]
        items.append((f"confirmed {s.space.objective.metric}",
                      f"{fmt(b['confirmed_mean'])} (95% CI {fmt(ci[0])} … {fmt(ci[1])})"))
    test = b.get("test")
    if test:
        mean = test["mean"]
        items.append(("mean test Dice / IoU",
                      f"{fmt(mean['dice'])} / {fmt(mean['iou'])} over {len(test['test_sets'])} test sets"))
    items.append(("export it", f"python -m tune.best export --sweep {s.folder}"))
    verdict = (b.get("kd_vs_baseline") or {}).get("sentence")
    out = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    banner = ""
    if b.get("synthetic_data"):
        banner = ('<p class="warn">SYNTHETIC demo data: these numbers say nothing about real polyps.</p>')
    callout = f'<p class="verdict">{esc(verdict)}</p>' if verdict else ""
    return f'<section id="summary"><h2>Summary</h2>{banner}{callout}<table class="kv">{out}</table></section>'


def section_settings(s: Sweep) -> str:
    sp, b = s.space, s.best
    ends = {e: sum(r.end == e for r in s.rows) for e in ENDS}
    states = (b.get("study") or {}).get("states") or {}
    search = (f"{sp.search.num_samples} trials, {sp.search.max_concurrent_trials} at a time, Optuna TPE seed "
              f"{sp.search.seed}, max_failures {sp.search.max_failures}")
    asha = (f"max_t {sp.asha.max_t} epochs, grace_period {sp.asha.grace_period}, reduction_factor "
            f"{sp.asha.reduction_factor}; rungs at epochs {', '.join(map(str, asha_milestones(sp)))}")
    control = f"{sp.control.fraction:.0%} of the trials without a teacher" if sp.has_control else "none"
    confirm = "none (confirm: null)"
    if sp.confirm:
        confirm = (f"top {sp.confirm.top_k} KD configurations{' + the best baseline' if sp.has_control else ''}, "
                   f"{sp.confirm.seeds} seeds each")
    study = (f"{(b.get('study') or {}).get('journal', 'optuna.journal')} (study '{sp.name}'): "
             + ", ".join(f"{n} {k}" for k, n in states.items()))
    items = [("sweep", f"{sp.name} — {s.folder.resolve()}"),
             ("mode", sp.base.get("mode", "baseline")),
             ("objective", f"{sp.objective.metric} ({sp.objective.mode})"),
             ("data", f"{s.base.get('data_root')}{' [SYNTHETIC]' if b.get('synthetic_data') else ''}"),
             ("image size / batch", f"{s.base.get('img_size')} px / {s.base.get('batch_size')}"),
             ("search", search), ("ASHA", asha), ("control arm", control), ("confirmation", confirm),
             ("teacher", s.base.get("teacher_checkpoint") or "none"),
             ("resources per trial", f"{sp.resources.cpu:g} CPU, {sp.resources.gpu:g} GPU"),
             ("search outcome", ", ".join(f"{n} {e}" for e, n in ends.items() if n)),
             ("Optuna study", study),
             ("wall time", (f"{duration(b.get('wall_seconds'))} (the last driver run; a resumed sweep counts from "
                           "its resume)")),
             ("page written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    space_yaml = (s.folder / "space.yaml").read_text()
    base = json.dumps(s.base, indent=2)
    return (f'<section id="settings"><h2>Settings</h2><table class="kv">{table}</table>'
            f"<details><summary>space.yaml (resolved)</summary><pre>{esc(space_yaml)}</pre></details>"
            f"<details><summary>every trial's base config (sweep.json)</summary><pre>{esc(base)}</pre></details>"
            f"</section>")


def section_leaderboard(s: Sweep, specs: dict[str, Parameter]) -> str:
    keys = [k for k in specs if any(k in r.params for r in s.rows)]
    keys += sorted({k for r in s.rows for k in r.params} - set(keys))
    confirmed = {c["trial"]: c["name"] for c in (s.best.get("confirmation") or [])}
    head = (["#", "trial", "arm", "end", "epochs", f"objective ({s.space.objective.metric})", "best val Dice",
             "best val IoU", "best epoch"] + keys + ["error"])
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
            f'<tr class="arm-{esc(r.arm)}">' + cell(r.rank)
            + f'<td data-sort="{esc(r.trial_id)}">{esc(r.trial_id)}{marks}</td>'
            + text_cell(esc(r.arm)) + text_cell(esc(r.end), f"end-{end_css}") + cell(r.epochs)
            + cell(r.objective) + cell(r.best_val_dice) + cell(r.best_val_iou) + cell(r.best_epoch)
            + "".join(cell(r.params.get(k)) for k in keys) + error + "</tr>")
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return (f'<section id="leaderboard"><h2>Leaderboard</h2>'
            f'<p>{len(s.rows)} search trials, ranked by the objective (trials that errored, diverged or were '
            f'interrupted last). A trial stopped by ASHA is ranked by what it reached in fewer epochs. Click a '
            f'column to sort. Also in leaderboard.csv.</p>'
            f'<div class="scroll"><table class="sortable grid"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div></section>')


def section_curves(s: Sweep, curves: dict[str, list[tuple[int, float]]], milestones: list[int]) -> str:
    if not any(curves.values()):
        return (f'<section id="curves"><h2>Validation curves</h2>'
                f'{note("no trial results readable here (trials kept in remote storage?)")}</section>')
    shown = sum(1 for r in s.rows if curves.get(r.trial_id))
    more = (f" The {MAX_SMALL_MULTIPLES} best-ranked trials are drawn one by one."
            if shown > MAX_SMALL_MULTIPLES else "")
    return (f'<section id="curves"><h2>Validation curves</h2><p>Validation Dice after each epoch (dashed: control '
            f'arm without a teacher; dotted verticals: ASHA rungs; a curve that ends early was stopped by ASHA; '
            f'star: the trial\'s best epoch).{more}</p>'
            + img(png(curves_figure(s.rows, curves, milestones, s.space.asha.max_t)), "all validation curves")
            + img(png(small_multiples_figure(s.rows, curves, milestones, s.space.asha.max_t)),
                  "validation curve of each trial")
            + "</section>")


def section_parallel(s: Sweep, specs: dict[str, Parameter]) -> str:
    rows = [r for r in s.rows if r.usable]
    title = '<section id="parallel"><h2>Parallel coordinates</h2>'
    if not rows:
        return title + note("no usable trial") + "</section>"
    axes = parallel_axes(rows, specs, s.space.objective.metric, s.maximize)
    fig = parallel_coordinates_figure(rows, axes, s.maximize)
    return (title + "<p>One line per usable search trial, coloured by the objective (yellow: best). Numeric axes "
            "span the search space's range; log-uniform parameters are on a log scale.</p>"
            + img(png(fig), "parallel coordinates") + "</section>")


def section_importance(s: Sweep) -> str:
    imp = s.best.get("importance")
    title = '<section id="importance"><h2>Hyperparameter importance</h2>'
    if not imp or not imp.get("importance"):
        return title + note("not computed: fewer than 3 distillation trials reported a value at the first "
                            "ASHA rung") + "</section>"
    branches = (" A conditional parameter carries its branch (<code>choice=value@key</code>)."
                if any("@" in name for name in imp["importance"]) else "")
    return (title + f"<p>PED-ANOVA on the {imp['trials']} distillation trials' validation value at epoch "
            f"{imp['at_epoch']}, which every trial reached (most were stopped by ASHA later), from the Optuna "
            f"study; few trials give a rough ranking only.{branches}</p>"
            + img(png(importance_figure(imp["importance"])), "importance") + "</section>")


def section_rungs(s: Sweep, milestones: list[int]) -> str:
    budgets = milestones + ([s.space.asha.max_t] if s.space.asha.max_t not in milestones else [])
    arms = [a for a in ("kd", "baseline") if any(r.arm == a for r in s.rows)]
    reached = [(e, {a: sum(1 for r in s.rows if r.arm == a and r.epochs >= e) for a in arms}) for e in budgets]
    stopped = {e: sum(1 for r in s.rows if r.end == "stopped by ASHA" and r.epochs == e) for e in budgets}
    lines = "".join("<tr>" + text_cell(f"{e}{' (max_t)' if e == s.space.asha.max_t else ''}")
                    + "".join(cell(by_arm[a]) for a in arms)
                    + text_cell(f"{sum(by_arm.values())} of {len(s.rows)}", "num") + cell(stopped[e]) + "</tr>"
                    for e, by_arm in reached)
    head = ("<th>epoch budget</th>" + "".join(f"<th>{esc(a)}</th>" for a in arms)
            + "<th>all</th><th>stopped there by ASHA</th>")
    return (f'<section id="rungs"><h2>ASHA rungs</h2><p>How many search trials reached each epoch budget. ASHA '
            f'compares a trial at each rung with the others that reached it and keeps the top '
            f'1/{s.space.asha.reduction_factor}.</p><div class="row"><table class="grid">'
            f"<thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"
            + img(png(rungs_figure(reached, arms)), "trials per rung") + "</div></section>")


def section_confirmation(s: Sweep) -> str:
    b = s.best
    title = '<section id="confirmation"><h2>Confirmation and verdict</h2>'
    confirmation = b.get("confirmation")
    if not confirmation:
        return title + note("no confirmation stage (confirm: null): the winner is the best search trial that "
                            "reached max_t") + "</section>"
    metric = s.space.objective.metric
    lines = []
    for c in confirmation:
        seeds = ", ".join(f"{seed}: {fmt(v)}" for seed, v in zip(c["seeds"], c["values"]))
        ci = c["ci95"]
        win = ' <span class="tag win">winner</span>' if c["name"] == b.get("winner") else ""
        lines.append("<tr>" + text_cell(esc(c["name"]) + win) + text_cell(esc(c["arm"])) + text_cell(esc(c["trial"]))
                     + text_cell(esc(params_text(c["params"])), "wrap")
                     + text_cell(f"{esc(fmt(c['search_value']))} ({c['search_epochs']} ep)", "num")
                     + text_cell(esc(seeds), "wrap") + text_cell(f"<b>{esc(fmt(c['mean']))}</b>", "num")
                     + text_cell(f"{esc(fmt(ci[0]))} … {esc(fmt(ci[1]))}", "num") + "</tr>")
    verdict = b.get("kd_vs_baseline")
    callout = (f'<p class="verdict">{esc(verdict["sentence"])}</p><p>Paired by seed: {esc(verdict["kd"])} minus '
               f'{esc(verdict["baseline"])}, mean difference {fmt(verdict["diff_mean"])}, 95% CI '
               f'{fmt(verdict["ci95"][0])} … {fmt(verdict["ci95"][1])} ({verdict["seeds"]} seeds).</p>'
               if verdict else note("no distillation-vs-baseline verdict (no control arm in this sweep)"))
    return (title + f"<p>The best configurations retrained from scratch at the full budget with several seeds; "
            f"{esc(metric)} per seed, mean and Student-t 95% interval. The winner is the best mean.</p>" + callout
            + '<div class="scroll"><table class="grid"><thead><tr><th>configuration</th><th>arm</th>'
            '<th>search trial</th><th>parameters</th><th>search value</th><th>per seed</th><th>mean</th>'
            f"<th>95% CI</th></tr></thead><tbody>{''.join(lines)}</tbody></table></div>"
            + img(png(confirmation_figure(confirmation, metric)), "confirmation over seeds") + "</section>")


def section_test(s: Sweep) -> str:
    test, base = s.best.get("test"), s.best.get("baseline_test")
    title = '<section id="test"><h2>Test sets</h2>'
    if not test:
        return title + note("no test set was scored") + "</section>"
    head = "<th>test set</th><th>images</th><th>winner Dice</th><th>winner IoU</th>"
    if base:
        head += "<th>confirmed baseline Dice</th><th>baseline IoU</th><th>Δ Dice</th>"
    lines = []
    for name, m in list(test["test_sets"].items()) + [("mean", test["mean"])]:
        line = text_cell(esc(name)) + cell(m["n"]) + cell(m["dice"]) + cell(m["iou"])
        if base:
            other = base["mean"] if name == "mean" else base["test_sets"].get(name)
            line += (cell(other["dice"]) + cell(other["iou"]) + text_cell(f"{m['dice'] - other['dice']:+.4f}", "num")
                     if other else "<td></td>" * 3)
        total = ' class="total"' if name == "mean" else ""
        lines.append(f"<tr{total}>{line}</tr>")
    missing = note(f"missing (not evaluated): {', '.join(test['missing'])}") if test.get("missing") else ""
    synthetic = ' <span class="tag">SYNTHETIC data</span>' if test.get("synthetic") else ""
    return (title + f"<p>Scored once, at the end, for the winner's exported checkpoint"
            f"{' and the confirmed baseline' if base else ''}; never used to select anything. The mean is over "
            f"test sets (each counts once).{synthetic}</p>"
            f'<div class="scroll"><table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody>'
            f"</table></div>{missing}</section>")


def section_gallery(s: Sweep) -> str:
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
        cards = "".join(f'<figure>{img(c.picture, c.stem)}<figcaption>{esc(c.stem)} · Dice {c.dice:.3f} · IoU '
                        f'{c.iou:.3f}</figcaption></figure>' for c in gallery.cases if c.kind == kind)
        if cards:
            groups.append(f"<h3>{kind}</h3><div class=\"gallery\">{cards}</div>")
    return (title + f"<p>The exported checkpoint on its {gallery.n_images} validation images (the split it was "
            f"selected on, rebuilt from its config), each scored at its mask's original size: mean Dice "
            f"{gallery.mean_dice:.4f}. Each picture: image | ground truth (green) | prediction (red).</p>"
            + (note(gallery.note) if gallery.note else "") + "".join(groups) + "</section>")


STYLE = """
body{font:14px/1.45 system-ui,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#22313f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;z-index:2}
nav a{margin-right:14px;color:#22557a;text-decoration:none}
main{padding:6px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:4px 18px 14px;margin:16px 0}
h2{font-size:18px;border-bottom:1px solid #eee;padding-bottom:4px}
h3{font-size:15px;margin:10px 0 4px;text-transform:capitalize}
img{max-width:100%;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:13px}
table.grid th,table.grid td{border:1px solid #ddd;padding:3px 7px;text-align:left;white-space:nowrap}
table.grid td.num{text-align:right}
table.grid td.wrap{white-space:normal;min-width:220px}
table.grid thead th{background:#f0f3f6;white-space:normal;vertical-align:bottom}
table.kv th{text-align:left;padding:2px 14px 2px 0;vertical-align:top;color:#555;font-weight:600}
table.kv td{padding:2px 0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-order=asc]::after{content:" \u25b2"}
table.sortable th[data-order=desc]::after{content:" \u25bc"}
tr.arm-baseline td{background:#fff8ef}
td.end-ok{color:#1a7f37}
td.end-asha{color:#8a6d00}
td.end-bad{color:#b42318;font-weight:600}
tr.total td{font-weight:600}
.tag{display:inline-block;font-size:11px;padding:0 5px;border-radius:8px;background:#e7eef6;color:#22557a}
.tag.win{background:#1a7f37;color:#fff}
.scroll{overflow-x:auto}
.note{color:#666;font-style:italic}
.warn{background:#fff4ce;border:1px solid #e8c95a;padding:6px 10px;border-radius:4px}
.verdict{background:#eef6ee;border-left:4px solid #1a7f37;padding:6px 10px;font-weight:600}
.row{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{margin:0;flex:0 1 calc(33.3% - 8px)}
.gallery img{width:100%;margin:0 0 2px;image-rendering:pixelated}
figcaption{font-size:12px;color:#444}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}
"""

# Sorts a table by the clicked column: numbers by value (data-sort holds the raw number), text otherwise.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.dataset.order !== "asc";
      table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = asc ? "asc" : "desc";
      var key = function (tr) {
        var c = tr.cells[col], v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent;
        var n = parseFloat(v);
        return v === "" ? null : (isNaN(n) ? v.toLowerCase() : n);
      };
      var body = table.tBodies[0];
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }  // empty cells last
        var r = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? r : -r;
      }).forEach(function (tr) { body.appendChild(tr); });
    });
  });
});
"""

SECTIONS = (("summary", "Summary"), ("settings", "Settings"), ("leaderboard", "Leaderboard"),
            ("curves", "Curves"), ("parallel", "Parallel coordinates"), ("importance", "Importance"),
            ("rungs", "ASHA rungs"), ("confirmation", "Confirmation"), ("test", "Test sets"),
            ("gallery", "Predictions"))


def render(s: Sweep) -> str:
    specs = parameter_specs(s.space)
    milestones = asha_milestones(s.space)
    curves = {r.trial_id: trial_curve(s.folder, r.trial_dir) for r in s.rows}
    body = "".join([section_summary(s), section_settings(s), section_leaderboard(s, specs),
                    section_curves(s, curves, milestones), section_parallel(s, specs), section_importance(s),
                    section_rungs(s, milestones), section_confirmation(s), section_test(s), section_gallery(s)])
    nav = "".join(f'<a href="#{key}">{esc(label)}</a>' for key, label in SECTIONS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sweep {esc(s.space.name)}</title>'
            f"<style>{STYLE}</style></head><body><header><h1>Sweep <code>{esc(s.space.name)}</code></h1></header>"
            f"<nav>{nav}</nav><main>{body}</main><script>{SORT_SCRIPT}</script></body></html>\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tune.report",
                                     description="Rebuild a finished sweep's report.html (one self-contained page).")
    parser.add_argument("--sweep", help="sweep folder or name (default: the newest finished one in results/)")
    args = parser.parse_args(argv)
    with cli_errors():
        from tune.best import find_sweep

        path = write_report(find_sweep(args.sweep))
    print(f"wrote {path}")
