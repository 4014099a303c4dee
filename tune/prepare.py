"""What a sweep does once before its trials: make sure there is a teacher, then warm the node's caches.

Teacher: the space's checkpoint, or one trained by a Ray task (on a GPU where there is one) into
`<sweep>/teacher/best.pt`; every distillation trial receives that same path and no trial trains one.
Caches: the decoded training images and the teacher's logits, built once so that trials only map them.
"""
from __future__ import annotations

from pathlib import Path

import ray

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.models import require_teacher_path
from core.train import Trainer, run_training
from tune import storage
from tune.space import SearchSpace


def _train_teacher(cfg: TrainConfig, resume_from: str | None, shared: str | None) -> str:
    trainer = Trainer.resume(resume_from) if resume_from else Trainer(cfg)
    run_dir = run_training(trainer, log=lambda line: print(f"[teacher] {line}", flush=True))
    if shared:
        # This task may run on any node: the teacher goes where every trial can read it.
        storage.upload(run_dir / "best.pt", storage.join(shared, "best.pt"))
        return storage.join(shared, "best.pt")
    return str(run_dir / "best.pt")


def _warm_caches(cfg: TrainConfig) -> None:
    from core.cache import default_cache_dir, training_caches
    from core.data import discover
    from core.models import resolve_device

    if cfg.teacher_checkpoint:
        cfg = cfg.replace(teacher_checkpoint=storage.local_copy(cfg.teacher_checkpoint,
                                                                cfg.cache_dir or default_cache_dir()))
    training_caches(cfg, discover(cfg.data_root).train, resolve_device(cfg.device))


def warm_caches(space: SearchSpace, cfg: TrainConfig, use_gpu: bool) -> None:
    """Decode the training images and compute the teacher's logits once, before trials start."""
    what = "decoded images" + (" and teacher logits" if cfg.mode == "distillation"
                               and cfg.teacher_logits == "cached" else "")
    print(f"caches: preparing {what} at {cfg.img_size}px")
    gpus = space.resources.gpu if use_gpu else 0
    ray.get(ray.remote(num_cpus=space.resources.cpu, num_gpus=gpus, max_retries=0)(_warm_caches).remote(cfg))


def ensure_teacher(space: SearchSpace, sweep_dir: Path, use_gpu: bool, shared: str | None = None) -> str:
    """Location of a trained teacher checkpoint for this sweep (trained now if it does not exist yet).

    With `shared` (a URI every node reaches) the teacher is uploaded there and that URI is returned."""
    if space.teacher.checkpoint:
        # tune.search checked that it exists and was trained on the students' split.
        path = Path(require_teacher_path(str(Path(space.teacher.checkpoint).resolve())))  # a folder names its file
        print(f"teacher: using {path}")
        if shared:
            storage.upload(path, storage.join(shared, "best.pt"))
            return storage.join(shared, "best.pt")
        return str(path)
    cfg = space.teacher_config().replace(save_dir=str(sweep_dir), experiment_name="teacher")
    if shared and storage.exists(storage.join(shared, "best.pt")):
        print(f"teacher: using this sweep's {storage.join(shared, 'best.pt')}")
        return storage.join(shared, "best.pt")
    stored, last = cfg.run_dir / "best.pt", cfg.run_dir / "last.pt"
    resume_from = None
    if last.is_file():
        # An interrupted sweep may have stopped mid-teacher: finish it rather than trust a partial one.
        if load_checkpoint(last, mmap=True)["epoch"] >= cfg.epochs and not shared:
            print(f"teacher: using this sweep's {stored}")
            return str(stored)
        resume_from = str(last)
    print(f"teacher: {'resuming' if resume_from else 'training'} UNet++/{cfg.teacher_backbone} for {cfg.epochs} epochs "
          f"at {cfg.img_size}px -> {stored}")
    # Nothing else runs during this stage: give it the CPUs the concurrent trials will share.
    cpus = min(space.resources.cpu * space.search.max_concurrent_trials, ray.cluster_resources().get("CPU", 1))
    gpus = space.resources.gpu if use_gpu else 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_train_teacher)
    return ray.get(task.remote(cfg, resume_from, shared))
