"""A sweep from start to end: one driver per sweep (a lock), a local Ray or a cluster, then the stages
prepare → search → select → verdict → finish, each resumable; Ctrl-C or SIGTERM stops it resumably.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import ray
import yaml

from core.errors import UserError
from core.files import write_file_atomic
from tune.cluster import storage
from tune.records import SEARCH_FILE, SPACE_FILE, WANDB_DIRNAME, SweepPaths, read_search, sweep_lock
from tune.space import SearchSpace
from tune.sweep.finish import finish
from tune.sweep.prepare import check_teacher_setting, prepare, requests_gpu
from tune.sweep.runtime import SweepInterrupted, SweepRun, wandb_mode
from tune.sweep.search import search
from tune.sweep.select import select
from tune.sweep.verdict import verdict_stage


def run_sweep(space: SearchSpace, storage_root: str, resume: bool, address: str | None,
              num_cpus: int | None, local_results: Path = Path("results")) -> dict:
    """`storage_root` is a local folder or a URI shared by every node; with a URI the sweep's own files
    are also kept in <local_results>/<sweep>/ on this machine and copied to the storage at the end."""
    remote = storage.is_uri(storage_root)
    shared = storage.join(storage_root, space.name)        # every node reaches this
    paths = SweepPaths((local_results / space.name).resolve() if remote else Path(shared), shared, remote)
    with sweep_lock(paths.sweep_dir):
        check_folder(paths, resume)
        check_teacher_setting(space)
        return run_stages(space, paths, address, num_cpus)


def check_folder(paths: SweepPaths, resume: bool) -> None:
    """--resume needs a sweep of this name; a new sweep must not write into one."""
    if resume and not (paths.sweep_dir.is_dir() or storage.exists(paths.shared)):
        raise UserError(f"{paths.shared}: no sweep to resume there; run without --resume to start it")
    if not resume and (paths.sweep_dir.exists() or (paths.remote and storage.exists(paths.trials))):
        raise UserError(f"{paths.sweep_dir}: a sweep of this name exists; continue it with --resume or "
                        f"start another with --name NEW (or delete the folder)")


def run_stages(space: SearchSpace, paths: SweepPaths, address: str | None, num_cpus: int | None) -> dict:
    started = time.perf_counter()
    mode = wandb_mode(space)
    address = address or os.environ.get("RAY_ADDRESS")
    # Without --address/RAY_ADDRESS: always a new local Ray ("local"), never a cluster that happens to run
    # on this machine (ray.init(None) would join one started by `ray start`, and refuse num_cpus).
    ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
             configure_logging=True, logging_level="WARNING")
    if threading.current_thread() is threading.main_thread():
        # After ray.init: Ray installs a SIGTERM handler of its own that aborts the driver.
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        run = SweepRun(space, paths, requests_gpu(space, address), mode)
        (paths.sweep_dir / WANDB_DIRNAME).mkdir(parents=True, exist_ok=True)
        write_file_atomic(paths.sweep_dir / SPACE_FILE, yaml.safe_dump(space.to_dict(), sort_keys=False))
        base = prepare(run)
        if (paths.sweep_dir / SEARCH_FILE).is_file():
            rows = read_search(paths.sweep_dir)
            print(f"search stage already complete ({len(rows)} trials); continuing")
        else:
            rows = search(run, base)
        selected = select(run, base, rows) if space.confirm else None
        judged = verdict_stage(run, base, selected) if selected else None
        return finish(run, rows, selected, judged, started)
    except (SweepInterrupted, KeyboardInterrupt) as err:
        detail = f" ({err})" if str(err) else ""
        print(f"\nsweep interrupted — continue with the same command plus --resume: "
              f"python -m tune.search --space {space.source} --name {space.name} --resume{detail}",
              file=sys.stderr)
        raise SystemExit(143 if _terminated else 130) from None
    finally:
        ray.shutdown()


_terminated = False


def _sigterm_as_interrupt(signum, frame) -> None:
    """SIGTERM (a scheduler or `kill`) stops the sweep like Ctrl-C, so Ray saves a resumable state."""
    global _terminated
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    os.kill(os.getpid(), signal.SIGINT)
