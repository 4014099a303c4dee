"""What ASHA saves: the same N configurations (drawn once, seeded) run through Ray Tune twice, once with
the sweep's ASHA scheduler and once to the end (FIFO), and compared on trial-epochs spent and on the best
validation Dice found.

Goal: ASHA spends <= 0.40 of FIFO's epochs and finds >= 0.98 of FIFO's best Dice. Trials train exactly as
in a sweep (tune.sweep.trainable.train_trial, the space's resources, concurrency, ASHA settings and checkpoint
policy; W&B off); the teacher is trained once first. Both runs see the same configurations in the same
order, and a trial's epochs are identical in both (checked: same seed, same data).

    python bench/asha_vs_fifo.py --space demo.yaml --configs 12 --train-images 160
    python bench/asha_vs_fifo.py --max-t 16 --grace-period 2 --reduction-factor 3   # kd.yaml's proportions
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from common import bench_data, start_local_ray

from core.train import Trainer
from tune.sampling import Sampled, candidate_config, suggest
from tune.space import load_space


def draw_configs(space, n: int, seed: int) -> list[dict]:
    """n configurations from the space's distributions (Optuna's random sampler), as confirmation
    candidates: `{name, arm, params}`, which the trainable trains with a given seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for i in range(n):
        trial = study.ask()
        params = {}
        for parameter in space.parameters:
            params.update(suggest(parameter, trial))
        configs.append(candidate_config(f"c{i}", Sampled("kd" if space.distillation else "baseline", params)))
    return configs


def run(space, base, configs: list[dict], scheduler, storage: Path, name: str) -> tuple[dict, float]:
    """{config name: [(epoch, val_dice, best_val_dice), ...]} and wall seconds of one Tuner run."""
    from ray import tune

    # the sweep's own trial function and scheduler
    from tune.records import SweepPaths
    from tune.sweep.runtime import SweepRun, trainable_for

    run = SweepRun(space, SweepPaths.local(storage), use_gpu=False, wandb_mode="disabled")
    trainable = trainable_for(run, base, rung_epochs=space.asha.rungs())
    tuner = tune.Tuner(
        trainable,
        param_space={"candidate": tune.grid_search(configs), "seed": base.seed},
        tune_config=tune.TuneConfig(
            scheduler=scheduler,
            metric=space.objective.metric,
            mode=space.objective.mode,
            max_concurrent_trials=space.search.max_concurrent_trials,
            reuse_actors=space.search.reuse_actors,
        ),
        run_config=tune.RunConfig(
            storage_path=str(storage), name=name, verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=1)
        ),
    )
    start = time.perf_counter()
    results = tuner.fit()
    seconds = time.perf_counter() - start
    assert not results.errors, results.errors
    curves = {}
    for r in results:
        frame = r.metrics_dataframe
        curves[r.config["candidate"]["name"]] = list(zip(frame["epoch"], frame["val_dice"], frame["best_val_dice"]))
    return curves, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="demo.yaml")
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--teacher-epochs", type=int, help="default: the space's teacher.train epochs")
    parser.add_argument("--seed", type=int, default=0, help="draws the configurations")
    parser.add_argument("--max-t", type=int, help="override the space's asha.max_t (epochs)")
    parser.add_argument("--grace-period", type=int, help="override the space's asha.grace_period")
    parser.add_argument("--reduction-factor", type=int, help="override the space's asha.reduction_factor")
    args = parser.parse_args()
    space = load_space(args.space)
    space.asha = dataclasses.replace(
        space.asha,
        **{
            k: v
            for k, v in (
                ("max_t", args.max_t),
                ("grace_period", args.grace_period),
                ("reduction_factor", args.reduction_factor),
            )
            if v is not None
        },
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data, label = bench_data(args.train_images, tmp, space.base_config().img_size)
        overrides = dict(data_root=str(data.root), cache_dir=str(tmp / "cache"), save_dir=str(tmp / "runs"))
        base = space.base_config().replace(**overrides)
        a = space.asha
        print(
            f"{label}; {len(data.train)} images, {base.img_size}px; {args.configs} configurations of "
            f"{space.source}; ASHA max_t {a.max_t}, grace {a.grace_period}, reduction {a.reduction_factor}; "
            f"{space.search.max_concurrent_trials} trials at a time"
        )
        if space.distillation:
            teacher_cfg = space.teacher_config().replace(**overrides)
            if args.teacher_epochs:
                teacher_cfg = teacher_cfg.replace(epochs=args.teacher_epochs)
            start = time.perf_counter()
            teacher = Trainer(teacher_cfg, data=data)
            for _ in teacher.epochs():
                pass
            base = base.replace(teacher_checkpoint=str(teacher.save_best(tmp / "teacher.pt")))
            print(
                f"teacher: {teacher_cfg.epochs} epochs in {time.perf_counter() - start:.0f}s, "
                f"val Dice {teacher.best_val_dice:.4f}"
            )
            del teacher
        configs = draw_configs(space, args.configs, args.seed)

        import ray
        from ray.tune.schedulers import FIFOScheduler

        from tune.sweep.runtime import asha_scheduler

        start_local_ray()
        try:
            asha, asha_s = run(space, base, configs, asha_scheduler(space), tmp / "ray", "asha")
            fifo, fifo_s = run(space, base, configs, FIFOScheduler(), tmp / "ray", "fifo")
        finally:
            ray.shutdown()

    # A trial's first epochs are the same whether or not ASHA later stops it.
    gap = max(abs(x[1] - y[1]) for name in configs for x, y in zip(asha[name["name"]], fifo[name["name"]]))
    best = {k: max(c[-1][2] for c in curves.values()) for k, curves in (("asha", asha), ("fifo", fifo))}
    winner = {k: max(curves, key=lambda n: curves[n][-1][2]) for k, curves in (("asha", asha), ("fifo", fifo))}
    epochs = {k: sum(int(c[-1][0]) for c in curves.values()) for k, curves in (("asha", asha), ("fifo", fifo))}
    for c in configs:
        n = c["name"]
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["params"].items())
        print(
            f"  {n:>3}  {params:<80}  ASHA {len(asha[n]):>2} epochs best {asha[n][-1][2]:.4f}   "
            f"FIFO best {fifo[n][-1][2]:.4f}"
        )
    print(
        f"ASHA: {epochs['asha']} trial-epochs in {asha_s:.0f}s, best {best['asha']:.4f} ({winner['asha']}); "
        f"FIFO: {epochs['fifo']} trial-epochs in {fifo_s:.0f}s, best {best['fifo']:.4f} ({winner['fifo']}); "
        f"largest val Dice difference on shared epochs {gap:.1e}"
    )
    # How well a rung predicts the end: rank correlation, over FIFO's trials, of the objective at each rung
    # with the objective at max_t (ASHA can keep the best configuration only where this is high).
    from scipy.stats import spearmanr

    final = [fifo[c["name"]][-1][2] for c in configs]
    for rung in a.rungs():
        rho = spearmanr([fifo[c["name"]][rung - 1][2] for c in configs], final).statistic
        print(
            f"rung at epoch {rung}: Spearman rho {rho:+.2f} between FIFO trials' {space.objective.metric} there "
            f"and at epoch {a.max_t}"
        )
    print(
        f"RESULT asha_epochs_over_fifo={epochs['asha'] / epochs['fifo']:.3f} "
        f"asha_best_over_fifo_best={best['asha'] / best['fifo']:.3f} asha_seconds_over_fifo={asha_s / fifo_s:.3f} "
        f"asha_epochs={epochs['asha']} fifo_epochs={epochs['fifo']} asha_best={best['asha']:.4f} "
        f"fifo_best={best['fifo']:.4f} same_winner={winner['asha'] == winner['fifo']} configs={args.configs} "
        f"max_shared_epoch_gap={gap:.1e}"
    )


if __name__ == "__main__":
    main()
