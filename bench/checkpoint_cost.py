"""What a trial checkpoint costs on the trial's critical path, against one epoch, and what the sweep's
checkpoint policy (every N epochs, ASHA's rungs and the last epoch) leaves of it.

A trial's training thread waits while its state is written (`Trainer.save`: weights, best weights,
optimizer) and Ray copies that folder into the sweep's storage (`tune.report(checkpoint=...)` persists
synchronously, with pyarrow, like here). Both are timed on the student the sweeps train, after training
it for one epoch so that the optimizer state is full, and compared with that student's epoch (train +
validation) on the same data.

    python bench/checkpoint_cost.py --img-size 64 --train-images 160 [--space kd.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import bench_data

from core.config import config_from_dict
from core.train import Trainer
from tune.records import CHECKPOINT_FILE
from tune.space import checkpoint_epochs, load_space


def persist_seconds(trainer: Trainer, workdir: Path, repeats: int) -> tuple[float, float, int]:
    """Median seconds to write the training state and to copy it into storage as Ray does; bytes written."""
    import pyarrow.fs as pafs
    from ray.train._internal.storage import _pyarrow_fs_copy_files

    local = pafs.LocalFileSystem()
    save, copy = [], []
    for i in range(repeats):
        folder = workdir / f"tmp{i}"
        start = time.perf_counter()
        path = trainer.save(folder / CHECKPOINT_FILE)
        save.append(time.perf_counter() - start)
        start = time.perf_counter()
        destination = workdir / "storage" / f"checkpoint_{i:06d}"
        local.create_dir(str(destination))
        _pyarrow_fs_copy_files(str(folder), str(destination), source_filesystem=local, destination_filesystem=local)
        copy.append(time.perf_counter() - start)
    return statistics.median(save), statistics.median(copy), path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median) after the first")
    parser.add_argument("--repeats", type=int, default=5, help="checkpoints written (median)")
    parser.add_argument("--space", default="kd.yaml", help="whose checkpoint policy to apply")
    args = parser.parse_args()
    space = load_space(args.space)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data, label = bench_data(args.train_images, tmp, args.img_size)
        cfg = config_from_dict(
            dict(
                mode="baseline",
                data_root=str(data.root),
                img_size=args.img_size,
                batch_size=8,
                epochs=args.epochs + 1,
                encoder_weights=None,
                num_workers=0,
                cache_dir=str(tmp / "cache"),
                save_dir=str(tmp / "runs"),
                student_backbone=space.base_config().student_backbone,
            )
        )
        trainer = Trainer(cfg, data=data)
        print(f"{label}; {len(data.train)} images, {args.img_size}px, student {cfg.student_backbone}")
        trainer.run_epoch()  # warm-up; fills the optimizer state a checkpoint carries
        epoch = statistics.median(trainer.run_epoch().seconds for _ in range(args.epochs))
        save, copy, size = persist_seconds(trainer, tmp / "ckpt", args.repeats)
        per_checkpoint = save + copy
        a = space.asha
        kept = checkpoint_epochs(space.search.checkpoint_every, a.max_t, a.rungs())
        every_epoch = per_checkpoint / epoch
        print(
            f"epoch {epoch:.2f}s; checkpoint {size / 2**20:.0f} MiB: write {save:.3f}s + copy to storage "
            f"{copy:.3f}s = {per_checkpoint:.3f}s per checkpoint"
        )
        print(
            f"{space.source}: checkpoints at epochs {kept} of {a.max_t} (checkpoint_every "
            f"{space.search.checkpoint_every}, rungs {a.rungs()}): a trial that runs to max_t pays "
            f"{every_epoch * len(kept) / a.max_t:.3f} of an epoch per epoch instead of {every_epoch:.3f}"
        )
        print(
            f"RESULT checkpoint_seconds_over_epoch={every_epoch:.3f} checkpoint_s={per_checkpoint:.3f} "
            f"write_s={save:.3f} copy_s={copy:.3f} epoch_s={epoch:.2f} checkpoint_mib={size / 2**20:.0f} "
            f"policy_over_epoch={every_epoch * len(kept) / a.max_t:.3f} policy_checkpoints={len(kept)} "
            f"max_t={a.max_t} img_size={args.img_size}"
        )


if __name__ == "__main__":
    main()
