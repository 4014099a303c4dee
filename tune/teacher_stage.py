"""The sweep's teacher stage: use the space's teacher checkpoint, or train one once before any trial.

Training runs as one Ray task with a trial's resources (so it lands on a GPU where there is one) and
writes `<sweep>/teacher/best.pt`; every distillation trial then receives that same path.
"""
from __future__ import annotations

from pathlib import Path

import ray
import torch

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.models import load_frozen_teacher
from core.train import Trainer, run_training
from tune.space import SearchSpace


def _train_teacher(cfg: TrainConfig, resume_from: str | None) -> str:
    trainer = Trainer.resume(resume_from) if resume_from else Trainer(cfg)
    run_dir = run_training(trainer, log=lambda line: print(f"[teacher] {line}", flush=True))
    return str(run_dir / "best.pt")


def ensure_teacher(space: SearchSpace, sweep_dir: Path, use_gpu: bool) -> Path:
    """Path of a trained teacher checkpoint for this sweep (trained now if it does not exist yet)."""
    if space.teacher.checkpoint and Path(space.teacher.checkpoint).is_file():
        path = Path(space.teacher.checkpoint).resolve()
        load_frozen_teacher(str(path), device=torch.device("cpu"))  # fails early on a wrong checkpoint
        print(f"teacher: using {path}")
        return path
    cfg = space.teacher_config().replace(save_dir=str(sweep_dir), experiment_name="teacher")
    stored, last = cfg.run_dir / "best.pt", cfg.run_dir / "last.pt"
    resume_from = None
    if last.is_file():
        # An interrupted sweep may have stopped mid-teacher: finish it rather than trust a partial one.
        if load_checkpoint(last)["epoch"] >= cfg.epochs:
            print(f"teacher: using this sweep's {stored}")
            return stored
        resume_from = str(last)
    if space.teacher.checkpoint:
        print(f"teacher: {space.teacher.checkpoint} does not exist; training one for this sweep")
    print(f"teacher: {'resuming' if resume_from else 'training'} UNet++/ResNet50 for {cfg.epochs} epochs "
          f"at {cfg.img_size}px -> {stored}")
    # Nothing else runs during this stage: give it the CPUs the concurrent trials will share.
    cpus = min(space.resources.cpu * space.search.max_concurrent_trials, ray.cluster_resources().get("CPU", 1))
    gpus = space.resources.gpu if use_gpu else 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_train_teacher)
    return Path(ray.get(task.remote(cfg, resume_from)))
