"""The Dice–latency front of a small sweep on the real polyp data, sized for a 2-core CPU: students of three
backbones searched under a latency budget at a deployment target, the best of each confirmed over seeds.

Writes a subset (every k-th training image, the first test images) and a space (students without a teacher,
so that no teacher has to be trained on this CPU; trained at --img-size; deployed at --deploy-size with
ONNX Runtime int8 on --threads threads, --budget-ms per frame), runs `python -m tune.search` on it and prints
best.json's front, ending with `RESULT <backbone>_fp32_ms=... <backbone>_int8_ms=... <backbone>_dice=...
<backbone>_ci95=lo,hi <backbone>_pareto=... infeasible_trials=... budget_ms=...`.

    python bench/real_front.py [--train-images 300 --img-size 128 --deploy-size 352 --threads 2
                                --budget-ms 70 --max-t 6 --num-samples 8 --out results]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import yaml
from common import REAL_DATA, bench_data

from tune import search

BACKBONES = ["tu-mobilenetv3_small_100", "mobilenet_v2", "resnet18"]


def space_for(data_root: Path, args: argparse.Namespace) -> dict:
    return {
        "name": "bench-real-front",
        "base": {
            "mode": "baseline",
            "data_root": str(data_root),
            "encoder_weights": None,
            "img_size": args.img_size,
            "batch_size": 8,
            "num_workers": 0,
            "val_fraction": 0.2,
            "val_split": "grouped",
            "seed": 42,
        },
        "parameters": {
            "learning_rate": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-2},
            "student_backbone": {"type": "choice", "values": BACKBONES},
        },
        "objective": {"metric": "best_val_dice", "mode": "max"},
        "search": {"num_samples": args.num_samples, "max_concurrent_trials": 2, "seed": 0, "max_failures": 1},
        "asha": {"max_t": args.max_t, "grace_period": 2, "reduction_factor": 2},
        "resources": {"cpu": 1},
        "confirm": {"top_k": 1, "seeds": 2, "verdict_seeds": 2},
        "deploy": {
            "runtime": "onnxruntime-int8",
            "device": "cpu",
            "img_size": args.deploy_size,
            "batch": 1,
            "threads": args.threads,
            "latency_budget_ms": args.budget_ms,
        },
        "wandb": {"mode": "disabled"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--deploy-size", type=int, default=352)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-ms", type=float, default=70.0)
    parser.add_argument("--max-t", type=int, default=6)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--out", default="results", help="storage folder; the sweep is <out>/bench-real-front")
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found")
    with tempfile.TemporaryDirectory() as tmp:
        data, label = bench_data(args.train_images, Path(tmp), n_test=40)
        print(f"{label}: {len(data.train)} training images")
        space_file = Path(tmp) / "front.yaml"
        space_file.write_text(yaml.safe_dump(space_for(data.root, args)))
        search.main(["--space", str(space_file), "--storage", args.out, "--num-cpus", "2"])
    sweep = Path(args.out) / "bench-real-front"
    best = json.loads((sweep / "best.json").read_text())
    with (sweep / "leaderboard.csv").open() as f:
        infeasible = sum(r["end"] == "infeasible" for r in csv.DictReader(f))
    fields = []
    for e in best["front"]:
        name = e["backbone"].replace("-", "_")
        ci = "none" if e["ci95"] is None else f"{e['ci95'][0]:.4f},{e['ci95'][1]:.4f}"
        dice = "none" if e["mean"] is None else f"{e['mean']:.4f}"
        fields += [
            f"{name}_fp32_ms={e['fp32_ms']}",
            f"{name}_int8_ms={e['int8_ms']}",
            f"{name}_dice={dice}",
            f"{name}_ci95={ci}",
            f"{name}_pareto={e['pareto']}",
        ]
    print(f"front at {best['deploy']['described']} (measured on {best['deploy']['measured_at']})")
    print("RESULT " + " ".join(fields) + f" infeasible_trials={infeasible} budget_ms={args.budget_ms:g}")


if __name__ == "__main__":
    main()
