"""What Ray Tune adds to the training itself: an N-trial sweep (FIFO, one trial at a time) against
the same N trials run one after another directly through core (`core.train.run_training`).

Target: sweep wall time / sum of direct runs <= 1.10. Both sides checkpoint every epoch and score
the test sets at the end; the sweep also pays for trial processes, result handling and storage.
`ray.init` is timed separately (once per sweep, not per trial).

    python bench/sweep_overhead.py --trials 4 --epochs 5 --img-size 64 --train-images 160
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import bench_data

from core.config import config_from_dict  # noqa: E402
from core.train import Trainer, run_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--reuse-actors", action="store_true", help="let Tune reuse one trial process")
    args = parser.parse_args()
    learning_rates = [1e-3 * (1.5 ** i) for i in range(args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, label = bench_data(args.train_images, tmp, args.img_size)
        base = dict(mode="baseline", data_root=str(data.root), img_size=args.img_size, batch_size=8,
                    epochs=args.epochs, encoder_weights=None, num_workers=0, cache_dir=str(tmp / "cache"))
        print(f"{label}; {len(data.train)} images, {args.img_size}px, {args.trials} baseline trials x "
              f"{args.epochs} epochs")
        Trainer(config_from_dict({**base, "save_dir": str(tmp / "warm")}), data=data)  # build the cache once

        direct = 0.0
        for i, lr in enumerate(learning_rates):
            start = time.perf_counter()
            cfg = config_from_dict({**base, "learning_rate": lr, "save_dir": str(tmp / "direct"),
                                    "experiment_name": f"t{i}"})
            run_training(Trainer(cfg, data=data), log=lambda *_: None)
            direct += time.perf_counter() - start
        print(f"direct through core: {direct:.1f}s for {args.trials} trials")

        os.environ["WANDB_MODE"] = "disabled"
        # Trial processes import core/ and tune/ from the repository, like `python -m tune.search` from its root.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                     os.environ.get("PYTHONPATH", "")])
        import ray
        from ray import tune
        from ray.tune.schedulers import FIFOScheduler

        from tune.trainable import train_trial

        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        init = time.perf_counter() - start
        try:
            trainable = tune.with_resources(tune.with_parameters(train_trial, base=base), {"cpu": os.cpu_count()})
            tuner = tune.Tuner(
                trainable, param_space={"learning_rate": tune.grid_search(learning_rates)},
                tune_config=tune.TuneConfig(scheduler=FIFOScheduler(), max_concurrent_trials=1,
                                            reuse_actors=args.reuse_actors),
                run_config=tune.RunConfig(storage_path=str(tmp / "ray"), name="overhead", verbose=0,
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
            start = time.perf_counter()
            results = tuner.fit()
            sweep = time.perf_counter() - start
        finally:
            ray.shutdown()
        assert not results.errors, results.errors
        print(f"Ray Tune sweep:      {sweep:.1f}s for {len(results)} trials (+ ray.init {init:.1f}s once)")
        print(f"RESULT sweep_over_direct={sweep / direct:.3f} sweep_s={sweep:.1f} direct_s={direct:.1f} "
              f"ray_init_s={init:.1f} trials={args.trials} epochs={args.epochs} img_size={args.img_size} "
              f"reuse_actors={args.reuse_actors}")


if __name__ == "__main__":
    main()
