"""Does the grouped validation split represent every source, and does it find ClinicDB's videos? On the real
polyp data (1450 training frames: Kvasir-SEG and CVC-ClinicDB).

1. Video cuts: for consecutive ClinicDB training frames, the link score within a video and across a cut,
   for the grey correlation the split used before (32x32 grey thumbnails) and for `link_similarity` (the
   source's shared look taken out): medians, 5th/95th percentiles, and at each one's threshold how many
   in-video links break and how many cuts are missed. The truth is CLINICDB_VIDEOS: the frame ranges of
   ClinicDB's 29 videos (every cut visible on contact sheets of the lowest-scoring links agrees with them).
2. Over split seeds 0..N-1 at --val-fraction (kd.yaml's 0.1): the validation size against
   val_fraction x N, each source's share of validation against its share of the data (min/max), the
   groups per source, and near-duplicate leaks: validation frames with a training frame whose grey
   signature correlates above 0.98 and above 0.95, per source (max over seeds).
Ends with `RESULT size_dev_pct=(min,max) share_dev_points=(min,max) clinicdb_groups=... leak98_max=...`.

    python bench/val_split_strata.py [--val-fraction 0.1 --seeds 20]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import tempfile

import numpy as np
from common import REAL_DATA

from core.data import discover
from core.split import (
    DEFAULT_GROUP_PATTERN,
    SEQUENCE_SIMILARITY,
    LinkFeatures,
    content_groups,
    grey_signatures,
    image_thumbnails,
    source_of,
    split_stems,
)

# First frame of each of CVC-ClinicDB's 29 videos (frames 1-612; PraNet's test frames are among them).
CLINICDB_VIDEOS = [1, 26, 51, 68, 79, 104, 127, 152, 178, 200, 206, 228, 253, 278, 298, 318, 343, 364, 384,
                   409, 429, 448, 467, 479, 504, 529, 547, 572, 592]  # fmt: skip
OLD_THRESHOLD = 0.6  # the grey correlation's threshold before


def cut_report(name: str, scores: np.ndarray, cut: np.ndarray, threshold: float) -> str:
    within, across = scores[~cut], scores[cut]
    return (
        f"{name}: within a video median {np.median(within):.3f} (5 % below {np.percentile(within, 5):.3f}); "
        f"across a cut median {np.median(across):.3f} (95 % below {np.percentile(across, 95):.3f}); "
        f"at {threshold}: {(within <= threshold).sum()} of {len(within)} in-video links broken, "
        f"{(across > threshold).sum()} of {len(across)} cuts missed"
    )


def leaks(signatures: np.ndarray, row: dict[str, int], train: list[str], val: list[str], above: float) -> int:
    best = (signatures[[row[s] for s in val]] @ signatures[[row[s] for s in train]].T).max(axis=1)
    return int((best > above).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found; this bench measures real videos only")
    pairs = sorted(discover(REAL_DATA).train, key=lambda p: p.stem)
    stems = [p.stem for p in pairs]
    row = {s: i for i, s in enumerate(stems)}
    with tempfile.TemporaryDirectory() as cache:
        thumbs = image_thumbnails(pairs, cache)
        groups = content_groups(pairs, DEFAULT_GROUP_PATTERN, cache)
    grey = grey_signatures(thumbs)
    sources = {s: source_of(s) for s in stems}

    clinic = sorted((s for s in stems if sources[s] == "clinicdb"), key=lambda s: int(s.rsplit("-", 1)[1]))
    rows = [row[s] for s in clinic]
    video = np.array([bisect.bisect_right(CLINICDB_VIDEOS, int(s.rsplit("-", 1)[1])) for s in clinic])
    cut = video[:-1] != video[1:]
    features = LinkFeatures.of(thumbs[rows], rows)
    old = np.array([float(grey[a] @ grey[b]) for a, b in itertools.pairwise(rows)])
    new = np.array([features.similarity(a, b) for a, b in itertools.pairwise(rows)])
    print(f"ClinicDB: {len(clinic)} training frames of {len(set(video))} videos, {cut.sum()} cuts between them")
    print(cut_report("grey correlation (before)", old, cut, OLD_THRESHOLD))
    print(cut_report("link similarity (now)", new, cut, SEQUENCE_SIMILARITY))

    per_source = {src: sum(sources[g[0]] == src for g in groups) for src in sorted(set(sources.values()))}
    n_source = {src: sum(v == src for v in sources.values()) for src in per_source}
    print(f"groups: {len(groups)} ({', '.join(f'{src} {n}' for src, n in per_source.items())})")
    target = args.val_fraction * len(stems)
    size_dev, share_dev = [], []
    leak = {(src, t): [] for src in per_source for t in (0.98, 0.95)}
    for seed in range(args.seeds):
        train, val = split_stems(stems, args.val_fraction, seed, "grouped", groups, sources)
        size_dev.append(100 * (len(val) - target) / target)
        for src in per_source:
            val_src = [s for s in val if sources[s] == src]
            share_dev.append(100 * (len(val_src) / len(val) - n_source[src] / len(stems)))
            for t in (0.98, 0.95):
                leak[(src, t)].append(leaks(grey, row, train, val_src, t) if val_src else 0)
        if seed == 0:
            by = {src: sum(sources[s] == src for s in val) for src in per_source}
            print(f"seed 0: {len(val)} validation frames (target {target:.0f}): {by}")
    print(
        f"seeds 0-{args.seeds - 1}: validation size {min(size_dev):+.1f} % … {max(size_dev):+.1f} % of "
        f"{target:.0f}; source shares {min(share_dev):+.1f} … {max(share_dev):+.1f} points from the data's"
    )
    for (src, t), counts in leak.items():
        print(
            f"  {src}: validation frames with a training frame above {t}: max {max(counts)}, mean {np.mean(counts):.1f}"
        )
    leak98 = max(max(leak[(src, 0.98)]) for src in per_source)
    print(
        f"RESULT size_dev_pct=({min(size_dev):.1f},{max(size_dev):.1f}) "
        f"share_dev_points=({min(share_dev):.1f},{max(share_dev):.1f}) "
        f"clinicdb_groups={per_source.get('clinicdb', 0)} leak98_max={leak98}"
    )


if __name__ == "__main__":
    main()
