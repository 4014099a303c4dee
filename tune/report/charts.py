"""The sweep's one set of charts, drawn with matplotlib: validation curves, parallel coordinates in real
units, importance, ASHA's rungs and the confirmation. report.html embeds them as PNG data URIs; each is also
saved in the sweep's charts/ folder, which W&B's summary run logs.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from core.files import write_file_atomic
from tune.objective import Objective
from tune.records import TrialRow
from tune.report.format import fmt
from tune.space import Parameter

DPI = 100
MAX_SMALL_MULTIPLES = 60  # per-trial curve panels; a bigger sweep shows its best-ranked trials
ARM_COLOURS = {"kd": "#1f77b4", "baseline": "#ff7f0e"}


def png(fig: plt.Figure, also_save: Path | None = None) -> str:
    """The figure as a PNG data URI (closing it), and as a file at `also_save`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    if also_save is not None:
        write_file_atomic(also_save, buffer.getvalue())
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def curves_figure(
    rows: list[TrialRow], curves: dict[str, list[tuple[int, float]]], milestones: list[int], max_t: int
) -> plt.Figure:
    """Every search trial's validation Dice per epoch on one chart, with ASHA's rungs marked."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")  # a qualitative map: N distinct colours
    for i, row in enumerate(r for r in rows if curves.get(r.trial_id)):
        epochs, dice = zip(*curves[row.trial_id])
        ax.plot(
            epochs,
            dice,
            marker="o",
            ms=3,
            lw=1.4,
            color=colours(i % colours.N),
            ls="--" if row.arm == "baseline" else "-",
            label=f"#{row.rank} {row.trial_id} ({row.arm}, {row.end})",
        )
    for m in milestones:
        ax.axvline(m, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0.5, max_t + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (dotted: ASHA rungs)")
    ax.set_ylabel("validation Dice")
    ax.grid(alpha=0.3)
    if 0 < len(ax.lines) - len(milestones) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def source_curves_figure(curves: dict[str, list[tuple[int, float]]], max_t: int) -> plt.Figure:
    """One trial's validation Dice per epoch: averaged (`val_dice`, thick) and on each source's images."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for key, points in curves.items():
        epochs, dice = zip(*points)
        average = key == "val_dice"
        ax.plot(
            epochs,
            dice,
            marker="o",
            ms=3,
            lw=2.4 if average else 1.3,
            color="black" if average else None,
            label="averaged (val_dice)" if average else key.split("/", 1)[1],
        )
    ax.set_xlim(0.5, max_t + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def small_multiples_figure(
    rows: list[TrialRow], curves: dict[str, list[tuple[int, float]]], milestones: list[int], max_t: int
) -> plt.Figure:
    """One small chart per trial (ranked order): its curve, its best epoch starred, ASHA's rungs dotted."""
    shown = [r for r in rows if curves.get(r.trial_id)][:MAX_SMALL_MULTIPLES]
    cols = min(5, len(shown))
    lines = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(
        lines, cols, figsize=(2.4 * cols + 0.4, 1.9 * lines + 0.3), sharex=True, sharey=True, squeeze=False
    )
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, shown):
        epochs, dice = zip(*curves[row.trial_id])
        colour = ARM_COLOURS.get(row.arm, "black")
        ax.plot(epochs, dice, marker="o", ms=2.5, lw=1.3, color=colour, ls="--" if row.arm == "baseline" else "-")
        best = max(range(len(dice)), key=lambda i: dice[i])
        ax.plot([epochs[best]], [dice[best]], marker="*", ms=9, color=colour)
        for m in milestones:
            ax.axvline(m, color="grey", lw=0.6, ls=":")
        ax.set_title(f"#{row.rank} {row.trial_id}\n{row.arm} · {row.end}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    axes[0][0].set_xlim(0.5, max_t + 0.5)
    axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("validation Dice", fontsize=8)
    fig.tight_layout()
    return fig


@dataclass
class Axis:
    """One vertical axis of the parallel-coordinates chart; `values` has one entry per trial (None: the
    trial did not sample this parameter, e.g. a conditional one or a distillation one in the control arm)."""

    label: str
    kind: str  # linear | log | category
    values: list[Any]
    low: float = 0.0
    high: float = 1.0
    categories: list[str] = field(default_factory=list)

    def position(self, value: Any) -> float | None:
        """Where `value` sits between the axis' ends, 0 (low) .. 1 (high)."""
        if value is None:
            return None
        if self.kind == "category":
            if len(self.categories) == 1:
                return 0.5
            return self.categories.index(str(value)) / (len(self.categories) - 1)
        t = self._t
        return (t(float(value)) - t(self.low)) / (t(self.high) - t(self.low))

    def _t(self, value: float) -> float:
        return math.log10(value) if self.kind == "log" else value


def parallel_axes(rows: list[TrialRow], specs: dict[str, Parameter], objective: Objective) -> list[Axis]:
    """Axes for every parameter the rows sampled (in the space's order), then the objective. Numeric axes
    span the space's range (log-uniform ones on a log scale); a choice lists all its values."""
    keys = [k for k in specs if any(k in r.params for r in rows)]
    keys += sorted({k for r in rows for k in r.params} - set(keys))
    axes = []
    for key in keys:
        values = [r.params.get(key) for r in rows]
        present = [v for v in values if v is not None]
        spec = specs.get(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if (spec is not None and spec.type == "choice") or not numeric:
            categories = [str(v) for v in (spec.values if spec is not None else [])]
            categories += sorted({str(v) for v in present} - set(categories))
            axes.append(Axis(key, "category", [None if v is None else str(v) for v in values], categories=categories))
            continue
        kind = "log" if spec is not None and spec.type == "loguniform" else "linear"
        low = min(([spec.low] if spec is not None else []) + present)
        high = max(([spec.high] if spec is not None else []) + present)
        if low == high:  # one value and no range from the space: centre it
            low, high = (low / 2, high * 2) if kind == "log" else (low - 0.5, high + 0.5)
        axes.append(Axis(key, kind, values, low, high))
    scores = [r.objective for r in rows]
    low, high = min(scores), max(scores)
    pad = 0.05 * (high - low) or 0.01
    axes.append(Axis(f"{objective.metric} ({objective.mode})", "linear", scores, low - pad, high + pad))
    return axes


def parallel_coordinates_figure(rows: list[TrialRow], axes: list[Axis], maximize: bool) -> plt.Figure:
    """One line per trial across its hyperparameters and the objective, each axis in real values.

    Each axis is a twin of one host axes placed at x = i, with its own (log) scale set so that its range
    maps onto the host's 0..1; the host draws the lines. A trial that did not sample a parameter crosses
    that axis at "not sampled", below its range."""
    n = len(axes)
    missing = any(v is None for a in axes for v in a.values)
    bottom, top = (-0.2 if missing else -0.04), 1.04
    fig, host = plt.subplots(figsize=(max(7.0, 2.1 * n + 1.2), 5.2))
    fig.subplots_adjust(left=0.05, right=1 - 0.9 / (2.1 * n + 1.2), top=0.85, bottom=0.13)
    host.set_xlim(0, n - 1)
    host.set_ylim(bottom, top)
    for i, axis in enumerate(axes):
        _draw_axis(host, i, n, axis, bottom, top)
    for spine in host.spines.values():
        spine.set_visible(False)
    host.set_xticks([])
    host.set_yticks([])
    _draw_trials(host, rows, axes, maximize)
    handles = [
        Line2D([], [], color="black", lw=1.5, label="distillation (kd)"),
        Line2D([], [], color="black", lw=1.5, ls="--", label="control arm (baseline, no teacher)"),
        Line2D([], [], color="grey", lw=2.2, label="reached max_t"),
        Line2D([], [], color="grey", lw=1.2, alpha=0.6, label="stopped by ASHA (objective at fewer epochs)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    return fig


Y_NOT_SAMPLED = -0.13  # where a trial crosses an axis it did not sample, in the host's 0..1 units


def _draw_axis(host: Axes, i: int, n: int, axis: Axis, bottom: float, top: float) -> None:
    """Axis i of n: a twin of the host, its range on the host's 0..1, ticks in real values, its label."""
    twin = host.twinx()
    for side in ("left", "top", "bottom"):
        twin.spines[side].set_visible(False)
    twin.spines["right"].set_position(("axes", i / (n - 1)))
    if axis.kind == "category":
        low, high = (-0.5, 0.5) if len(axis.categories) == 1 else (0, len(axis.categories) - 1)
    else:
        low, high = axis.low, axis.high
    log = axis.kind == "log"
    t0, t1 = (math.log10(low), math.log10(high)) if log else (low, high)
    lims = [t0 + f * (t1 - t0) for f in (bottom, top)]
    if log:
        twin.set_yscale("log")
        lims = [10**v for v in lims]
    twin.set_ylim(*lims)
    twin.spines["right"].set_bounds(low, high)
    if axis.kind == "category":
        ticks = list(range(len(axis.categories))) if len(axis.categories) > 1 else [0]
        twin.set_yticks(ticks, [c if len(c) <= 22 else c[:21] + "…" for c in axis.categories])
    else:
        twin.set_yticks(_numeric_ticks(low, high, log))
        twin.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, None)))
    twin.yaxis.set_minor_locator(NullLocator())
    twin.tick_params(labelsize=8)
    for label in twin.get_yticklabels():  # readable where a line crosses it
        label.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    host.text(
        i,
        top + 0.03,
        axis.label + ("\n(log scale)" if log else ""),
        ha="center",
        va="bottom",
        fontsize=9,
        fontweight="bold",
    )
    if any(v is None for v in axis.values):
        host.text(
            i + 0.03,
            Y_NOT_SAMPLED,
            "not sampled",
            ha="left",
            va="center",
            fontsize=7,
            color="dimgrey",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
            zorder=5,
        )
        host.plot([i], [Y_NOT_SAMPLED], marker="_", ms=12, color="dimgrey")


def _numeric_ticks(low: float, high: float, log: bool) -> list[float]:
    # A range under two decades gets 2 and 5 times each power of ten labelled too.
    narrow = log and math.log10(high / low) < 2
    locator = LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=12) if log else MaxNLocator(5)
    eps = 1e-9 * (abs(high) + abs(low))
    ticks = [t for t in locator.tick_values(low, high) if low - eps <= t <= high + eps]
    if len(ticks) < 2:
        ticks = list(np.geomspace(low, high, 4) if log else np.linspace(low, high, 4))
    return ticks


def _draw_trials(host: Axes, rows: list[TrialRow], axes: list[Axis], maximize: bool) -> None:
    """One line per trial, coloured by its objective, the best drawn last (on top)."""
    scores = [r.objective for r in rows]
    lo, hi = min(scores), max(scores)
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    for i in sorted(range(len(rows)), key=lambda i: scores[i] if maximize else -scores[i]):
        row = rows[i]
        positions = [a.position(a.values[i]) for a in axes]
        ys = [Y_NOT_SAMPLED if y is None else y for y in positions]
        finished = row.end == "finished"
        host.plot(
            range(len(axes)),
            ys,
            color=cmap((scores[i] - lo) / (hi - lo) if hi > lo else 1.0),
            lw=2.2 if finished else 1.2,
            alpha=0.95 if finished else 0.6,
            ls="--" if row.arm == "baseline" else "-",
            marker="o",
            ms=3,
            clip_on=False,
        )


def importance_figure(importance: dict[str, float]) -> plt.Figure:
    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.0))
    bars = ax.barh(names, [importance[k] for k in names], color="#1f77b4")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=3)
    ax.set_xlim(0, max(1e-9, *importance.values()) * 1.15)
    ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def rungs_figure(reached: list[tuple[int, dict[str, int]]], arms: list[str]) -> plt.Figure:
    """Trials that reached each epoch budget, stacked by arm."""
    fig, ax = plt.subplots(figsize=(6, 3.0))
    labels = [str(epoch) for epoch, _ in reached]
    bottom = np.zeros(len(reached))
    for arm in arms:
        counts = np.array([by_arm.get(arm, 0) for _, by_arm in reached])
        bars = ax.bar(labels, counts, bottom=bottom, color=ARM_COLOURS.get(arm, "grey"), label=arm)
        bottom += counts
    ax.bar_label(bars, labels=[str(int(v)) for v in bottom], fontsize=8, padding=2)
    ax.set_ylim(0, max(bottom.max(), 1) * 1.2)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch budget (ASHA rung; the last is max_t)")
    ax.set_ylabel("trials that reached it")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def confirmation_figure(confirmation: list[dict[str, Any]], metric: str) -> plt.Figure:
    """Each configuration's per-seed values, their mean with its 95% interval, and the single search value."""
    fig, ax = plt.subplots(figsize=(1.5 * len(confirmation) + 3.2, 3.4))
    for x, c in enumerate(confirmation):
        colour = ARM_COLOURS.get(c["arm"], "grey")
        values = [v for v in c["values"] if v is not None and not math.isnan(v)]
        # A configuration whose every seed failed has no value: no point (and no offset) to draw.
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(
            x + np.asarray(offsets), values, color=colour, s=22, zorder=3, label="a seed's run" if x == 0 else None
        )
        mean, ci = c["mean"], c["ci95"]
        if mean is not None and not math.isnan(mean):
            err = None
            if ci and not any(v is None or math.isnan(v) for v in ci):
                err = [[mean - ci[0]], [ci[1] - mean]]
            ax.errorbar(
                [x + 0.3],
                [mean],
                yerr=err,
                fmt="D",
                color="black",
                ms=5,
                capsize=4,
                label="mean, 95% CI" if x == 0 else None,
            )
        if c.get("search_value") is not None:
            ax.scatter(
                [x - 0.3],
                [c["search_value"]],
                facecolors="none",
                edgecolors=colour,
                s=40,
                label="search trial (one seed, maybe fewer epochs)" if x == 0 else None,
            )
    ax.set_xticks(range(len(confirmation)), [f"{c['name']}\n({c['arm']})" for c in confirmation], fontsize=8)
    ax.set_xlim(-0.7, len(confirmation) - 0.3)
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def forest_figure(effect: dict[str, dict[str, Any]], label: str) -> plt.Figure:
    """The teacher's effect on each test set and their mean (best.json's `test_effect`): a point per row with
    its 95 % interval, the mean last and bold, and a line at zero (no effect)."""
    names = list(effect)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.3))
    for y, name in enumerate(reversed(names)):
        r = effect[name]
        bold = name == "mean"
        ax.errorbar(
            [r["delta"]],
            [y],
            xerr=[[r["delta"] - r["ci95"][0]], [r["ci95"][1] - r["delta"]]],
            fmt="D" if bold else "s",
            color="black" if bold else "#1f77b4",
            ms=7 if bold else 5,
            capsize=3,
        )
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(names)), [f"{n} ({effect[n]['n_images']} images)" for n in reversed(names)], fontsize=8)
    ax.set_xlabel(f"Δ {label}: with the teacher − without (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def latency_figure(
    rows: list[TrialRow], front: list[dict[str, Any]], budget_ms: float | None, objective: Objective
) -> plt.Figure:
    """The objective against latency at the deploy target: every search trial a point (coloured by arm;
    trials over budget, never trained, as grey crosses on the bottom edge), each confirmed backbone's mean
    with its 95% CI labelled by name, the Pareto-optimal ones joined by a step line, the budget dashed."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    timed = [r for r in rows if r.latency_ms is not None]
    scored = [r for r in timed if not math.isnan(r.objective)]
    for arm in sorted({r.arm for r in scored}, key=lambda a: (a not in ARM_COLOURS, a)):
        mine = [r for r in scored if r.arm == arm]
        ax.scatter(
            _latencies(mine),
            [r.objective for r in mine],
            s=26,
            alpha=0.6,
            zorder=2,
            color=ARM_COLOURS.get(arm, "grey"),
            label=f"search trial ({arm})",
        )
    confirmed = [e for e in front if e["mean"] is not None]
    _draw_front(ax, confirmed, objective)
    infeasible = [r for r in timed if r.end == "infeasible"]
    if infeasible:
        # No score to plot: on the axis' bottom edge, at their latency (x in data units, y in axes units).
        ax.scatter(
            _latencies(infeasible),
            [0.02] * len(infeasible),
            marker="x",
            s=40,
            color="grey",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=3,
            label="infeasible (not trained)",
        )
    _latency_axis(ax, _latencies(timed) + [e["latency_ms"] for e in front], budget_ms)
    ax.set_xlabel("latency at the deploy target (ms per call)")
    ax.set_ylabel(f"{objective.label} ({objective.mode})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def _latencies(rows: list[TrialRow]) -> list[float]:
    """Each timed row's latency, in order (callers pass timed rows only)."""
    return [r.latency_ms for r in rows if r.latency_ms is not None]


def _latency_axis(ax: Axes, latencies: list[float], budget_ms: float | None) -> None:
    """An x axis spanning every latency and the budget (the infeasible crosses are not autoscaled: they sit in
    axes units), on a log scale when they span more than 5x, with the budget dashed and beyond it shaded."""
    xs = latencies + ([budget_ms] if budget_ms is not None else [])
    if not xs:
        return
    low, high = min(xs), max(xs)
    log = high > 5 * low  # a wide range (e.g. MobileNet to ResNet50) crowds a linear axis' left end
    if log:
        ax.set_xscale("log")
        ax.set_xticks(_numeric_ticks(low, high, log=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, None)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlim(low / 1.2, high * 1.2)
    else:
        pad = 0.06 * (high - low) or 0.1 * high
        ax.set_xlim(low - pad, high + pad)
    if budget_ms is not None:
        ax.axvline(budget_ms, color="#b42318", ls="--", lw=1.2, label=f"budget {budget_ms:g} ms")
        ax.axvspan(budget_ms, ax.get_xlim()[1], color="#b42318", alpha=0.05, lw=0)


def _draw_front(ax: Axes, confirmed: list[dict[str, Any]], objective: Objective) -> None:
    """Each confirmed backbone's mean and 95% CI, named; the Pareto-optimal ones joined fastest first by a
    step line (a slower student is worth it only where the line steps up)."""
    for i, e in enumerate(confirmed):
        lo, hi = e["ci95"] or (None, None)
        err = None if lo is None or hi is None else [[e["mean"] - lo], [hi - e["mean"]]]
        ax.errorbar(
            [e["latency_ms"]],
            [e["mean"]],
            yerr=err,
            fmt="D",
            ms=6,
            capsize=4,
            zorder=4,
            color="black" if e["pareto"] else "dimgrey",
            mfc="black" if e["pareto"] else "white",
            label="confirmed mean, 95% CI (filled: Pareto-optimal)" if i == 0 else None,
        )
        ax.annotate(
            e["backbone"],
            (e["latency_ms"], e["mean"]),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
            zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
        )
    pareto = sorted((e for e in confirmed if e["pareto"]), key=lambda e: e["latency_ms"])
    if len(pareto) > 1:
        ax.step(
            [e["latency_ms"] for e in pareto],
            [e["mean"] for e in pareto],
            where="post",
            color="black",
            lw=1.2,
            zorder=3,
            label="Pareto front",
        )
