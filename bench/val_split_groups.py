"""How well `val_split: grouped` keeps near-duplicate frames off both sides of the split, on real polyp data.

Reports the signature cost (first build and cached), the groups that names and pixels give (all, ClinicDB,
Kvasir, the largest) against the name-only runs of `frame_groups`, and for each split (name-only grouped,
content grouped, random) how many ClinicDB validation frames have a near-identical frame in training:
signature correlation above --near (0.95, 32x32 grey thumbnails), at --val-fraction and --split-seed, and
summed over --seeds seeds. Target: content-grouped leaks far fewer frames than name-only and random, with
ClinicDB near its ~29 videos. Ends with `RESULT clinicdb_groups=... leak_content=... leak_names=... leak_random=...`.

    python bench/val_split_groups.py [--val-fraction 0.1 --split-seed 42 --seeds 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from common import REAL_DATA

from core.config import config_from_dict
from core.data import discover
from core.split import frame_groups, image_signatures, split_stems, training_split


def describe(name: str, groups: list[list[str]]) -> str:
    clinic = sum(g[0].startswith("clinicdb") for g in groups)
    kvasir = sum(g[0].startswith("kvasir") for g in groups)
    largest = max(groups, key=len)
    return (
        f"{name}: {len(groups)} groups ({clinic} ClinicDB, {kvasir} Kvasir), largest {len(largest)} "
        f"(first {largest[0]})"
    )


def leaked(
    signatures: np.ndarray, row: dict[str, int], train: list[str], val: list[str], near: float
) -> tuple[int, int]:
    """(ClinicDB validation frames with a training frame correlating above `near`, ClinicDB validation frames)."""
    clinic = [row[s] for s in val if s.startswith("clinicdb")]
    if not clinic:
        return 0, 0
    best = (signatures[clinic] @ signatures[[row[s] for s in train]].T).max(axis=1)
    return int((best > near).sum()), len(clinic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=20, help="split seeds 0..N-1 for the summed leak")
    parser.add_argument("--near", type=float, default=0.95, help="correlation that counts as near-identical")
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found; this bench measures real videos only")
    pairs = discover(REAL_DATA).train
    stems = sorted(p.stem for p in pairs)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        signatures = image_signatures(sorted(pairs, key=lambda p: p.stem), cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        image_signatures(pairs, cache)
        cached = time.perf_counter() - start
        print(f"signatures of {len(pairs)} images: {first:.2f}s first, {cached:.3f}s cached")
        row = {s: i for i, s in enumerate(stems)}
        base = dict(data_root=str(REAL_DATA), val_fraction=args.val_fraction, cache_dir=cache, encoder_weights=None)
        names = frame_groups(stems)
        content = training_split(config_from_dict({**base, "val_split": "grouped"}, source="bench"), pairs).groups
        print(describe("name-only runs", names))
        print(describe("names + content", content))

        def content_split(seed: int) -> tuple[list[str], list[str]]:
            split = training_split(
                config_from_dict({**base, "val_split": "grouped", "split_seed": seed}, source="bench"), pairs
            )
            return [p.stem for p in split.train], [p.stem for p in split.val]

        splits = {
            "names": lambda seed: split_stems(stems, args.val_fraction, seed, "grouped", names),
            "content": content_split,
            "random": lambda seed: split_stems(stems, args.val_fraction, seed, "random"),
        }
        results = {}
        for name, split in splits.items():
            leak, n_val = leaked(signatures, row, *split(args.split_seed), args.near)
            total = np.sum([leaked(signatures, row, *split(seed), args.near) for seed in range(args.seeds)], axis=0)
            results[name] = leak
            print(
                f"{name:8s}: split_seed {args.split_seed}: {leak} of {n_val} ClinicDB validation frames have a "
                f"training frame above {args.near}; seeds 0-{args.seeds - 1}: {total[0]} of {total[1]}"
            )
    clinic = sum(g[0].startswith("clinicdb") for g in content)
    print(
        f"RESULT clinicdb_groups={clinic} leak_content={results['content']} leak_names={results['names']} "
        f"leak_random={results['random']}"
    )


if __name__ == "__main__":
    main()
