"""The sweep's local report: the leaderboard (a typed row per trial), best.json and pictures under
results/<sweep>/. Paths written here are relative to the sweep folder, so a copied sweep still exports.
"""
from __future__ import annotations

import csv
import json
import math
import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.checkpoint import best_epoch  # noqa: E402
from core.data import discover  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.evaluate import evaluate_test_sets  # noqa: E402
from core.models import load_model, resolve_device  # noqa: E402
from tune.ray_compat import TrialState  # noqa: E402
from tune.recovery import CHECKPOINT_FILE  # noqa: E402
from tune.space import param_name  # noqa: E402

ENDS = ("finished", "stopped by ASHA", "interrupted", "errored", "diverged")


@dataclass
class TrialRow:
    """One search trial as the leaderboard shows it."""

    trial_id: str
    arm: str                          # kd | baseline
    end: str                          # one of ENDS
    epochs: int
    objective: float                  # the space's objective metric (NaN: never reported)
    best_val_dice: float
    best_val_iou: float
    best_epoch: int
    last_val_dice: float
    params: dict[str, Any]            # by config key (branch prefixes removed)
    sampled: dict[str, Any]           # exactly what Optuna sampled: what confirmation retrains
    node_id: str = ""
    gpus_assigned: float = 0.0
    device: str = ""
    error: str = ""
    checkpoint: str = ""              # relative to the sweep folder where local
    trial_dir: str = ""
    rank: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.end in ("finished", "stopped by ASHA") and not math.isnan(self.objective)


def leaderboard(trials: list[TrialState], metric: str, maximize: bool, max_t: int,
                sweep_dir: Path | None = None) -> list[TrialRow]:
    """One row per trial, ranked by exactly the objective metric; unusable trials last."""
    rows = []
    for t in trials:
        m = t.last_result
        if "epoch" in m and metric not in m:
            raise UserError(f"objective.metric '{metric}': trial {t.trial_id} never reported it (it reports "
                            f"{', '.join(sorted(k for k in m if 'val' in k))}); fix objective.metric in the space")
        epochs = int(m.get("epoch", 0) or 0)
        if t.status == "ERROR":
            end = "errored"
        elif m.get("diverged"):
            end = "diverged"
        elif t.status != "TERMINATED":
            end = "interrupted"
        else:
            end = "finished" if epochs >= max_t else "stopped by ASHA"
        sampled = {k: v for k, v in t.config.items() if k != "arm"}
        rows.append(TrialRow(
            trial_id=t.trial_id, arm=t.config.get("arm", "kd"), end=end, epochs=epochs,
            objective=float(m.get(metric, math.nan)), best_val_dice=float(m.get("best_val_dice", math.nan)),
            best_val_iou=float(m.get("best_val_iou", math.nan)), best_epoch=int(m.get("best_epoch", 0) or 0),
            last_val_dice=float(m.get("val_dice", math.nan)),
            params={param_name(k): v for k, v in sorted(sampled.items())}, sampled=sampled,
            node_id=str(m.get("node_id", "")), gpus_assigned=float(m.get("gpus_assigned", 0.0) or 0.0),
            device=str(m.get("device", "")), error=t.error or str(m.get("error", "")),
            checkpoint=relative(t.checkpoint_path, sweep_dir), trial_dir=relative(t.path, sweep_dir)))
    sign = -1 if maximize else 1
    rows.sort(key=lambda r: (not r.usable, sign * r.objective if r.usable else 0, r.trial_id))
    for rank, row in enumerate(rows, 1):
        row.rank = rank
    return rows


def relative(path: str | None, sweep_dir: Path | None) -> str:
    """`path` relative to the sweep folder when it lies inside it; unchanged otherwise (e.g. a URI)."""
    if not path:
        return ""
    if sweep_dir is not None and "://" not in path:
        try:
            return Path(path).resolve().relative_to(sweep_dir.resolve()).as_posix()
        except ValueError:
            pass
    return path


def resolve(path: str, sweep_dir: Path) -> str:
    """Inverse of `relative`: a path recorded in the sweep folder, made usable from here."""
    if not path or "://" in path or posixpath.isabs(path):
        return path
    return str(sweep_dir / path)


CSV_COLUMNS = ["rank", "trial_id", "arm", "end", "epochs", "objective", "best_val_dice", "best_val_iou",
               "best_epoch", "last_val_dice", "node_id", "gpus_assigned", "device"]


def write_leaderboard(rows: list[TrialRow], path: Path) -> None:
    params = sorted({k for row in rows for k in row.params})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS + [f"param:{p}" for p in params] + ["error", "checkpoint", "trial_dir"])
        for row in rows:
            values = asdict(row)
            writer.writerow([values[c] for c in CSV_COLUMNS] + [row.params.get(p, "") for p in params]
                            + [row.error, row.checkpoint, row.trial_dir])


def format_leaderboard(rows: list[dict[str, Any]] | list[TrialRow], limit: int = 20) -> str:
    """A console table of leaderboard rows (TrialRows, or dicts read back from leaderboard.csv)."""
    dicts = [_row_dict(r) for r in rows]
    params = sorted({k for row in dicts for k in row if k.startswith("param:")})
    header = ["#", "trial", "arm", "end", "ep", "objective", "val dice"] + [p[6:] for p in params]
    lines = [header]
    for row in dicts[:limit]:
        lines.append([str(row["rank"]), str(row["trial_id"]), str(row["arm"]), str(row["end"]), str(row["epochs"]),
                      _fmt(row["objective"]), _fmt(row["best_val_dice"])] + [_fmt(row.get(p, "")) for p in params])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
    more = f"\n... {len(dicts) - limit} more in leaderboard.csv" if len(dicts) > limit else ""
    return text + more


def _row_dict(row: dict[str, Any] | TrialRow) -> dict[str, Any]:
    if isinstance(row, dict):
        return row
    out = asdict(row)
    out.update({f"param:{k}": v for k, v in row.params.items()})
    return out


def evaluate_checkpoint(checkpoint: str, data_root: str | None = None) -> dict[str, Any]:
    """Score a trial checkpoint's best-validation weights on every test set present; with its best epoch
    (from the checkpoint's history), as best.json records them."""
    model, state = load_model(Path(checkpoint) / CHECKPOINT_FILE)
    cfg = state["config"]
    data = discover(data_root or cfg["data_root"])
    report = evaluate_test_sets(model, data, cfg["img_size"], cfg["batch_size"], resolve_device("auto"))
    best = best_epoch(state["history"])
    return {"config": cfg, "architecture": state["architecture"], "test": report, "synthetic_data": data.synthetic,
            "best_val_dice": best["val_dice"], "best_val_iou": best["val_iou"], "best_epoch": best["epoch"],
            "epochs_trained": state["epoch"]}


def write_json(data: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot_curves(curves: dict[str, tuple[list[int], list[float], str]], path: Path, title: str) -> None:
    """Validation Dice per epoch of every trial ({trial: (epochs, dice, arm)}): where ASHA cut trials, and
    how the control arm compares, is visible at a glance."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for trial_id, (epochs, dice, arm) in curves.items():
        ax.plot(epochs, dice, marker="o", ms=3, lw=1, ls="--" if arm == "baseline" else "-",
                label=f"{trial_id} ({arm})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if 0 < len(ax.lines) <= 14:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_parallel_coordinates(rows: list[TrialRow], path: Path) -> None:
    """One line per usable KD trial across its hyperparameters, coloured by the objective."""
    done = [r for r in rows if r.usable and r.arm == "kd"]
    params = sorted({k for r in done for k in r.params})
    if not done or not params:
        return
    axes_values, labels = [], []
    for p in params:
        raw = [r.params.get(p) for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None)
        present = [v for v in raw if v is not None]
        if numeric and present:
            lo, hi = min(present), max(present)
            log = lo > 0 and hi / lo > 50
            vals = [None if v is None else (math.log10(v) if log else v) for v in raw]
            known = [v for v in vals if v is not None]
            lo, hi = min(known), max(known)
            axes_values.append([-0.05 if v is None else ((v - lo) / (hi - lo) if hi > lo else 0.5) for v in vals])
            labels.append(p + (" (log)" if log else "") + f"\n{_fmt(min(present))}..{_fmt(max(present))}")
        else:
            cats = sorted({str(v) for v in raw})
            axes_values.append([(cats.index(str(v)) + 0.5) / len(cats) for v in raw])
            labels.append(p + "\n" + " | ".join(cats))
    score = [r.objective for r in done]
    lo, hi = min(score), max(score)
    axes_values.append([(d - lo) / (hi - lo) if hi > lo else 0.5 for d in score])
    labels.append(f"objective\n{lo:.3f}..{hi:.3f}")
    fig, ax = plt.subplots(figsize=(2.2 * len(labels) + 1, 4.5))
    cmap = plt.get_cmap("viridis")
    for i in sorted(range(len(done)), key=lambda i: score[i]):
        ax.plot(range(len(labels)), [a[i] for a in axes_values], color=cmap(axes_values[-1][i]), lw=1.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks([])
    for x in range(len(labels)):
        ax.axvline(x, color="grey", lw=0.6)
    ax.set_title("KD trials' hyperparameters (yellow = best objective; below an axis = not sampled)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}")
    return str(value)


def main(argv: list[str] | None = None) -> None:
    """`python -m tune.report --sweep DIR`: rebuild DIR/report.html (the page lives in tune/html_report.py)."""
    from tune.html_report import main as write_page

    write_page(argv)


if __name__ == "__main__":
    main()
