"""What a trial's W&B run carries and how it charts: its config (the trial's whole TrainConfig, base + sampled,
as it trains; Ray would log only the sampled values), its tags (sweep, arm, student backbone, job type), the
W&B Sweep it joins and its metrics' definitions. No Ray here: tune/sweep/ray_compat/wandb_actor.py hands
these to Ray's W&B logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config import TrainConfig
from tune.objective import Objective
from tune.sampling import arm_label, run_sample, trial_config
from tune.tracking.network import run_settings
from tune.tracking.run_metrics import define_epoch_metrics
from tune.tracking.wandb_sweep import join_sweep


@dataclass
class TrialRunSettings:
    """The W&B run settings of one sweep's trials (Ray pickles them to its logging processes)."""

    sweep: str
    base: TrainConfig
    objective: Objective = field(default_factory=Objective)
    wandb_sweep_id: str | None = None
    timeout_s: float | None = None  # bounds each run's start and end ($POLYP_KD_TUNE_WANDB_TIMEOUT_S)

    def init_kwargs(self, trial_params: dict[str, Any], init_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`init_kwargs` (Ray's `wandb.init` keyword arguments for a trial whose Ray config is `trial_params`)
        with the run's config, tags, W&B Sweep and network bounds."""
        cfg = trial_config(trial_params, self.base)
        sampled, _ = run_sample(trial_params)
        arm = arm_label(sampled.arm, cfg.mode)  # what its runs train: `kd`, `baseline` or `teacher`
        kwargs = {
            **init_kwargs,
            "config": {**cfg.to_dict(), "arm": arm, "sweep": self.sweep, "trial_params": sampled.params},
            "tags": [self.sweep, f"arm:{arm}", cfg.student_backbone, init_kwargs.get("job_type", "trial")],
        }
        if self.timeout_s is not None:
            kwargs["settings"] = {**(init_kwargs.get("settings") or {}), **run_settings(self.timeout_s)}
        return join_sweep(kwargs, self.wandb_sweep_id)

    def run_started(self, run: Any) -> None:
        """Called on each run right after `wandb.init`, before its first `log`."""
        define_epoch_metrics(run, self.objective)
