"""What distillation costs over a baseline epoch, with the teacher run online vs. its logits cached,
and how far cached KD is from online KD.

Target: KD-cached / baseline <= 1.10 seconds per epoch (at 320 px and at 64 px).
Measures, on the same data, resolution and seed: median seconds per epoch (after one warm-up epoch) of
baseline, KD-online and KD-cached; the one-off cost of building the caches; mean |Δlogit| between the
cached logits moved by the augmentation and the teacher run on the augmented image; validation Dice
after the same epochs of KD with each.

    python bench/kd_cost.py --img-size 320 --train-images 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import bench_data

from core.cache import decoded_samples, teacher_logits
from core.config import config_from_dict
from core.data import TrainSet, normalize
from core.models import load_frozen_teacher
from core.split import training_split
from core.train import Trainer


def logit_fidelity(cfg, data, cache_dir: Path, batches: int = 4) -> tuple[float, float]:
    """Mean |cached-and-moved − teacher(augmented image)| and mean |teacher logit|, over train batches."""
    samples = decoded_samples(data.train, cfg.img_size, cache_dir)
    cached = teacher_logits(cfg.teacher_checkpoint, samples, cache_dir, torch.device("cpu"))
    train_pairs = training_split(cfg, data.train).train
    dataset = TrainSet(samples.images, samples.masks, samples.index_of(train_pairs), cfg.seed, cached)
    teacher = load_frozen_teacher(cfg.teacher_checkpoint, torch.device("cpu"))
    diffs, scale = [], []
    with torch.no_grad():
        for b in range(batches):
            items = [dataset[(1, (b * cfg.batch_size + i) % len(dataset))] for i in range(cfg.batch_size)]
            images = normalize(torch.stack([x[0] for x in items]))
            moved = torch.stack([x[2] for x in items])
            online = teacher(images)
            diffs.append((moved - online).abs().mean().item())
            scale.append(online.abs().mean().item())
    return float(np.mean(diffs)), float(np.mean(scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--train-images", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data, label = bench_data(args.train_images, tmp, args.img_size)
        base = dict(
            data_root=str(data.root),
            save_dir=str(tmp),
            img_size=args.img_size,
            batch_size=args.batch_size,
            epochs=args.epochs + 1,
            encoder_weights=None,
            num_workers=0,
            val_fraction=0.1,
            learning_rate=1e-3,
            cache_dir=str(tmp / "cache"),
            alpha=0.5,
            temperature=4.0,
        )
        print(
            f"{label}; {len(data.train)} images (90% train, 10% val), {args.img_size}px, batch {args.batch_size}, "
            f"{torch.get_num_threads()} threads, {'cuda' if torch.cuda.is_available() else 'cpu'}; "
            f"median of {args.epochs} epochs after 1 warm-up"
        )

        started = time.perf_counter()
        teacher = Trainer(config_from_dict({**base, "mode": "teacher", "epochs": args.teacher_epochs}), data=data)
        for _ in teacher.epochs():
            pass
        teacher_path = teacher.save(tmp / "teacher.pt")
        print(
            f"teacher trained for {args.teacher_epochs} epochs in {time.perf_counter() - started:.1f}s "
            f"(val Dice {teacher.best_val_dice:.4f})"
        )
        del teacher

        runs = {
            "baseline": {"mode": "baseline"},
            "kd_online": {"mode": "distillation", "teacher_logits": "online"},
            "kd_cached": {"mode": "distillation", "teacher_logits": "cached"},
        }
        seconds, dice = {}, {}
        for name, changes in runs.items():
            cfg = config_from_dict({**base, **changes, "teacher_checkpoint": str(teacher_path)})
            started = time.perf_counter()
            trainer = Trainer(cfg, data=data)
            setup = time.perf_counter() - started
            epochs = [r.seconds for r in trainer.epochs()]
            seconds[name], dice[name] = statistics.median(epochs[1:]), trainer.history[-1]["val_dice"]
            print(
                f"{name:<10} {seconds[name]:7.2f} s/epoch  (epochs: {', '.join(f'{s:.2f}' for s in epochs)}; "
                f"setup incl. cache build {setup:.1f}s)  val Dice after {cfg.epochs} epochs {dice[name]:.4f}"
            )
        delta, scale = logit_fidelity(cfg, data, tmp / "cache")
        print(
            f"cached vs online teacher logits on augmented batches: mean |Δlogit| {delta:.4f} "
            f"(mean |logit| {scale:.3f}, {100 * delta / scale:.1f}%)"
        )
        print(
            f"RESULT kd_cached_over_baseline={seconds['kd_cached'] / seconds['baseline']:.2f} "
            f"kd_online_over_baseline={seconds['kd_online'] / seconds['baseline']:.2f} "
            f"mean_abs_dlogit={delta:.4f} val_dice_cached={dice['kd_cached']:.4f} "
            f"val_dice_online={dice['kd_online']:.4f} img_size={args.img_size}"
        )


if __name__ == "__main__":
    main()
