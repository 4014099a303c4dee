"""The sweep CLI: prepare (data, teacher, caches) -> search (Ray Tune + Optuna + ASHA, with a no-teacher
control arm) -> confirm (the best configurations retrained over seeds) -> report.

    python -m tune.search --space kd.yaml [--name N] [--num-samples K] [--resume] [--address ADDR]
                          [--set key=value ...]

Writes results/<sweep>/: the resolved space, the teacher (if trained here), Ray's experiments (trials/,
confirm/), the Optuna study (optuna.journal), W&B offline runs (wandb/), leaderboard.csv, best.json and
pictures. Ctrl-C (or SIGTERM) stops it resumably: exit 130 (143), no winner written.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.config import parse_overrides
from core.data import discover
from core.errors import UserError, cli_errors
from core.evaluate import format_table
from core.synthetic import write_demo_dataset
from tune.recovery import CHECKPOINT_FILE
from tune.space import SearchSpace, load_space

TRIALS_DIRNAME = "trials"
CONFIRM_DIRNAME = "confirm"
SWEEP_FILE = "sweep.json"
SEARCH_FILE = "search.json"   # written when the search stage is complete: resume skips it


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM: Ray saved its state; the same command with --resume continues."""


@dataclass
class SweepPaths:
    """Where a sweep's files live: `sweep_dir` on this machine, `shared` where every node reaches."""

    sweep_dir: Path
    shared: str
    remote: bool

    @property
    def trials(self) -> str:
        from tune import storage
        return storage.join(self.shared, TRIALS_DIRNAME)

    @property
    def confirm(self) -> str:
        from tune import storage
        return storage.join(self.shared, CONFIRM_DIRNAME)


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One driver per sweep name at a time: an exclusive lock beside the sweep folder, taken before anything
    is written. The kernel drops it when its process dies, so a killed driver never blocks --resume."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    path = sweep_dir.parent / f".{sweep_dir.name}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{sweep_dir}: sweep is running in {holder}; wait for it, or stop it "
                            f"(Ctrl-C) and continue with --resume") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_data(space: SearchSpace) -> None:
    """Make data_root absolute (trials run in another working directory) and create demo data if
    the space asks for it and it is missing; then scan it, so bad data fails before Ray starts."""
    root = Path(space.base.get("data_root", "dataset")).expanduser().resolve()
    space.base["data_root"] = str(root)
    if not root.exists() and space.demo_data is not None:
        d = space.demo_data
        print(f"generating SYNTHETIC demo data (not real polyps) at {root}: {d.train} train, {d.test} per "
              f"test set, {d.size}px, seed {d.seed}")
        write_demo_dataset(root, size=d.size, n_train=d.train, n_test=d.test, seed=d.seed)
    print(discover(root).describe())


def check_teacher_setting(space: SearchSpace) -> None:
    """A teacher checkpoint named in the space must exist and must not have seen the students' validation
    images; checked before Ray starts."""
    from core.models import require_teacher_path, teacher_split
    from core.split import check_teacher_split, training_split

    path = space.teacher.checkpoint
    if not space.distillation or path is None:
        return
    if "://" in path:  # in shared storage (where ./launch.sh sweep uploads a local teacher): check a local copy
        from tune import storage
        path = storage.local_copy(path)
    if not Path(path).exists():
        raise UserError(f"{space.source}: teacher.checkpoint {path} does not exist; train one with "
                        f"`python -m tune.search --space teacher.yaml` then `python -m tune.best export "
                        f"--sweep results/teacher` (writes results/teacher/export), or set "
                        f"`teacher: {{checkpoint: null}}` to train one in this sweep")
    path = require_teacher_path(str(Path(path).resolve()))
    cfg = space.base_config()
    check_teacher_split(teacher_split(path), training_split(cfg, discover(cfg.data_root).train).record, path)


def quiet_ray_logs() -> None:
    """Environment for Ray's and W&B's processes (set before ray.init, which they inherit)."""
    # Tune warns when a result takes > 0.5 s to process; on a 2-core machine busy with trials that is
    # the normal case, not a bottleneck worth a line per epoch.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("WANDB_SILENT", "true")


def wandb_mode(space: SearchSpace) -> str:
    """Offline unless WANDB_API_KEY is set; WANDB_MODE in the environment wins."""
    mode = space.wandb.mode
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        mode = os.environ["WANDB_MODE"]
    elif os.environ.get("WANDB_API_KEY") and mode == "offline":
        mode = "online"
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        print("W&B: no WANDB_API_KEY set, logging offline instead")
        mode = "offline"
    if mode != "disabled":
        os.environ["WANDB_MODE"] = mode  # Ray checks for an API key unless the environment says offline
    return mode


def wandb_callbacks(space: SearchSpace, sweep_dir: Path, mode: str, job_type: str, base: dict) -> list:
    """One W&B run per trial (`job_type` trial or confirm), grouped by sweep, with its whole config."""
    from tune.ray_compat import SweepWandbLoggerCallback

    if mode == "disabled":
        return []
    return [SweepWandbLoggerCallback(
        project=space.wandb.project, group=space.wandb.group or space.name, mode=mode, dir=str(sweep_dir),
        job_type=job_type, excludes=["is_best", "node_id", "run_started_at"], log_config=False, sweep=space.name,
        base=base)]


def trainable_for(space: SearchSpace, base: dict, use_gpu: bool, rung_epochs: list[int] = ()):
    """The trial function with the sweep's base config, checkpoint epochs and resources bound."""
    from ray import tune

    from tune.space import checkpoint_epochs
    from tune.trainable import train_trial

    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu if use_gpu else 0}
    epochs = checkpoint_epochs(space.search.checkpoint_every, space.asha.max_t, rung_epochs)
    return tune.with_resources(tune.with_parameters(train_trial, base=base, checkpoint_epochs=epochs), resources)


def asha_scheduler(space: SearchSpace):
    """The space's ASHA, deciding on the epoch each trial reports."""
    from ray.tune.schedulers import ASHAScheduler

    a = space.asha
    return ASHAScheduler(time_attr="epoch", max_t=a.max_t, grace_period=a.grace_period,
                         reduction_factor=a.reduction_factor)


def run_config(space: SearchSpace, name: str, paths: SweepPaths, callbacks: list):
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=paths.shared,
        # Each checkpoint holds the last state *and* the best-validation weights: one is enough.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
        callbacks=callbacks, verbose=1)


# --- stage 1: prepare ---------------------------------------------------------------------------------

def prepare(space: SearchSpace, paths: SweepPaths, use_gpu: bool) -> dict[str, Any]:
    """The base TrainConfig of every trial (teacher resolved), with caches warm on this node."""
    from tune import storage
    from tune.prepare import ensure_teacher, warm_caches

    base = space.base_config().to_dict()
    if space.distillation:
        base["teacher_checkpoint"] = ensure_teacher(
            space, paths.sweep_dir, use_gpu, shared=storage.join(paths.shared, "teacher") if paths.remote else None)
    paths.sweep_dir.mkdir(parents=True, exist_ok=True)
    (paths.sweep_dir / SWEEP_FILE).write_text(json.dumps({"name": space.name, "base": base}, indent=2))
    if paths.remote:
        storage.upload(paths.sweep_dir / SWEEP_FILE, storage.join(paths.shared, SWEEP_FILE))
    warm_caches(space, space.base_config().replace(**base), use_gpu)
    return base


# --- stage 2: search ----------------------------------------------------------------------------------

def search(space: SearchSpace, paths: SweepPaths, base: dict, use_gpu: bool, callbacks: list) -> list:
    """Optuna (TPE, journal-backed) proposes, ASHA stops, Ray runs; returns the ranked leaderboard rows."""
    from ray import tune

    from tune import report
    from tune.ray_compat import TruthfulOptunaSearch, recorded_trials
    from tune.recovery import restore_recorded_checkpoints
    from tune.space import DefineByRun
    from tune.study import journal_storage, tpe_sampler

    metric, mode = space.objective.metric, space.objective.mode
    # ASHA decides at its rungs: a checkpoint there means a stopped trial's checkpoint is where it stopped.
    trainable = trainable_for(space, base, use_gpu, space.asha.rungs())
    if tune.Tuner.can_restore(paths.trials):
        for note in restore_recorded_checkpoints(paths.trials):
            print(note)
        tuner = tune.Tuner.restore(paths.trials, trainable=trainable, resume_errored=True)
    else:
        searcher = TruthfulOptunaSearch(
            space=DefineByRun(space.parameters, space.baseline_trial_numbers()), metric=metric, mode=mode,
            sampler=tpe_sampler(space.search.num_samples, space.search.seed), study_name=space.name,
            storage=journal_storage(paths.sweep_dir), max_t=space.asha.max_t)
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=asha_scheduler(space), metric=metric, mode=mode,
            num_samples=space.search.num_samples, max_concurrent_trials=space.search.max_concurrent_trials,
            reuse_actors=space.search.reuse_actors), run_config=run_config(space, TRIALS_DIRNAME, paths, callbacks))
    tuner.fit()
    trials = recorded_trials(paths.trials)
    rows = report.leaderboard(trials, metric, mode == "max", space.asha.max_t, paths.sweep_dir)
    report.write_leaderboard(rows, paths.sweep_dir / "leaderboard.csv")
    if any(r.end == "interrupted" for r in rows) or len(rows) < space.search.num_samples:
        raise SweepInterrupted(f"{sum(r.end != 'interrupted' for r in rows)} of {space.search.num_samples} "
                               f"search trials ended")
    report.plot_curves({t.trial_id: ([h["epoch"] for h in t.history], [h["val_dice"] for h in t.history],
                                     t.config.get("arm", "kd")) for t in trials if t.history},
                       paths.sweep_dir / "curves.png",
                       "search trials (dashed: no teacher; curves that end early were stopped by ASHA)")
    report.plot_parallel_coordinates(rows, paths.sweep_dir / "parallel_coordinates.png")
    report.write_json({"complete": True, "rows": [_row_json(r) for r in rows]}, paths.sweep_dir / SEARCH_FILE)
    return rows


def _row_json(row) -> dict[str, Any]:
    from dataclasses import asdict
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(row).items()}


def load_search_rows(paths: SweepPaths) -> list:
    from tune.report import TrialRow
    rows = json.loads((paths.sweep_dir / SEARCH_FILE).read_text())["rows"]
    return [TrialRow(**{k: (math.nan if v is None and k in ("objective", "best_val_dice", "best_val_iou",
                                                           "last_val_dice") else v) for k, v in r.items()})
            for r in rows]


# --- stage 3: confirm ---------------------------------------------------------------------------------

def confirm(space: SearchSpace, paths: SweepPaths, base: dict, rows: list, use_gpu: bool,
            callbacks: list) -> list:
    """Retrain the top-K KD configurations and the best baseline one from scratch, `seeds` times each, as
    Ray trials (resumable like the search); returns one `Confirmed` per configuration."""
    from ray import tune

    from tune.confirm import Confirmed, choose_candidates, seeds_for
    from tune.ray_compat import recorded_trials
    from tune.report import relative

    candidates = choose_candidates(rows, space.confirm.top_k, space.has_control)
    if not any(c.arm == "kd" for c in candidates) and space.distillation:
        raise UserError(f"{paths.sweep_dir}: no KD trial of the search ended usable; see leaderboard.csv")
    seeds = seeds_for(space.base_config().seed, space.confirm.seeds)
    print(f"\nconfirming {len(candidates)} configurations x {len(seeds)} seeds ({', '.join(map(str, seeds))}) at "
          f"{space.asha.max_t} epochs: " + ", ".join(f"{c.name} (trial {c.trial_id})" for c in candidates))
    trainable = trainable_for(space, base, use_gpu)
    if tune.Tuner.can_restore(paths.confirm):
        tuner = tune.Tuner.restore(paths.confirm, trainable=trainable, resume_errored=True)
    else:
        grid = [{"name": c.name, "arm": c.arm, "params": c.params} for c in candidates]
        tuner = tune.Tuner(trainable, param_space={"candidate": tune.grid_search(grid),
                                                   "seed": tune.grid_search(seeds)},
                           tune_config=tune.TuneConfig(max_concurrent_trials=space.search.max_concurrent_trials,
                                                       reuse_actors=space.search.reuse_actors),
                           run_config=run_config(space, CONFIRM_DIRNAME, paths, callbacks))
    tuner.fit()
    trials = recorded_trials(paths.confirm)
    if any(t.status not in ("TERMINATED", "ERROR") for t in trials) or len(trials) < len(candidates) * len(seeds):
        raise SweepInterrupted(f"{sum(t.status in ('TERMINATED', 'ERROR') for t in trials)} of "
                               f"{len(candidates) * len(seeds)} confirmation runs ended")
    metric = space.objective.metric
    confirmed = []
    for c in candidates:
        runs = {int(t.config["seed"]): t for t in trials if t.config["candidate"]["name"] == c.name}
        values, dice, checkpoints, ids = [], [], [], []
        for s in seeds:
            t = runs[s]
            ok = t.status == "TERMINATED" and not t.last_result.get("diverged")
            values.append(float(t.last_result[metric]) if ok else math.nan)
            dice.append(float(t.last_result.get("best_val_dice", math.nan)) if ok else math.nan)
            checkpoints.append(relative(t.checkpoint_path, paths.sweep_dir) if ok else "")
            ids.append(t.trial_id)
        confirmed.append(Confirmed(c, seeds, values, dice, checkpoints, ids))
    return confirmed


# --- stage 4: report ----------------------------------------------------------------------------------

def finish(space: SearchSpace, paths: SweepPaths, rows: list, confirmed: list | None, started: float,
           mode: str) -> dict[str, Any]:
    """Name the winner, score it (and the confirmed baseline) on the test sets once, write best.json."""
    from tune import confirm as confirmation
    from tune import html_report, report, storage
    from tune.report import relative
    from tune.study import load_study, param_importance, state_counts

    metric, maximize = space.objective.metric, space.objective.mode == "max"
    print("\n" + report.format_leaderboard(rows))
    study = load_study(paths.sweep_dir, space.name)
    counts = state_counts(study)
    importance = param_importance(study, at_epoch=space.asha.grace_period)
    print(f"Optuna study {paths.sweep_dir / 'optuna.journal'}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    best: dict[str, Any] = {"sweep": space.name, "objective": {"metric": metric, "mode": space.objective.mode},
                            "study": {"journal": "optuna.journal", "states": counts}, "importance": importance}
    if confirmed:
        ranked = confirmation.rank_confirmed(confirmed, maximize)
        print("\n" + confirmation.format_confirmation(confirmed, metric, maximize))
        winner = ranked[0]
        if math.isnan(winner.mean):
            raise UserError(f"{paths.sweep_dir}: every confirmation run failed; see {paths.confirm}")
        pick = winner.best_seed_index(maximize)
        checkpoint, trial_id = winner.checkpoints[pick], winner.trial_ids[pick]
        verdict = confirmation.verdict(confirmed, metric, maximize)
        best.update(winner=winner.candidate.name, arm=winner.candidate.arm, trial_id=trial_id,
                    search_trial=winner.candidate.trial_id, params=winner.candidate.params,
                    confirmed_mean=winner.mean, confirmed_ci95=list(winner.ci95), seed=winner.seeds[pick],
                    confirmation=[c.to_dict() for c in ranked],
                    kd_vs_baseline=verdict.to_dict() if verdict else None)
        baseline = next((c for c in ranked if c.candidate.arm == "baseline"), None)
    else:
        done = [r for r in rows if r.end == "finished"]
        if not done:
            raise UserError(f"{paths.sweep_dir}: no trial reached asha.max_t={space.asha.max_t} epochs; see "
                            f"leaderboard.csv (with confirm: null only a full-budget trial can win)")
        winner_row = done[0]
        checkpoint, trial_id = winner_row.checkpoint, winner_row.trial_id
        best.update(winner=trial_id, arm=winner_row.arm, trial_id=trial_id, search_trial=trial_id,
                    params=winner_row.sampled, confirmation=None, kd_vs_baseline=None)
        baseline, verdict = None, None
    local = _local_checkpoint(checkpoint, paths, "winner_checkpoint")
    scored = report.evaluate_checkpoint(local)
    best.update(checkpoint=relative(str(Path(local) / CHECKPOINT_FILE), paths.sweep_dir), **scored)
    title = "winner on the test sets (scored once, at the end; never selected on)"
    print(f"\nwinner: {best['winner']} ({best['arm']}, seed run {trial_id})  val Dice {best['best_val_dice']:.4f} "
          f"(epoch {best['best_epoch']})")
    print(format_table(scored["test"], title=title))
    if baseline is not None and not math.isnan(baseline.mean) and baseline.candidate.name != best["winner"]:
        bpick = baseline.best_seed_index(maximize)
        blocal = _local_checkpoint(baseline.checkpoints[bpick], paths, "baseline_checkpoint")
        best["baseline_test"] = report.evaluate_checkpoint(blocal)["test"]
        print(format_table(best["baseline_test"], title=f"confirmed baseline ({baseline.candidate.name}) on the test sets"))
    if verdict:
        print(f"\nverdict: {verdict.sentence}")
    if importance:
        print("importance (PED-ANOVA, KD trials at epoch "
              f"{importance['at_epoch']}): " + ", ".join(f"{k} {v:.2f}" for k, v in importance["importance"].items()))
    best["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.write_json(best, paths.sweep_dir / "best.json")
    print(f"report: {html_report.write_report(paths.sweep_dir)}")
    ends = {e: sum(r.end == e for r in rows) for e in report.ENDS}
    print(f"\n{len(rows)} search trials (" + ", ".join(f"{n} {e}" for e, n in ends.items() if n)
          + f") in {best['wall_seconds']:.0f}s -> {paths.sweep_dir}")
    if mode != "disabled":
        from tune.wandb_summary import log_sweep_summary
        log_sweep_summary(space.wandb.project, space.wandb.group or space.name, mode, paths.sweep_dir,
                          space.to_dict(), best, rows)
    if mode == "offline":
        print(f"W&B runs are offline in {paths.sweep_dir / 'wandb'}; upload them with "
              f"`wandb sync {paths.sweep_dir / 'wandb'}/offline-run-*`")
    if paths.remote:
        for name in ("space.yaml", SWEEP_FILE, "leaderboard.csv", "best.json", "curves.png",
                     "parallel_coordinates.png", "optuna.journal", "report.html", "wandb"):
            if (paths.sweep_dir / name).exists():
                storage.upload(paths.sweep_dir / name, storage.join(paths.shared, name))
        print(f"report copied to {paths.shared}")
    print(f"optuna-dashboard {paths.sweep_dir / 'optuna.journal'}   # browse the study")
    print(f"export the winner with: python -m tune.best export --sweep {paths.sweep_dir}")
    return best


def _local_checkpoint(checkpoint: str, paths: SweepPaths, name: str) -> str:
    """A local folder holding the checkpoint (a copy beside best.json when it lives in shared storage)."""
    from ray import tune

    from tune.report import resolve

    if "://" not in checkpoint and not paths.remote:
        return resolve(checkpoint, paths.sweep_dir)
    target = paths.sweep_dir / name
    return tune.Checkpoint(checkpoint).to_directory(str(target))


def run_sweep(space: SearchSpace, storage_root: str, resume: bool, address: str | None,
              num_cpus: int | None, local_results: Path = Path("results")) -> dict:
    """`storage_root` is a local folder or a URI shared by every node; with a URI the sweep's own files
    are also kept in <local_results>/<sweep>/ on this machine and copied to the storage at the end."""
    from tune import storage

    remote = storage.is_uri(storage_root)
    shared = storage.join(storage_root, space.name)        # every node reaches this
    paths = SweepPaths((local_results / space.name).resolve() if remote else Path(shared), shared, remote)
    with sweep_lock(paths.sweep_dir):
        return _run_locked(space, paths, resume, address, num_cpus)


def _run_locked(space: SearchSpace, paths: SweepPaths, resume: bool, address: str | None,
                num_cpus: int | None) -> dict:
    import ray

    from tune import storage

    remote, shared = paths.remote, paths.shared
    if resume and not (paths.sweep_dir.is_dir() or storage.exists(shared)):
        raise UserError(f"{shared}: no sweep to resume there; run without --resume to start it")
    if not resume and (paths.sweep_dir.exists() or (remote and storage.exists(paths.trials))):
        raise UserError(f"{paths.sweep_dir}: a sweep of this name exists; continue it with --resume or "
                        f"start another with --name NEW (or delete the folder)")
    check_teacher_setting(space)
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
        from tune.prepare import requests_gpu
        use_gpu = requests_gpu(space, address)
        (paths.sweep_dir / "wandb").mkdir(parents=True, exist_ok=True)
        (paths.sweep_dir / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
        base = prepare(space, paths, use_gpu)
        if (paths.sweep_dir / SEARCH_FILE).is_file():
            rows = load_search_rows(paths)
            print(f"search stage already complete ({len(rows)} trials); continuing")
        else:
            rows = search(space, paths, base, use_gpu, wandb_callbacks(space, paths.sweep_dir, mode, "trial", base))
        confirmed = None
        if space.confirm is not None:
            confirmed = confirm(space, paths, base, rows, use_gpu,
                                wandb_callbacks(space, paths.sweep_dir, mode, "confirm", base))
        return finish(space, paths, rows, confirmed, started, mode)
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tune.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help="search-space YAML: a path, or a name in search_spaces/")
    parser.add_argument("--name", help="sweep name (default: the space's name)")
    parser.add_argument("--num-samples", type=int, help="number of search trials (overrides the space)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of this name")
    parser.add_argument("--address", help="join a running Ray cluster (default: $RAY_ADDRESS, else local)")
    parser.add_argument("--storage", default="results",
                        help="folder or URI (s3://, gs://) that holds <sweep>/; a cluster needs one all nodes reach")
    parser.add_argument("--local-results", default="results",
                        help="with a URI --storage: local folder for the report and the winner (default results)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base config key for every trial; repeatable")
    parser.add_argument("--teacher", metavar="PATH_OR_URI",
                        help="teacher checkpoint (file, folder, or s3://, gs://, file:// URI): overrides the space's")
    parser.add_argument("--plan", action="store_true",
                        help="run nothing: expected trial-epochs, wall time and cost on cluster.yaml's worker types")
    parser.add_argument("--workers", type=int, help="with --plan: worker nodes (default: 1 and each type's maximum)")
    parser.add_argument("--epoch-seconds", type=float,
                        help="with --plan: seconds per trial epoch on the target GPU (default: measured here)")
    args = parser.parse_args(argv)
    quiet_ray_logs()  # before Ray is imported: some settings are read at import time
    with cli_errors():
        space = load_space(args.space, parse_overrides(args.overrides))
        if args.name:
            space.name = args.name
        if args.num_samples is not None:
            if args.num_samples < 1:
                raise UserError("--num-samples must be >= 1")
            space.search.num_samples = args.num_samples
        if args.teacher:
            space.teacher.checkpoint = args.teacher
        if args.plan:
            from tune.plan import print_plan
            if args.epoch_seconds is None:
                prepare_data(space)  # an epoch is measured on the space's data
            print_plan(space, args.workers, args.epoch_seconds)
            return
        if args.workers is not None or args.epoch_seconds is not None:
            raise UserError("--workers and --epoch-seconds go with --plan")
        from tune import storage

        storage_root = storage.resolve(args.storage)
        saved = storage.join(storage_root, space.name, SWEEP_FILE)
        if args.resume and storage.exists(saved):
            # The trials already run were built from the saved base config: keep using it.
            saved_base = json.loads(Path(storage.local_copy(saved)).read_text())["base"]
            space.base = {k: v for k, v in saved_base.items() if k != "epochs"}  # epochs is asha.max_t
        prepare_data(space)
        try:
            run_sweep(space, storage_root, args.resume, args.address, args.num_cpus, Path(args.local_results))
        except KeyboardInterrupt:
            print("\nsweep interrupted — continue with the same command plus --resume", file=sys.stderr)
            raise SystemExit(130) from None
    sys.stdout.flush()


if __name__ == "__main__":
    main()
