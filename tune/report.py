"""The sweep's local report: leaderboard.csv, best.json and pictures under results/<sweep>/.

Everything here reads Ray's ResultGrid and writes plain files a person can open without this tool.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.data import discover  # noqa: E402
from core.evaluate import evaluate_test_sets  # noqa: E402
from core.models import load_model, resolve_device  # noqa: E402
from tune.recovery import CHECKPOINT_FILE  # noqa: E402
from tune.space import SearchSpace  # noqa: E402

LEADERBOARD_COLUMNS = ["rank", "trial_id", "status", "epochs", "stopped_early", "best_val_dice",
                       "best_val_iou", "best_epoch", "last_val_dice"]


def leaderboard(results, space: SearchSpace) -> list[dict[str, Any]]:
    """One row per trial, best validation Dice first; errored trials last with their error."""
    rows = []
    for result in results:
        m = result.metrics or {}
        # Our own epoch count, as ASHA's: Ray's iteration counter lags behind it for a trial whose
        # checkpoint tune/recovery.py replaced with a newer one.
        epochs = int(m.get("epoch", 0) or 0)
        error = result.error
        row = {
            "trial_id": m.get("trial_id") or Path(result.path).name,
            "status": "ERROR" if error else "DONE",
            "epochs": epochs,
            "stopped_early": bool(not error and epochs < space.asha.max_t),
            "best_val_dice": m.get("best_val_dice", math.nan),
            "best_val_iou": m.get("best_val_iou", math.nan),
            "best_epoch": m.get("best_epoch", ""),
            "last_val_dice": m.get("val_dice", math.nan),
            **{f"param:{k}": v for k, v in sorted(result.config.items())},
            "error": _first_line(error) if error else "",
            "checkpoint": result.checkpoint.path if result.checkpoint else "",
            "trial_dir": result.path,
        }
        rows.append(row)
    sign = -1 if space.objective.mode == "max" else 1
    metric = space.objective.metric

    def order(row):
        value = row.get(metric, row["best_val_dice"])
        return (row["status"] != "DONE", math.isnan(value), sign * value if not math.isnan(value) else 0)

    rows.sort(key=order)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def write_leaderboard(rows: list[dict[str, Any]], path: Path) -> None:
    params = sorted({k for row in rows for k in row if k.startswith("param:")})
    columns = LEADERBOARD_COLUMNS + params + ["error", "checkpoint", "trial_dir"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def format_leaderboard(rows: list[dict[str, Any]], limit: int = 20) -> str:
    params = sorted({k for row in rows for k in row if k.startswith("param:")})
    header = ["#", "trial", "status", "ep", "val dice", "val iou"] + [p[6:] for p in params]
    lines = [header]
    for row in rows[:limit]:
        status = row["status"] + ("*" if row["stopped_early"] in (True, "True") else "")
        lines.append([str(row["rank"]), str(row["trial_id"]), status, str(row["epochs"]),
                      _fmt(row["best_val_dice"]), _fmt(row["best_val_iou"])]
                     + [_fmt(row.get(p, "")) for p in params])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)
    more = f"\n... {len(rows) - limit} more in leaderboard.csv" if len(rows) > limit else ""
    return text + more + "\n(* = stopped early by ASHA)"


def evaluate_winner(row: dict[str, Any], data_root: str | None = None) -> dict[str, Any]:
    """Score the winning trial's best-validation weights on every test set present."""
    model, state = load_model(Path(row["checkpoint"]) / CHECKPOINT_FILE)
    cfg = state["config"]
    data = discover(data_root or cfg["data_root"])
    report = evaluate_test_sets(model, data, cfg["img_size"], cfg["batch_size"], resolve_device("auto"))
    return {"config": cfg, "architecture": state["architecture"], "test": report,
            "checkpoint": str(Path(row["checkpoint"]) / CHECKPOINT_FILE), "synthetic_data": data.synthetic}


def write_best(row: dict[str, Any], winner: dict[str, Any], space: SearchSpace, path: Path) -> dict[str, Any]:
    best = {
        "sweep": space.name,
        "trial_id": row["trial_id"],
        "objective": {"metric": space.objective.metric, "mode": space.objective.mode},
        "best_val_dice": row["best_val_dice"],
        "best_val_iou": row["best_val_iou"],
        "best_epoch": row["best_epoch"],
        "epochs_trained": row["epochs"],
        "params": {k[6:]: v for k, v in row.items() if k.startswith("param:")},
        **winner,
    }
    path.write_text(json.dumps(best, indent=2))
    return best


def plot_curves(results, path: Path) -> None:
    """Validation Dice per epoch of every trial: where ASHA cut trials is visible at a glance."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        df = result.metrics_dataframe
        if df is None or df.empty or "val_dice" not in df:
            continue
        ax.plot(df["epoch"], df["val_dice"], marker="o", ms=3, lw=1,
                label=str((result.metrics or {}).get("trial_id", "")))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.set_title("trials (curves that end early were stopped by ASHA)")
    ax.grid(alpha=0.3)
    if len(ax.lines) <= 12:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_parallel_coordinates(rows: list[dict[str, Any]], path: Path) -> None:
    """One line per finished trial across its hyperparameters, coloured by best validation Dice."""
    done = [r for r in rows if r["status"] == "DONE" and not math.isnan(r["best_val_dice"])]
    params = sorted({k for r in done for k in r if k.startswith("param:")})
    if not done or not params:
        return
    axes_values, labels = [], []
    for p in params:
        raw = [r.get(p) for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        if numeric:
            lo, hi = min(raw), max(raw)
            log = lo > 0 and hi / lo > 50
            vals = [math.log10(v) for v in raw] if log else list(raw)
            lo, hi = min(vals), max(vals)
            axes_values.append([(v - lo) / (hi - lo) if hi > lo else 0.5 for v in vals])
            labels.append(p[6:] + (" (log)" if log else ""))
        else:
            cats = sorted({str(v) for v in raw})
            axes_values.append([(cats.index(str(v)) + 0.5) / len(cats) for v in raw])
            labels.append(p[6:] + "\n" + " | ".join(cats))
    dice = [r["best_val_dice"] for r in done]
    axes_values.append([(d - min(dice)) / (max(dice) - min(dice)) if max(dice) > min(dice) else 0.5 for d in dice])
    labels.append(f"val Dice\n{min(dice):.3f}..{max(dice):.3f}")
    fig, ax = plt.subplots(figsize=(2.2 * len(labels) + 1, 4.5))
    cmap = plt.get_cmap("viridis")
    for i in sorted(range(len(done)), key=lambda i: dice[i]):
        ax.plot(range(len(labels)), [a[i] for a in axes_values], color=cmap(axes_values[-1][i]), lw=1.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks([])
    for x in range(len(labels)):
        ax.axvline(x, color="grey", lw=0.6)
    ax.set_title("hyperparameters of finished trials (yellow = best validation Dice)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}")
    return str(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    # Ray wraps the trial's exception; its last line is the original "Type: message".
    return text[-1] if text else error.__class__.__name__
