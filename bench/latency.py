"""Measured latency (core/latency.py) of each student backbone a search space offers, at the default
deployment target: U-Net, 352 px, batch 1, this machine's CPU, ONNX Runtime fp32 and int8 (QDQ, calibrated
on 8 training images: the real TrainDataset when present, else synthetic), default threads; median of
`--repeats` calls, random weights. Also what one measurement costs (export + quantization + timing), which a
sweep's driver pays once per architecture and target, and that a second ask is read from the cache.

Target: a latency budget can tell the backbones apart (the slowest fp32 / the fastest int8 >= 2x).

    python bench/latency.py [--img-size 352] [--repeats 20] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import common

from core.data import discover
from core.latency import DeployTarget, cached_latency, cpu_model, student_arch
from core.quantize import spread
from core.synthetic import write_demo_dataset

BACKBONES = (
    "mobilenet_v2",
    "tu-mobilenetv3_small_100",
    "tu-mobilenetv3_large_100",
    "efficientnet-b0",
    "resnet18",
    "resnet34",
)
RUNTIMES = ("onnxruntime", "onnxruntime-int8")


def calibration_pairs(workdir: Path, size: int, n: int = 8):
    """`n` training images spread over the real pool when present, else synthetic ones; and what they are."""
    train_root = common.REAL_DATA / "TrainDataset"
    if train_root.is_dir():
        return spread(discover(common.REAL_DATA).train, n), f"{n} real training images ({common.REAL_DATA})"
    root = write_demo_dataset(workdir / "demo", size=size, n_train=n, n_test=1)
    return discover(root).train, f"{n} SYNTHETIC training images (real data not found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=352)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    args = parser.parse_args()
    fields, latencies = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        calibration, source = calibration_pairs(Path(tmp), args.img_size)
        print(
            f"U-Net students, random weights; {args.img_size} px, batch 1, CPU ({cpu_model()}), ONNX Runtime "
            f"threads {args.threads or 'default'}; int8 calibrated on {source}; median of {args.repeats} calls; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        cache = Path(tmp) / "cache"  # fresh: every number below is measured now
        for backbone in args.backbones:
            for runtime in RUNTIMES:
                target = DeployTarget(runtime=runtime, img_size=args.img_size, threads=args.threads)
                started = time.perf_counter()
                record = cached_latency(student_arch(backbone), target, calibration, cache, args.repeats)
                cost = time.perf_counter() - started
                latencies[backbone, runtime] = record.ms
                print(f"{backbone:26s} {target.describe():55s} {record.ms:8.1f} ms   (measuring took {cost:5.1f} s)")
                name = backbone.replace("-", "_")
                fields += [f"{name}_{'int8' if runtime.endswith('int8') else 'fp32'}_ms={record.ms:.1f}"]
        started = time.perf_counter()
        again = cached_latency(
            student_arch(args.backbones[0]), DeployTarget(img_size=args.img_size, threads=args.threads), cache_dir=cache
        )
        lookup_ms = 1000 * (time.perf_counter() - started)
        print(
            f"asked again: cached={again.cached}, {again.ms:.1f} ms, read in {lookup_ms:.1f} ms; measured at "
            f"{again.measured_at}"
        )
    spread_ratio = max(latencies[b, "onnxruntime"] for b in args.backbones) / min(
        latencies[b, "onnxruntime-int8"] for b in args.backbones
    )
    print(
        f"RESULT slowest_fp32_over_fastest_int8={spread_ratio:.2f} "
        + " ".join(fields)
        + f" second_ask_cached={again.cached} img_size={args.img_size} ort_threads={args.threads} "
        f"repeats={args.repeats} load_average={os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
