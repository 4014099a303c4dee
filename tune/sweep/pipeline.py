"""A sweep from start to end: one driver per sweep (a lock), a local Ray or a cluster, then the stages
prepare → search → select → verdict → finish, each resumable; Ctrl-C or SIGTERM stops it resumably.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch
import yaml

from core.data import PolypData, discover
from core.data_fingerprint import data_changes, data_files
from core.errors import UserError
from core.files import write_file_atomic
from core.latency import LatencyRecord
from tune.cluster import storage
from tune.records import (
    BEST_FILE,
    CONFIRM_DIRNAME,
    DATA_FILE,
    RAY_LOG_FILE,
    SEARCH_FILE,
    SPACE_FILE,
    SWEEP_FILE,
    VERDICT_DIRNAME,
    WANDB_DIRNAME,
    SweepPaths,
    logged_wandb_runs,
    read_bound_space,
    read_json,
    read_latencies,
    read_sweep_record,
    record_wandb_sweep,
    sweep_lock,
    write_json,
    write_sweep_record,
)
from tune.space import SearchSpace, check_resumable, fingerprint
from tune.sweep.console import ray_output
from tune.sweep.finish import finish
from tune.sweep.latency import check_budget, measure_students, write_latencies
from tune.sweep.prepare import check_teacher_setting, prepare, requests_gpu
from tune.sweep.ray_compat.conventions import AUTH_TOKEN_FILE, AUTH_TOKEN_PATH_ENV
from tune.sweep.ray_compat.local_ray import loopback_only
from tune.sweep.runtime import SweepInterrupted, SweepRun
from tune.sweep.search import completed_search, search
from tune.sweep.select import select
from tune.sweep.signals import StopSignals
from tune.sweep.state_files import repair_journal
from tune.sweep.study import stored_sweep_name
from tune.sweep.verdict import verdict_stage
from tune.sweep.waits import task_result
from tune.tracking import mode as wandb_mode
from tune.tracking.network import wandb_timeout_s
from tune.tracking.wandb_sweep import register_sweep, write_sweep_yaml


def run_sweep(
    space: SearchSpace,
    storage_root: str,
    resume: bool,
    address: str | None,
    num_cpus: int | None,
    local_results: Path = Path("results"),
    extend: bool = False,
    signals: StopSignals | None = None,
    verbose: bool = False,
    data: PolypData | None = None,
) -> dict:
    """`storage_root` is a local folder or a URI shared by every node; with a URI the sweep's own files
    are also kept in <local_results>/<sweep>/ on this machine and copied to the storage at the end.
    `extend`: with `resume`, the space may raise search.num_samples and the extra trials run. Ray's output
    goes to <sweep>/ray.log; `verbose`: to the console as well. `data`: the space's data as prepare_data
    scanned it (scanned here when not given)."""
    remote = storage.is_uri(storage_root)
    shared = storage.join(storage_root, space.name)  # every node reaches this
    paths = SweepPaths((local_results / space.name).resolve() if remote else Path(shared), shared, remote)
    address = address or os.environ.get("RAY_ADDRESS")
    with sweep_lock(paths.sweep_dir):
        # Mistakes in the setup stop the sweep here, before its folder is written or anything trains.
        check_folder(paths, resume)
        data = data or discover(space.base["data_root"])
        check_teacher_setting(space, data)
        target = wandb_mode.resolve_mode(space.wandb.mode, space.wandb.entity)
        if target.on:
            wandb_timeout_s()  # $POLYP_KD_TUNE_WANDB_TIMEOUT_S, checked before anything runs
        students = student_latencies(space, paths, resume, address)  # a CPU target's budget: checked here
        bind_to_data(paths, space, resume, data)
        bind_to_space(paths, space, resume, extend)
        return run_stages(space, paths, address, num_cpus, signals or StopSignals(), students, target, verbose)


def student_latencies(
    space: SearchSpace, paths: SweepPaths, resume: bool, address: str | None
) -> dict[str, dict] | None:
    """Each student backbone's latency at the space's deploy target: as recorded by the sweep being resumed,
    else measured here (a CPU target; a CUDA one is measured on a GPU worker once Ray runs: a cluster's, or
    this machine's GPU)."""
    if space.deploy is None:
        return None
    recorded = read_latencies(paths.sweep_dir) if resume else None
    if recorded and recorded.get("deploy") == space.deploy.to_dict():
        return recorded["students"]
    if space.deploy.device == "cuda":
        if not address and not torch.cuda.is_available():
            # A local Ray has no GPU to offer: the measurement would wait for one forever.
            raise UserError(
                f"{space.source}: deploy.device: cuda, but this machine has no GPU to measure latency on; run "
                f"the sweep on a GPU machine or a cluster (--address), or set deploy.device: cpu"
            )
        return None
    students = measure_students(space)
    check_budget(space, students)
    return students


def gpu_latencies(space: SearchSpace) -> dict[str, dict]:
    """A CUDA target's latencies, measured by a Ray task on a GPU (the driver may have none)."""

    def on_gpu_worker(fn: Callable[..., LatencyRecord], *args: Any) -> LatencyRecord:
        ref = ray.remote(num_gpus=1, num_cpus=1)(fn).remote(*args)
        return task_result(
            ref, "the CUDA latency measurement", {"CPU": 1, "GPU": 1}, "lower deploy.img_size or deploy.batch"
        )

    students = measure_students(space, on_gpu_worker)
    check_budget(space, students)
    return students


def check_folder(paths: SweepPaths, resume: bool) -> None:
    """--resume needs a sweep of this name; a new sweep must not write into one."""
    if resume and not (paths.sweep_dir.is_dir() or storage.exists(paths.shared)):
        raise UserError(f"{paths.shared}: no sweep to resume there; run without --resume to start it")
    if not resume and (paths.sweep_dir.exists() or (paths.remote and storage.exists(paths.trials))):
        raise UserError(
            f"{paths.sweep_dir}: a sweep of this name exists; continue it with --resume or "
            f"start another with --name NEW (or delete the folder)"
        )


def bind_to_space(paths: SweepPaths, space: SearchSpace, resume: bool, extend: bool) -> None:
    """A new sweep records its space (space.yaml, its fingerprint in sweep.json); a resumed one must run the
    same space, or raise its trial count with `extend` (the finished stages after the search are then set
    aside: they were chosen among fewer trials)."""
    if resume:
        if paths.remote and not (paths.sweep_dir / SPACE_FILE).is_file():
            fetch_records(paths)
        extends = check_resumable(read_bound_space(paths.sweep_dir), space, extend, str(paths.sweep_dir / SPACE_FILE))
        if extends:
            print(f"extending the sweep to {space.search.num_samples} search trials")
            set_aside_later_stages(paths)
    paths.sweep_dir.mkdir(parents=True, exist_ok=True)
    write_file_atomic(paths.sweep_dir / SPACE_FILE, yaml.safe_dump(space.to_dict(), sort_keys=False))
    record = write_sweep_record(paths.sweep_dir, space.name, fingerprint(space.to_dict()), paths.shared)
    if paths.remote:
        storage.upload(paths.sweep_dir / SPACE_FILE, storage.join(paths.shared, SPACE_FILE))
        storage.upload(record, storage.join(paths.shared, SWEEP_FILE))


def bind_to_data(paths: SweepPaths, space: SearchSpace, resume: bool, data: PolypData | None = None) -> None:
    """A new sweep records every file of its data and its val_groups file (data.json); a resumed one must find
    them as they were: trials scored on two validation sets would be ranked together, and a teacher trained
    on the old split would fail every distillation run."""
    now = data_files(data or discover(space.base["data_root"]), space.base.get("val_groups"))
    path = paths.sweep_dir / DATA_FILE
    if resume and paths.remote and not path.is_file():
        fetch_records(paths)
    if resume and path.is_file():
        changes = data_changes(read_json(path, "run the sweep under a new --name").get("files", {}), now)
        if changes:
            raise UserError(
                f"{space.base['data_root']}: the data changed since the sweep started ({changes}); put it back as "
                f"it was, or run the changed data as a new sweep with --name NEW"
            )
        return
    if resume:  # a sweep started before data.json existed: bound from here on
        print(f"{path}: not recorded when the sweep started; the sweep is bound to the data as it is now")
    paths.sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json({"data_root": space.base["data_root"], "files": now}, path)
    if paths.remote:
        storage.upload(path, storage.join(paths.shared, DATA_FILE))


def wandb_sweep(run: SweepRun) -> str | None:
    """The W&B Sweep every run of this sweep joins: registered once when online (its id kept in sweep.json,
    so a resumed sweep goes on in it); offline, wandb-sweep.yaml says how to register it after `wandb sync`."""
    if run.wandb_mode == "disabled":
        return None
    paths = run.paths
    write_sweep_yaml(run.space, paths.sweep_dir)
    sweep_id = read_sweep_record(paths.sweep_dir).get("wandb_sweep_id")
    if sweep_id or run.wandb_mode != "online":
        return sweep_id
    logged = [run_id for run_id, where in logged_wandb_runs(paths.sweep_dir).items() if where == "online"]
    sweep_id = register_sweep(run.space, run.wandb_entity, run.space.wandb.project, prior_runs=logged)
    if sweep_id:
        record = record_wandb_sweep(paths.sweep_dir, sweep_id)
        if paths.remote:
            storage.upload(record, storage.join(paths.shared, SWEEP_FILE))
        print(f"W&B Sweep {sweep_id}: every run of this sweep joins it")
    return sweep_id


def fetch_records(paths: SweepPaths) -> None:
    """A sweep in shared storage resumed from another machine: its space.yaml and sweep.json come from there."""
    for name in (SPACE_FILE, SWEEP_FILE, DATA_FILE):
        if storage.exists(storage.join(paths.shared, name)):
            paths.sweep_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(storage.local_copy(storage.join(paths.shared, name)), paths.sweep_dir / name)


def set_aside_later_stages(paths: SweepPaths) -> None:
    """Move the records of a finished search's later stages into superseded-N/ (never deleted)."""
    later = [paths.sweep_dir / n for n in (SEARCH_FILE, BEST_FILE, CONFIRM_DIRNAME, VERDICT_DIRNAME)]
    later = [p for p in later if p.exists()]
    if not later:
        return
    if paths.remote:
        raise UserError(
            f"{paths.shared}: the search is complete; extending it on shared storage is not "
            f"supported: run a new sweep with --name NEW"
        )
    n = 1 + sum(1 for _ in paths.sweep_dir.glob("superseded-*"))
    aside = paths.sweep_dir / f"superseded-{n}"
    aside.mkdir()
    for path in later:
        os.replace(path, aside / path.name)
    print(
        f"the search's results so far and the stages after it ({', '.join(p.name for p in later)}) were "
        f"chosen among fewer trials: moved to {aside}"
    )


def run_stages(
    space: SearchSpace,
    paths: SweepPaths,
    address: str | None,
    num_cpus: int | None,
    signals: StopSignals,
    students: dict[str, dict] | None,
    target: wandb_mode.WandbTarget,
    verbose: bool = False,
) -> dict:
    started = time.perf_counter()
    wandb_mode.apply(target)
    print(target.line())
    # A new local Ray listens on loopback only; a cluster's nodes must reach each other.
    local = contextlib.nullcontext() if address else loopback_only()
    with ray_output(paths.sweep_dir / RAY_LOG_FILE, verbose), local:  # Ray's tables and logs: there, not here
        return run_in_ray(space, paths, address, num_cpus, signals, students, target, started)


def owner_only_token() -> None:
    """Make Ray's auth token file readable by its owner only (Ray writes it with the umask's mode): whoever
    reads it can run code on every Ray this user starts."""
    path = Path(os.environ.get(AUTH_TOKEN_PATH_ENV) or Path.home().joinpath(*AUTH_TOKEN_FILE))
    with contextlib.suppress(OSError):  # no token (authentication off), or a file this user does not own
        if path.is_file() and path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def run_in_ray(
    space: SearchSpace,
    paths: SweepPaths,
    address: str | None,
    num_cpus: int | None,
    signals: StopSignals,
    students: dict[str, dict] | None,
    target: wandb_mode.WandbTarget,
    started: float,
) -> dict:
    """Start Ray (a new local one, or the cluster at `address`), run the stages in it, shut it down."""
    # Without --address/RAY_ADDRESS: always a new local Ray ("local"), never a cluster that happens to run
    # on this machine (ray.init(None) would join one started by `ray start`, and refuse num_cpus).
    ray.init(
        address=address or "local",
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
    )
    owner_only_token()
    signals.install()  # again: ray.init installs a SIGTERM handler of its own that aborts the driver
    try:
        signals.check()  # a signal during ray.init
        note = repair_journal(paths.sweep_dir)
        if note:
            print(note)
        run = SweepRun(
            space,
            paths,
            requests_gpu(space, address),
            target.mode,
            signals,
            stored_sweep_name(paths.sweep_dir, space.name),
            target.entity,
        )
        (paths.sweep_dir / WANDB_DIRNAME).mkdir(parents=True, exist_ok=True)
        run.wandb_sweep_id = wandb_sweep(run)
        if space.deploy is not None:
            run.students = students or gpu_latencies(space)
            write_latencies(paths.sweep_dir, space.deploy, run.students)
        base = prepare(run)
        rows = completed_search(run) or search(run, base)
        selected = select(run, base, rows) if space.confirm else None
        judged = verdict_stage(run, base, selected) if selected else None
        return finish(run, rows, selected, judged, started)
    except SweepInterrupted as err:
        # One kind of stop for the caller, which says how to resume: only the command line knows every option
        # that finds this sweep again (--storage, --address, --set, ...).
        raise KeyboardInterrupt(str(err)) from None
    finally:
        ray.shutdown()
