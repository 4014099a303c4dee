"""How much the validation split inflates validation Dice on real polyp data: a random split, against
`val_split: grouped` with the old name-only groups (`core.split.frame_groups`: runs of one name prefix whose
frame numbers follow without a gap, imposed through a `val_groups` CSV written into the temp dir), against
`val_split: grouped` with the content groups (core/split.py: name order and 32x32 grey thumbnails).

Trains the same student (same config, seed, split seed and budget) once per split on the whole TrainDataset
and reports each run's best validation Dice and validation size, plus, for each split, how many of its
ClinicDB validation frames have a near-identical frame in training (signature correlation above --near,
0.95). Ends with `RESULT random_val_dice=... name_grouped_val_dice=... grouped_val_dice=...
n_val_random=... n_val_name=... n_val_grouped=... leak_random=... leak_name=... leak_grouped=...`
(leak_*: ClinicDB validation frames with a near-identical training frame, out of clinic_val_*).

    python bench/val_split.py [--img-size 64 --epochs 12] [--splits random,name,grouped]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from common import REAL_DATA
from val_split_groups import leaked

from core.config import config_from_dict
from core.data import discover
from core.split import frame_groups, image_signatures, training_split
from core.train import Trainer

SPLITS = ("random", "name", "grouped")


def write_name_groups(stems: list[str], path: Path) -> int:
    """The old name-only groups as a `val_groups` CSV; returns how many groups."""
    groups = frame_groups(stems)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stem", "group"])
        for i, group in enumerate(groups):
            writer.writerows([stem, f"g{i:04d}"] for stem in group)
    return len(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--near", type=float, default=0.95, help="correlation that counts as near-identical")
    parser.add_argument(
        "--splits",
        default=",".join(SPLITS),
        help="which to train, of random, name (old "
        "name-only groups), grouped (content groups); the RESULT line needs all three",
    )
    args = parser.parse_args()
    splits = args.splits.split(",")
    if not set(splits) <= set(SPLITS):
        raise SystemExit(f"--splits: {args.splits!r}; allowed: {', '.join(SPLITS)}")
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found; this bench measures real videos only")
    data = discover(REAL_DATA)
    stems = sorted(p.stem for p in data.train)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        name_csv = Path(tmp) / "name_groups.csv"
        n_name_groups = write_name_groups(stems, name_csv)
        signatures = image_signatures(sorted(data.train, key=lambda p: p.stem), cache)
        row = {s: i for i, s in enumerate(stems)}
        configs = {}
        for how in splits:
            grouped = how != "random"
            configs[how] = config_from_dict(
                dict(
                    data_root=str(REAL_DATA),
                    save_dir=tmp,
                    experiment_name=how,
                    mode="baseline",
                    encoder_weights=None,
                    img_size=args.img_size,
                    batch_size=args.batch_size,
                    epochs=args.epochs,
                    learning_rate=args.learning_rate,
                    val_fraction=args.val_fraction,
                    val_split="grouped" if grouped else "random",
                    val_groups=str(name_csv) if how == "name" else None,
                    num_workers=1,
                    device="cpu",
                    cache_dir=cache,
                ),
                source="bench",
            )
            split = training_split(configs[how], data.train)
            train, val = [p.stem for p in split.train], [p.stem for p in split.val]
            leak, clinic = leaked(signatures, row, train, val, args.near)
            groups = f", {len(split.groups)} groups" if grouped else ""
            print(
                f"{how:<8} split{groups}: {len(val)} validation images ({clinic} ClinicDB); {leak} of its "
                f"{clinic} ClinicDB validation frames have a training frame correlating > {args.near}"
            )
            results[how] = {"n_val": len(val), "leak": leak, "clinic": clinic, "sha": split.record["val_sha256"]}
        print(f"{len(stems)} training images; name-only groups (frame_groups): {n_name_groups}")
        for how in splits:
            start = time.perf_counter()
            trainer = Trainer(configs[how], data=data)
            assert trainer.split["val_sha256"] == results[how]["sha"], "Trainer drew a different split"
            for r in trainer.epochs():
                print(f"  {how:<8} epoch {r.epoch:2d}  loss {r.train_loss:.4f}  val Dice {r.val_dice:.4f}", flush=True)
            best = trainer.best_epoch
            results[how]["dice"] = best["val_dice"]
            print(
                f"{how}: best val Dice {best['val_dice']:.4f} (epoch {best['epoch']}), "
                f"{trainer.split['n_val']} validation images, {time.perf_counter() - start:.0f}s",
                flush=True,
            )
    if set(results) != set(SPLITS):
        return
    r = results
    print(
        f"RESULT random_val_dice={r['random']['dice']:.4f} name_grouped_val_dice={r['name']['dice']:.4f} "
        f"grouped_val_dice={r['grouped']['dice']:.4f} "
        f"grouped_minus_random={r['grouped']['dice'] - r['random']['dice']:+.4f} "
        + " ".join(f"n_val_{h}={r[h]['n_val']}" for h in SPLITS)
        + " "
        + " ".join(f"leak_{h}={r[h]['leak']}" for h in SPLITS)
        + " "
        + " ".join(f"clinic_val_{h}={r[h]['clinic']}" for h in SPLITS)
    )


if __name__ == "__main__":
    main()
