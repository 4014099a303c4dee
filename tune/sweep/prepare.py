"""Stage 1 of a sweep, prepare: data checked (demo data generated where the space asks), trials' GPU
requests decided, a teacher made sure of, the base TrainConfig recorded, and one node's caches warmed.

GPUs: each trial, the teacher task and the warm-up ask for the space's `resources.gpu` on a cluster (whose
GPU workers may not exist yet: an autoscaler adds them for exactly these requests) or on a GPU machine.
Teacher: the space's checkpoint (a path, or a URI in shared storage), or one trained by a Ray task into
`<sweep>/teacher/best.pt`; every distillation trial receives that same location and no trial trains one.
Caches: the decoded training images and the teacher's logits are node-local. The warm-up builds them on
the node it runs on; every other node builds them in its first trial, once: concurrent first trials on a
node wait on the builder's file lock (core/cache.py), then map them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import ray
import torch

from core.cache import training_caches
from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.data import CheckReport, PolypData, discover, mask_foreground
from core.errors import UserError
from core.files import default_cache_dir
from core.models import require_teacher_path, resolve_device, teacher_split
from core.split import check_teacher_split, training_split
from core.synthetic import write_demo_dataset
from core.train import Trainer, run_training
from tune.cluster import storage
from tune.records import SWEEP_FILE, TEACHER_DIRNAME, write_sweep_record
from tune.space import SearchSpace, fingerprint
from tune.sweep.runtime import SweepRun
from tune.sweep.waits import task_result


def prepare_data(space: SearchSpace) -> PolypData:
    """Make data_root and val_groups absolute (trials run in another working directory), create demo data if the
    space asks for it and it is missing; then scan it, so bad data fails before Ray starts. Returns what it
    found, for the checks after it (a scan reads every file's header: once per sweep start is enough)."""
    root = Path(space.base.get("data_root", "dataset")).expanduser().resolve()
    space.base["data_root"] = str(root)
    if space.base.get("val_groups"):
        space.base["val_groups"] = str(Path(space.base["val_groups"]).expanduser().resolve())
    if not root.exists() and space.demo_data is not None:
        d = space.demo_data
        print(
            f"generating SYNTHETIC demo data (not real polyps) at {root}: {d.train} train, {d.test} per "
            f"test set, {d.size}px, seed {d.seed}"
        )
        write_demo_dataset(root, size=d.size, n_train=d.train, n_test=d.test, seed=d.seed)
    data = discover(root)
    print(data.describe())
    check_foreground(space, data)
    return data


def check_foreground(space: SearchSpace, data: PolypData) -> None:
    """Masks with no polyp anywhere in training, or in the validation split, stop the sweep here: empty on
    empty scores Dice 1, and a sweep would crown a model that finds nothing. An implausible fraction warns."""
    split = training_split(space.base_config(), data.train)
    for part, pairs in (("training", split.train), ("validation", split.val)):
        fraction, empty = mask_foreground(pairs)
        if fraction == 0:
            raise UserError(
                f"{data.root / 'TrainDataset' / 'masks'}: all {len(pairs)} {part} masks are empty (no "
                f"polyp pixel); masks must be polyp white on black (check with `python -m core.data "
                f"check --data-root {data.root}`)"
            )
        if part == "training":
            report = CheckReport(0, fraction, empty)
            print(f"training masks: {100 * fraction:.1f} % polyp pixels, {empty} of {len(pairs)} empty")
            if report.warning():
                print(report.warning(), file=sys.stderr)


def check_teacher_setting(space: SearchSpace, data: PolypData | None = None) -> None:
    """A teacher checkpoint named in the space must exist and must not have seen the students' validation
    images; checked before Ray starts (`data`: the space's data, scanned already)."""
    path = space.teacher.checkpoint
    if not space.distillation or path is None:
        return
    if storage.is_uri(path):  # in shared storage (where ./launch.sh sweep uploads a local teacher): check a copy
        path = storage.local_copy(path)
    if not Path(path).exists():
        raise UserError(
            f"{space.source}: teacher.checkpoint {path} does not exist; train one with "
            f"`python -m tune.search --space teacher.yaml` then `python -m tune.best export "
            f"--sweep results/teacher` (writes results/teacher/export), or set "
            f"`teacher: {{checkpoint: null}}` to train one in this sweep"
        )
    path = require_teacher_path(str(Path(path).resolve()))
    cfg = space.base_config()
    train = (data or discover(cfg.data_root)).train
    check_teacher_split(teacher_split(path), training_split(cfg, train).record, path)


def prepare(run: SweepRun) -> TrainConfig:
    """The base TrainConfig of every trial (teacher resolved), recorded in sweep.json, with caches warm on
    this node."""
    space, paths = run.space, run.paths
    base = space.base_config()
    if space.distillation:
        shared = storage.join(paths.shared, TEACHER_DIRNAME) if paths.remote else None
        base = base.replace(teacher_checkpoint=ensure_teacher(space, paths.sweep_dir, run.use_gpu, shared=shared))
    paths.sweep_dir.mkdir(parents=True, exist_ok=True)
    record = write_sweep_record(paths.sweep_dir, space.name, fingerprint(space.to_dict()), paths.shared, base.to_dict())
    if paths.remote:
        storage.upload(record, storage.join(paths.shared, SWEEP_FILE))
    warm_caches(space, base, run.use_gpu)
    return base


def requests_gpu(space: SearchSpace, address: str | None) -> bool:
    """Whether trials, the teacher task and the warm-up ask for `resources.gpu`: on a cluster (`address`,
    from --address or RAY_ADDRESS) and on a machine with a GPU. Deciding from the GPUs a cluster has when
    the driver starts would ask for none on an autoscaling cluster that starts without GPU workers: the
    autoscaler would add CPU capacity only, and trials on a multi-GPU node would all land on cuda:0."""
    if space.resources.gpu == 0:
        return False
    if address:
        if ray.cluster_resources().get("GPU", 0) == 0:
            print(
                f"cluster has no GPU yet: each trial asks for {space.resources.gpu:g} GPU, for which an "
                f"autoscaling cluster adds GPU workers (a cluster that cannot: set resources.gpu: 0)"
            )
        return True
    if torch.cuda.is_available():
        return True
    print(
        f"no GPU on this machine: trials run on CPU and ask for none (resources.gpu {space.resources.gpu:g} "
        f"applies on a cluster or a GPU machine)"
    )
    return False


def _placement() -> dict[str, Any]:
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "assigned": context.get_assigned_resources()}


def _describe(placement: dict[str, Any]) -> str:
    assigned = ", ".join(f"{k} {v:g}" for k, v in sorted(placement["assigned"].items()))
    return f"node {placement['node_id']} ({assigned})"


def _train_teacher(cfg: TrainConfig, resume_from: str | None, shared: str | None) -> tuple[str, dict[str, Any]]:
    trainer = Trainer.resume(resume_from) if resume_from else Trainer(cfg)
    run_dir = run_training(trainer, log=lambda line: print(f"[teacher] {line}", flush=True))
    if shared:
        # This task may run on any node: the teacher goes where every trial can read it.
        storage.upload(run_dir / "best.pt", storage.join(shared, "best.pt"))
        return storage.join(shared, "best.pt"), _placement()
    return str(run_dir / "best.pt"), _placement()


def _warm_caches(cfg: TrainConfig) -> dict[str, Any]:
    if cfg.teacher_checkpoint:
        cfg = cfg.replace(
            teacher_checkpoint=storage.local_copy(cfg.teacher_checkpoint, cfg.cache_dir or default_cache_dir())
        )
    training_caches(cfg, discover(cfg.data_root).train, resolve_device(cfg.device))
    return _placement()


def warm_caches(space: SearchSpace, cfg: TrainConfig, use_gpu: bool) -> None:
    """Decode the training images and compute the teacher's logits once on one node, before trials start
    (on a single machine: the only node). Other nodes build theirs in their first trial."""
    what = "decoded images" + (
        " and teacher logits" if cfg.mode == "distillation" and cfg.teacher_logits == "cached" else ""
    )
    print(f"caches: preparing {what} at {cfg.img_size}px")
    gpus = space.resources.gpu if use_gpu else 0
    task = ray.remote(num_cpus=space.resources.cpu, num_gpus=gpus, max_retries=0)(_warm_caches)
    placement = task_result(
        task.remote(cfg),
        "the cache warm-up task",
        {"CPU": space.resources.cpu, "GPU": gpus},
        "lower base.img_size (the caches hold every training image at it)",
    )
    print(f"caches: warm on {_describe(placement)}; a node added later builds its own in its first trial")


def ensure_teacher(space: SearchSpace, sweep_dir: Path, use_gpu: bool, shared: str | None = None) -> str:
    """Location of a trained teacher checkpoint for this sweep (trained now if it does not exist yet).

    With `shared` (a URI every node reaches) the teacher is uploaded there and that URI is returned."""
    if space.teacher.checkpoint and storage.is_uri(space.teacher.checkpoint):
        # Already where every node reaches it (./launch.sh sweep uploads a local teacher there); tune.search
        # checked a local copy of it. Trials fetch it once per node, keyed by its size and mtime.
        print(f"teacher: using {space.teacher.checkpoint}")
        return space.teacher.checkpoint
    if space.teacher.checkpoint:
        # tune.search checked that it exists and was trained on the students' split.
        path = Path(require_teacher_path(str(Path(space.teacher.checkpoint).resolve())))  # a folder names its file
        print(f"teacher: using {path}")
        if shared:
            storage.upload(path, storage.join(shared, "best.pt"))
            return storage.join(shared, "best.pt")
        return str(path)
    cfg = space.teacher_config().replace(save_dir=str(sweep_dir), experiment_name=TEACHER_DIRNAME)
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
    print(
        f"teacher: {'resuming' if resume_from else 'training'} UNet++/{cfg.teacher_backbone} for {cfg.epochs} epochs "
        f"at {cfg.img_size}px -> {stored}"
    )
    # Nothing else runs during this stage: give it the CPUs the concurrent trials will share, as many as one
    # node has now; on an autoscaling cluster with no worker yet, one trial's share, which any worker type
    # that fits a trial offers (a larger request could start a bigger node type just for the teacher).
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
    share = space.resources.cpu
    cpus = min(share * space.search.max_concurrent_trials, largest) if largest >= share else share
    gpus = space.resources.gpu if use_gpu else 0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_train_teacher)
    trained, placement = task_result(
        task.remote(cfg, resume_from, shared),
        "the teacher training task",
        {"CPU": cpus, "GPU": gpus},
        f"lower teacher.train's batch_size or img_size in {space.source}",
    )
    print(f"teacher: trained on {_describe(placement)}")
    return trained
