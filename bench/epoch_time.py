"""Seconds per training epoch of baseline, distillation and teacher runs on the CPU (or GPU if present).

Times `Trainer.run_epoch()` (train + validation) on N training images at a given resolution, on real
data from ../shared/data/polyp when present (else synthetic demo data), and reports the median over
repeats plus seconds per training image. The teacher for distillation is random-initialised: its speed
does not depend on its weights.

    python bench/epoch_time.py --img-size 320 --train-images 64 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from common import bench_data

from core.config import config_from_dict
from core.data import PolypData
from core.train import Trainer


def time_mode(mode: str, data: PolypData, args, workdir: Path) -> list[float]:
    values = dict(
        data_root=str(data.root),
        save_dir=str(workdir),
        img_size=args.img_size,
        batch_size=args.batch_size,
        epochs=args.repeats + 1,
        encoder_weights=None,
        num_workers=args.num_workers,
        mode=mode,
        val_fraction=0.1,
    )
    if mode == "distillation":
        teacher = Trainer(config_from_dict({**values, "mode": "teacher"}), data=data)
        values["teacher_checkpoint"] = str(teacher.save(workdir / "teacher.pt"))
        del teacher
    trainer = Trainer(config_from_dict(values), data=data)
    trainer.run_epoch()  # warm-up: allocator, thread pools, first-touch of files
    return [trainer.run_epoch().seconds for _ in range(args.repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--modes", default="baseline,distillation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, label = bench_data(args.train_images, Path(tmp), args.img_size)
        n = round(len(data.train) * 0.9)
        print(
            f"{label}; {n} training + {len(data.train) - n} validation images, {args.img_size}px, "
            f"batch {args.batch_size}, {torch.get_num_threads()} threads, device "
            f"{'cuda' if torch.cuda.is_available() else 'cpu'}; median of {args.repeats} epochs"
        )
        medians = {}
        for mode in args.modes.split(","):
            seconds = time_mode(mode, data, args, Path(tmp))
            medians[mode] = statistics.median(seconds)
            print(
                f"{mode:<13} {medians[mode]:8.2f} s/epoch  {medians[mode] / n * 1000:8.1f} ms/train image  "
                f"(runs: {', '.join(f'{s:.2f}' for s in seconds)})"
            )
        fields = " ".join(f"{m}_s_per_epoch={s:.3f}" for m, s in medians.items())
        ratio = (
            f" distillation_over_baseline={medians['distillation'] / medians['baseline']:.2f}"
            if {"baseline", "distillation"} <= set(medians)
            else ""
        )
        print(f"RESULT {fields}{ratio} img_size={args.img_size} train_images={n}")


if __name__ == "__main__":
    main()
