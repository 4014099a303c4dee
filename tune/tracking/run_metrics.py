"""How a trial's W&B run charts: every per-epoch key against `epoch`, and the objective summarised by its best
value (`<metric>.<max|min>` in the run's summary, which the W&B Report and Sweep read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tune.objective import Objective

if TYPE_CHECKING:
    import wandb


def define_epoch_metrics(run: wandb.Run, objective: Objective) -> None:
    """Ray logs at its iteration counter, which lags the epoch of a trial restored from a checkpoint: W&B
    charts against the logged `epoch` instead; the summary keeps the objective's best, not its last value."""
    run.define_metric("epoch")
    run.define_metric("*", step_metric="epoch")
    run.define_metric(objective.metric, step_metric="epoch", summary=objective.mode)


def objective_summary_key(objective: Objective) -> str:
    """The objective in a trial run's summary: wandb keeps `{metric: {mode: value}}`, the key `metric.mode`."""
    return f"{objective.metric}.{objective.mode}"
