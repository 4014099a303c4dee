"""Images per second of the training data pipeline: decoding files every time vs. the decoded cache.

Target: the cached pipeline >= 5x the naive one. Reports both the raw read (decode + resize vs. a
memory-mapped read) and the full per-sample pipeline (read + joint augmentation + tensor conversion),
each the median of several passes over the same images.

    python bench/data.py --img-size 320 --images 200
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import bench_data

from core.cache import decoded_samples  # noqa: E402
from core.data import TrainSet, read_image, read_mask, to_tensor, train_geometric, train_photometric  # noqa: E402


def naive_sample(pair, size, geometric, photometric, seed):
    image = cv2.resize(read_image(pair.image), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(read_mask(pair.mask), (size, size), interpolation=cv2.INTER_NEAREST)
    geometric.set_random_seed(seed)
    photometric.set_random_seed(seed + 1)
    moved = geometric(image=image, mask=mask)
    return to_tensor(photometric(image=moved["image"])["image"]), moved["mask"]


def rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append(n / (time.perf_counter() - start))
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.img_size
    with tempfile.TemporaryDirectory() as tmp:
        data, label = bench_data(args.images, Path(tmp), size)
        pairs = sorted(data.train, key=lambda p: p.stem)
        n = len(pairs)
        print(f"{label}; {n} images -> {size}px, one process, median of {args.repeats} passes")
        start = time.perf_counter()
        samples = decoded_samples(pairs, size, Path(tmp) / "cache")
        build = time.perf_counter() - start
        print(f"cache build (decode + resize + write, once per node): {build:.2f}s = {n / build:.0f} img/s")

        raw_naive, _ = rate(lambda i: (cv2.resize(read_image(pairs[i].image), (size, size)),
                                       cv2.resize(read_mask(pairs[i].mask), (size, size),
                                                  interpolation=cv2.INTER_NEAREST)), n, args.repeats)
        raw_cached, _ = rate(lambda i: (np.array(samples.images[i]), np.array(samples.masks[i])), n, args.repeats)
        geometric, photometric = train_geometric(), train_photometric()
        full_naive, _ = rate(lambda i: naive_sample(pairs[i], size, geometric, photometric, i), n, args.repeats)
        dataset = TrainSet(samples.images, samples.masks, range(n), seed=0)
        full_cached, _ = rate(lambda i: dataset[(0, i)], n, args.repeats)
        print(f"raw read      naive {raw_naive:8.0f} img/s   cached {raw_cached:8.0f} img/s   "
              f"x{raw_cached / raw_naive:.1f}")
        print(f"full pipeline naive {full_naive:8.0f} img/s   cached {full_cached:8.0f} img/s   "
              f"x{full_cached / full_naive:.1f}  (augmentation included in both)")
        print(f"RESULT raw_cached_over_naive={raw_cached / raw_naive:.1f} "
              f"pipeline_cached_over_naive={full_cached / full_naive:.2f} naive_img_per_s={full_naive:.0f} "
              f"cached_img_per_s={full_cached:.0f} img_size={size}")


if __name__ == "__main__":
    main()
