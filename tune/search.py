"""The sweep CLI: Ray Tune + OptunaSearch (define-by-run) + ASHA + W&B over a search-space file.

    python -m tune.search --space kd.yaml [--name N] [--num-samples K] [--resume] [--address ADDR]
                          [--set key=value ...]

Writes results/<sweep>/: the resolved space, the teacher (if trained here), Ray's experiment folder
(trials/), W&B offline runs (wandb/), leaderboard.csv, best.json and pictures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from core.config import parse_overrides
from core.data import discover
from core.errors import UserError, cli_errors
from core.evaluate import format_table
from core.synthetic import write_demo_dataset
from tune.space import DefineByRun, SearchSpace, load_space

TRIALS_DIRNAME = "trials"
SWEEP_FILE = "sweep.json"


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


def quiet_ray_logs() -> None:
    """Environment for Ray's and W&B's processes (set before ray.init, which they inherit)."""
    # Tune warns when a result takes > 0.5 s to process; on a 2-core machine busy with trials that is
    # the normal case, not a bottleneck worth a line per epoch.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("WANDB_SILENT", "true")


def configure_wandb(space: SearchSpace, sweep_dir: Path):
    """W&B callback: offline unless WANDB_API_KEY is set; runs land in <sweep>/wandb/."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = space.wandb.mode
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        mode = os.environ["WANDB_MODE"]
    elif os.environ.get("WANDB_API_KEY") and mode == "offline":
        mode = "online"
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        print("W&B: no WANDB_API_KEY set, logging offline instead")
        mode = "offline"
    if mode == "disabled":
        return None, mode
    # Ray checks for an API key unless the environment says offline.
    os.environ["WANDB_MODE"] = mode

    class KeyHidingWandbLoggerCallback(WandbLoggerCallback):
        # Ray hands WANDB_API_KEY to its logging actor through runtime_env, which Ray writes in plain
        # text to its session logs. The actor runs on this node and inherits this process's
        # environment anyway, so the key is hidden from runtime_env while the actor starts.
        def _start_logging_actor(self, *args, **kwargs):
            key = os.environ.pop("WANDB_API_KEY", None)
            try:
                return super()._start_logging_actor(*args, **kwargs)
            finally:
                if key is not None:
                    os.environ["WANDB_API_KEY"] = key

    callback = KeyHidingWandbLoggerCallback(
        project=space.wandb.project, group=space.wandb.group or space.name, mode=mode,
        dir=str(sweep_dir), excludes=["is_best", "node_id"], log_config=False)
    return callback, mode


def build_tuner(space: SearchSpace, experiment_root: str, base: dict, use_gpu: bool, callbacks: list):
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    metric, mode = space.objective.metric, space.objective.mode
    searcher = OptunaSearch(space=DefineByRun(space.parameters), metric=metric, mode=mode,
                            sampler=optuna.samplers.TPESampler(seed=space.search.seed))
    scheduler = ASHAScheduler(time_attr="epoch", max_t=space.asha.max_t,
                              grace_period=space.asha.grace_period,
                              reduction_factor=space.asha.reduction_factor)
    return tune.Tuner(
        trainable_for(space, base, use_gpu),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric=metric, mode=mode,
                                    num_samples=space.search.num_samples,
                                    max_concurrent_trials=space.search.max_concurrent_trials,
                                    # Reusing trial processes would save ~4 s of start-up per trial
                                    # (bench/sweep_overhead.py: sweep/direct 1.35 -> 1.05), but with it a
                                    # Ctrl-C left the driver hanging (Ray 2.60); correctness first.
                                    reuse_actors=False),
        run_config=tune.RunConfig(
            name=TRIALS_DIRNAME, storage_path=experiment_root,
            # Each checkpoint holds the last state *and* the best-validation weights: one is enough.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=space.search.max_failures),
            callbacks=callbacks, verbose=1),
    )


def trainable_for(space: SearchSpace, base: dict, use_gpu: bool):
    from ray import tune

    from tune.trainable import train_trial

    resources = {"cpu": space.resources.cpu, "gpu": space.resources.gpu if use_gpu else 0}
    return tune.with_resources(tune.with_parameters(train_trial, base=base), resources)


def run_sweep(space: SearchSpace, storage_root: str, resume: bool, address: str | None,
              num_cpus: int | None, local_results: Path = Path("results")) -> dict:
    """`storage_root` is a local folder or a URI shared by every node; with a URI the sweep's own files
    are also kept in <local_results>/<sweep>/ on this machine and copied to the storage at the end."""
    import ray
    from ray import tune

    from tune import report, storage
    from tune.prepare import ensure_teacher, warm_caches
    from tune.recovery import restore_recorded_checkpoints

    remote = storage.is_uri(storage_root)
    shared = storage.join(storage_root, space.name)        # every node reaches this
    sweep_dir = (local_results / space.name).resolve() if remote else Path(shared)
    trials_location = storage.join(shared, TRIALS_DIRNAME)
    if resume and not (sweep_dir.is_dir() or storage.exists(shared)):
        raise UserError(f"{shared}: no sweep to resume there; run without --resume to start it")
    # A sweep interrupted during its teacher stage has no Ray experiment yet: resuming starts it.
    restore = resume and tune.Tuner.can_restore(trials_location)
    if not resume and (sweep_dir.exists() or (remote and storage.exists(trials_location))):
        raise UserError(f"{sweep_dir}: a sweep of this name exists; continue it with --resume or "
                        f"start another with --name NEW (or delete the folder)")
    started = time.perf_counter()
    callback, wandb_mode = configure_wandb(space, sweep_dir)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
             configure_logging=True, logging_level="WARNING")
    try:
        use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        (sweep_dir / "wandb").mkdir(parents=True, exist_ok=True)
        (sweep_dir / "space.yaml").write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
        base = space.base_config().to_dict()
        if base["mode"] == "distillation":
            base["teacher_checkpoint"] = ensure_teacher(space, sweep_dir, use_gpu,
                                                        shared=storage.join(shared, "teacher") if remote else None)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({"name": space.name, "base": base}, indent=2))
        if remote:
            storage.upload(sweep_dir / SWEEP_FILE, storage.join(shared, SWEEP_FILE))
        warm_caches(space, space.base_config().replace(**base), use_gpu)
        callbacks = [callback] if callback else []
        if restore:
            for note in restore_recorded_checkpoints(trials_location):
                print(note)
            tuner = tune.Tuner.restore(trials_location, trainable=trainable_for(space, base, use_gpu),
                                       resume_errored=True)
        else:
            tuner = build_tuner(space, shared, base, use_gpu, callbacks)
        results = tuner.fit()
        # ResultGrid has no trial status; its analysis does. Ctrl-C makes fit() return early.
        trials = results._experiment_analysis.trials
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        if finished < space.search.num_samples:
            print(f"\nsweep interrupted: {finished} of {space.search.num_samples} trials finished; continue with "
                  f"`python -m tune.search --space {space.source} --name {space.name} --resume`", file=sys.stderr)
            raise SystemExit(130)
        rows = report.leaderboard(results, space)
        report.write_leaderboard(rows, sweep_dir / "leaderboard.csv")
        report.plot_curves(results, sweep_dir / "curves.png")
        report.plot_parallel_coordinates(rows, sweep_dir / "parallel_coordinates.png")
        print("\n" + report.format_leaderboard(rows))
        winner_row = next((r for r in rows if r["status"] == "DONE" and r["checkpoint"]), None)
        if winner_row is None:
            raise UserError(f"{sweep_dir}: no trial finished; see the errors in leaderboard.csv")
        if remote:
            # The winner's checkpoint is in shared storage: keep a local copy beside best.json.
            result = next(r for r in results if r.path == winner_row["trial_dir"])
            winner_row["checkpoint"] = result.checkpoint.to_directory(str(sweep_dir / "winner_checkpoint"))
        winner = report.evaluate_winner(winner_row)
        best = report.write_best(winner_row, winner, space, sweep_dir / "best.json")
        print(f"\nwinner: trial {best['trial_id']}  val Dice {best['best_val_dice']:.4f} "
              f"(epoch {best['best_epoch']})  " + "  ".join(f"{k}={v}" for k, v in best["params"].items()))
        print(format_table(best["test"], title="winner on the test sets (reported, never selected on)"))
        elapsed = time.perf_counter() - started
        stopped = sum(1 for r in rows if r["stopped_early"])
        print(f"\n{len(rows)} trials ({stopped} stopped early by ASHA, "
              f"{sum(r['status'] == 'ERROR' for r in rows)} errored) in {elapsed:.0f}s -> {sweep_dir}")
        if wandb_mode == "offline":
            print(f"W&B runs are offline in {sweep_dir / 'wandb'}; upload them with "
                  f"`wandb sync {sweep_dir / 'wandb'}/offline-run-*`")
        if remote:
            for name in ("space.yaml", SWEEP_FILE, "leaderboard.csv", "best.json", "curves.png",
                         "parallel_coordinates.png", "wandb"):
                if (sweep_dir / name).exists():
                    storage.upload(sweep_dir / name, storage.join(shared, name))
            print(f"report copied to {shared}")
        print(f"export the winner with: python -m tune.best export --sweep {sweep_dir}")
        return best
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tune.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help="search-space YAML: a path, or a name in search_spaces/")
    parser.add_argument("--name", help="sweep name (default: the space's name)")
    parser.add_argument("--num-samples", type=int, help="number of trials (overrides the space)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of this name")
    parser.add_argument("--address", help="join a running Ray cluster (default: $RAY_ADDRESS, else local)")
    parser.add_argument("--storage", default="results",
                        help="folder or URI (s3://, gs://) that holds <sweep>/; a cluster needs one all nodes reach")
    parser.add_argument("--local-results", default="results",
                        help="with a URI --storage: local folder for the report and the winner (default results)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base config key for every trial; repeatable")
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
        from tune import storage

        storage_root = storage.resolve(args.storage)
        saved = storage.join(storage_root, space.name, SWEEP_FILE)
        if args.resume and storage.exists(saved):
            # The trials already run were built from the saved base config: keep using it.
            space.base = {**json.loads(Path(storage.local_copy(saved)).read_text())["base"]}
        prepare_data(space)
        run_sweep(space, storage_root, args.resume, args.address, args.num_cpus, Path(args.local_results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
