"""What Ray Tune adds to the training itself: an N-trial sweep (FIFO, one trial at a time) against
the same N trials run one after another directly through core (`core.train.run_training`).

Target: sweep wall time / sum of direct runs <= 1.10. Both sides train the same configurations with
the same seeds (the bench checks that they reach the same validation Dice); the sweep also pays for trial
processes, result handling, checkpoints in its storage and, with --wandb, offline W&B runs. `ray.init` is
timed separately (once per sweep, not per trial). The sweep reuses trial processes as `tune.search` does
by default (`search.reuse_actors`); --no-reuse-actors starts one per trial.

    python bench/sweep_overhead.py --trials 4 --epochs 5 --img-size 64 --train-images 160 [--wandb]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import bench_data, start_local_ray

from core.config import config_from_dict
from core.train import Trainer
from tune.space import SearchSettings, checkpoint_epochs, load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument(
        "--no-reuse-actors",
        dest="reuse_actors",
        action="store_false",
        default=SearchSettings().reuse_actors,
        help="a new trial process per trial",
    )
    parser.add_argument("--wandb", action="store_true", help="log every trial to an offline W&B run, as a sweep does")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=load_space("demo.yaml").search.checkpoint_every,
        help="both sides keep a checkpoint every N epochs and at the last (default: demo.yaml's)",
    )
    args = parser.parse_args()
    kept = checkpoint_epochs(args.checkpoint_every, args.epochs)
    learning_rates = [1e-3 * (1.5**i) for i in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data, label = bench_data(args.train_images, tmp, args.img_size)
        base = dict(
            mode="baseline",
            data_root=str(data.root),
            img_size=args.img_size,
            batch_size=8,
            epochs=args.epochs,
            encoder_weights=None,
            num_workers=0,
            cache_dir=str(tmp / "cache"),
        )
        print(
            f"{label}; {len(data.train)} images, {args.img_size}px, {args.trials} baseline trials x "
            f"{args.epochs} epochs, checkpoints at epochs {kept}"
        )
        Trainer(config_from_dict({**base, "save_dir": str(tmp / "warm")}), data=data)  # build the cache once

        direct, direct_dice, direct_epochs = 0.0, {}, 0.0
        for i, lr in enumerate(learning_rates):
            start = time.perf_counter()
            cfg = config_from_dict(
                {**base, "learning_rate": lr, "save_dir": str(tmp / "direct"), "experiment_name": f"t{i}"}
            )
            trainer = Trainer(cfg, data=data)
            for _ in trainer.epochs():  # what a trial does: train, validate, keep a checkpoint at `kept`
                if trainer.epoch in kept:
                    trainer.save(cfg.run_dir / "last.pt")
            direct += time.perf_counter() - start
            direct_dice[lr] = [h["val_dice"] for h in trainer.history]
            direct_epochs += sum(h["seconds"] for h in trainer.history)
        print(f"direct through core: {direct:.1f}s for {args.trials} trials")

        import ray
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler

        from tune.sweep.trainable import train_trial

        init = start_local_ray("offline" if args.wandb else "disabled")
        try:
            trial_base = config_from_dict({**base, "save_dir": str(tmp / "sweep")})
            trainable = tune.with_resources(
                tune.with_parameters(train_trial, base=trial_base, checkpoint_epochs=kept), {"cpu": os.cpu_count()}
            )
            callbacks = []
            if args.wandb:
                from tune.sweep.ray_compat.wandb_actor import SweepWandbLoggerCallback
                from tune.tracking.run_settings import TrialRunSettings

                callbacks = [
                    SweepWandbLoggerCallback(
                        project="bench",
                        mode="offline",
                        dir=str(tmp),
                        job_type="trial",
                        log_config=False,
                        settings=TrialRunSettings("overhead", trial_base),
                    )
                ]
            tuner = tune.Tuner(
                trainable,
                param_space={"learning_rate": tune.grid_search(learning_rates)},
                tune_config=tune.TuneConfig(
                    scheduler=FIFOScheduler(), max_concurrent_trials=1, reuse_actors=args.reuse_actors
                ),
                run_config=tune.RunConfig(
                    storage_path=str(tmp / "ray"),
                    name="overhead",
                    verbose=0,
                    callbacks=callbacks,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                ),
            )
            start = time.perf_counter()
            results = tuner.fit()
            sweep = time.perf_counter() - start
        finally:
            ray.shutdown()
        assert not results.errors, results.errors
        # Same configurations and seeds: the sweep must have trained what the direct runs trained.
        dice_gap = max(
            max(
                abs(a - b)
                for a, b in zip(r.metrics_dataframe["val_dice"], direct_dice[r.config["learning_rate"]], strict=True)
            )
            for r in results
        )
        # Where the sweep's extra time goes: inside the trial function (start-up, reports, checkpoints) or
        # between trials (process start, Tune's own work).
        epochs_s = sum(r.metrics_dataframe["seconds"].sum() for r in results)
        in_trials = sum(r.metrics_dataframe["time_total_s"].iloc[-1] for r in results)
        first = [
            r.metrics_dataframe["time_this_iter_s"].iloc[0] - r.metrics_dataframe["seconds"].iloc[0] for r in results
        ]
        print(
            f"sweep: epochs {epochs_s:.1f}s, inside trial functions {in_trials:.1f}s (start-up before the "
            f"first epoch {', '.join(f'{x:.1f}' for x in first)}s), outside them {sweep - in_trials:.1f}s; "
            f"direct epochs {direct_epochs:.1f}s"
        )
        print(
            f"Ray Tune sweep:      {sweep:.1f}s for {len(results)} trials (+ ray.init {init:.1f}s once); "
            f"largest val Dice difference to the direct runs {dice_gap:.2e}"
        )
        print(
            f"RESULT sweep_over_direct={sweep / direct:.3f} sweep_s={sweep:.1f} direct_s={direct:.1f} "
            f"ray_init_s={init:.1f} trials={args.trials} epochs={args.epochs} img_size={args.img_size} "
            f"reuse_actors={args.reuse_actors} wandb={args.wandb} checkpoint_every={args.checkpoint_every} "
            f"max_val_dice_gap={dice_gap:.2e}"
        )


if __name__ == "__main__":
    main()
