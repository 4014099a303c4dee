"""Images per second of the training data pipeline: decoding files every time vs. the decoded cache.

Target: the full cached pipeline (memory-mapped read + augmentation + tensors, i.e. `TrainSet`) >= 5x the
naive one (decode + resize + the same augmentation). Also reported: the raw read alone, and the cached
pipeline with the albumentations augmentation it replaced (core.augment.albumentations_reference), so one
run shows the augmentation's own speed-up, and the cached pipeline of cached distillation (teacher logits
moved with each sample too). Each figure is the median of several passes over the same
images, in one process with one torch and one OpenCV thread (a DataLoader worker per core), in images
per second of this process's CPU time: on a shared, busy machine wall-clock rates mostly measure the other
processes (both are printed; on a quiet machine they agree).

    python bench/data.py --img-size 320 --images 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from common import bench_data

from core import augment
from core.cache import decoded_samples
from core.data import TrainSet, read_image, read_mask, to_tensor


def naive_sample(dataset: TrainSet, pair, size: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What TrainSet does, reading the files instead of the cache."""
    image = cv2.resize(read_image(pair.image), (size, size), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(read_mask(pair.mask), (size, size), interpolation=cv2.INTER_NEAREST)
    params = dataset.params(0, index)
    image, mask, _ = augment.geometric(params, image, mask)
    return to_tensor(augment.photometric(params, image)), torch.from_numpy(mask.astype(np.float32)[None])


def albumentations_sample(samples, geometric, photometric, index: int):
    """The cached pipeline as it was before core/augment.py: albumentations on the cached arrays, seeded per
    sample (each transform on its own stream: TrainSet's Compose-level seeding correlated them)."""
    augment.seed_reference(geometric, photometric, index)
    moved = geometric(image=np.array(samples.images[index]), mask=np.array(samples.masks[index]))
    image = photometric(image=moved["image"])["image"]
    return to_tensor(image), torch.from_numpy(moved["mask"].astype(np.float32)[None])


WALL: dict[str, float] = {}


def rate(name: str, fn, n: int, repeats: int) -> float:
    """Median images per CPU-second over `repeats` passes; the wall-clock rate is kept in WALL[name]."""
    cpu, wall = [], []
    for _ in range(repeats):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for i in range(n):
            fn(i)
        cpu.append(n / (time.process_time() - start_cpu))
        wall.append(n / (time.perf_counter() - start_wall))
    WALL[name] = statistics.median(wall)
    return statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.img_size
    # A DataLoader worker runs with one torch thread; in a process with several, a loaded machine makes
    # torch's thread pool wait for descheduled threads on every small copy.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data, label = bench_data(args.images, Path(tmp), size)
        pairs = sorted(data.train, key=lambda p: p.stem)
        n = len(pairs)
        print(
            f"{label}; {n} images -> {size}px, one process, one thread, img/s of CPU time, median of "
            f"{args.repeats} passes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        start = time.perf_counter()
        samples = decoded_samples(pairs, size, Path(tmp) / "cache")
        build = time.perf_counter() - start
        print(f"cache build (decode + resize + write, once per node): {build:.2f}s = {n / build:.0f} img/s")

        raw_naive = rate(
            "raw_naive",
            lambda i: (
                cv2.resize(read_image(pairs[i].image), (size, size)),
                cv2.resize(read_mask(pairs[i].mask), (size, size), interpolation=cv2.INTER_NEAREST),
            ),
            n,
            args.repeats,
        )
        raw_cached = rate(
            "raw_cached", lambda i: (np.array(samples.images[i]), np.array(samples.masks[i])), n, args.repeats
        )
        dataset = TrainSet(samples.images, samples.masks, range(n), seed=0)
        full_naive = rate("naive", lambda i: naive_sample(dataset, pairs[i], size, i), n, args.repeats)
        full_cached = rate("cached", lambda i: dataset[(0, i)], n, args.repeats)
        # Stand-in fp16 logits: the cost does not depend on their values.
        logits = np.random.default_rng(0).standard_normal(samples.masks.shape, dtype=np.float32).astype(np.float16)
        kd = TrainSet(samples.images, samples.masks, range(n), seed=0, teacher_logits=logits)
        kd_cached = rate("cached_kd", lambda i: kd[(0, i)], n, args.repeats)
        geometric, photometric = augment.albumentations_reference()
        albumentations = rate(
            "albumentations", lambda i: albumentations_sample(samples, geometric, photometric, i), n, args.repeats
        )
        print(
            f"raw read      naive {raw_naive:8.0f} img/s   cached {raw_cached:8.0f} img/s   "
            f"x{raw_cached / raw_naive:.1f}"
        )
        print(
            f"full pipeline naive {full_naive:8.0f} img/s   cached {full_cached:8.0f} img/s   "
            f"x{full_cached / full_naive:.2f}  (core.augment in both)"
        )
        print(
            f"cached pipeline with the albumentations augmentation it replaced: {albumentations:.0f} img/s "
            f"(core.augment x{full_cached / albumentations:.2f})"
        )
        print(f"cached pipeline with teacher logits (cached distillation): {kd_cached:.0f} img/s")
        print(
            "wall-clock img/s: "
            + "  ".join(f"{k} {v:.0f}" for k, v in WALL.items())
            + f"  (cached over naive x{WALL['cached'] / WALL['naive']:.2f})"
        )
        print(
            f"RESULT raw_cached_over_naive={raw_cached / raw_naive:.1f} "
            f"pipeline_cached_over_naive={full_cached / full_naive:.2f} naive_img_per_s={full_naive:.0f} "
            f"cached_img_per_s={full_cached:.0f} albumentations_cached_img_per_s={albumentations:.0f} "
            f"augment_speedup={full_cached / albumentations:.2f} cached_kd_img_per_s={kd_cached:.0f} "
            f"img_size={size} "
            f"load_average={os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
