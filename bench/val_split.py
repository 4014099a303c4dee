"""How much a random validation split inflates validation Dice on real polyp data, against a split that
keeps each video's run of consecutive frames on one side (`val_split: grouped`, core/split.py).

Trains the same student (same config, seed and budget) twice on the whole TrainDataset, once per split,
and reports each run's best validation Dice, plus how many random-split validation frames have a
neighbouring frame of the same run in training. Ends with
`RESULT grouped_minus_random_val_dice=... random_val_with_neighbour_in_train=...`.

    python bench/val_split.py [--img-size 64 --epochs 8] [--splits random|grouped]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import REAL_DATA

from core.config import config_from_dict  # noqa: E402
from core.data import discover  # noqa: E402
from core.split import frame_groups, split_stems  # noqa: E402
from core.train import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--splits", default="random,grouped", help="which to train (one per process runs both "
                        "at once on two cores; the RESULT line needs both)")
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found; this bench measures real videos only")
    data = discover(REAL_DATA)
    stems = [p.stem for p in data.train]
    groups = frame_groups(stems)
    group_of = {s: i for i, g in enumerate(groups) for s in g}
    train, val = split_stems(stems, args.val_fraction, 42, "random")
    in_train = {group_of[s] for s in train}
    leaked = sum(group_of[s] in in_train for s in val) / len(val)
    print(f"{len(stems)} training images in {len(groups)} groups "
          f"({sum(len(g) > 1 for g in groups)} runs of consecutive frames, largest {max(map(len, groups))}); "
          f"random split: {leaked:.1%} of validation frames have a frame of their run in training")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for how in args.splits.split(","):
            cfg = config_from_dict(dict(
                data_root=str(REAL_DATA), save_dir=tmp, experiment_name=how, mode="baseline",
                encoder_weights=None, img_size=args.img_size, batch_size=args.batch_size, epochs=args.epochs,
                learning_rate=args.learning_rate, val_fraction=args.val_fraction, val_split=how,
                num_workers=1, device="cpu", cache_dir=str(Path(tmp) / "cache")), source="bench")
            start = time.perf_counter()
            trainer = Trainer(cfg, data=data)
            for r in trainer.epochs():
                print(f"  {how:<8} epoch {r.epoch:2d}  loss {r.train_loss:.4f}  val Dice {r.val_dice:.4f}")
            best = trainer.best_epoch
            results[how] = best["val_dice"]
            print(f"{how}: best val Dice {best['val_dice']:.4f} (epoch {best['epoch']}), "
                  f"{trainer.split['n_val']} validation images, {time.perf_counter() - start:.0f}s")
    if set(results) != {"random", "grouped"}:
        return
    print(f"RESULT grouped_minus_random_val_dice={results['grouped'] - results['random']:+.4f} "
          f"random_val_dice={results['random']:.4f} grouped_val_dice={results['grouped']:.4f} "
          f"random_val_with_neighbour_in_train={leaked:.3f}")


if __name__ == "__main__":
    main()
