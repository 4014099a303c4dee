"""A whole KD sweep on a subset of the real polyp data, small enough for a 2-core CPU: does the teacher help
the student, judged on fresh seeds?

Writes a subset (every k-th training image, the first test images), a space (teacher trained in the sweep;
a no-teacher control arm searched on its own with half the trials; selection: the top --top-k of each arm
retrained over --seeds seeds; verdict (--design, default factorial): the KD winner with and without its
teacher and the tuned baseline of the same student without and with it, retrained over --verdict-seeds fresh
seeds) and runs `python -m tune.search` on it. Prints the verdict with its interaction and tuned lines and
ends with `RESULT winner=... student=... estimate_mean=... estimate_ci95=lo,hi design=... outcome=helped|hurt|
no effect|inconclusive|no verdict effect=... ci95=lo,hi mde80=... n_valid=... tuned_diff=... trial_epochs=...
test_mean_dice=...` (estimate: the winner's val Dice over the verdict seeds; effect: with minus without the
teacher, paired by verdict seed; trial_epochs: search + selection + verdict, as run).

    python bench/real_kd_sweep.py [--train-images 360 --img-size 64 --max-t 10 --num-samples 8
                                   --top-k 1 --seeds 2 --verdict-seeds 6 --design factorial --out results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import yaml
from common import REAL_DATA, bench_data

from tune import search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=360)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--max-t", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=8, help="search trials, both arms together")
    parser.add_argument("--top-k", type=int, default=1, help="configurations of each arm retrained for selection")
    parser.add_argument("--seeds", type=int, default=2, help="selection seeds per configuration")
    parser.add_argument("--verdict-seeds", type=int, default=6, help="fresh seeds of the verdict")
    parser.add_argument("--design", default="factorial", choices=("factorial", "ablation", "tuned"))
    parser.add_argument("--out", default="results", help="storage folder; the sweep is <out>/bench-real-kd")
    args = parser.parse_args()
    if not REAL_DATA.is_dir():
        raise SystemExit(f"{REAL_DATA}: real polyp data not found")
    with tempfile.TemporaryDirectory() as tmp:
        data, label = bench_data(args.train_images, Path(tmp), n_test=40)
        print(f"{label}: {len(data.train)} training images")
        space = {
            "name": "bench-real-kd",
            "base": {
                "mode": "distillation",
                "data_root": str(data.root),
                "encoder_weights": None,
                "img_size": args.img_size,
                "batch_size": 8,
                "num_workers": 0,
                "val_fraction": 0.2,
                "val_split": "grouped",
                "kd_loss": "bce",
                "seed": 42,
            },
            "parameters": {
                "alpha": {"type": "uniform", "low": 0.1, "high": 0.9},
                "temperature": {"type": "uniform", "low": 1.0, "high": 10.0},
                "learning_rate": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-2},
            },
            "objective": {"metric": "best_val_dice", "mode": "max"},
            "search": {"num_samples": args.num_samples, "max_concurrent_trials": 2, "seed": 0, "max_failures": 1},
            "asha": {"max_t": args.max_t, "grace_period": 3, "reduction_factor": 2},
            "resources": {"cpu": 1},
            "control": {"baseline": True, "fraction": 0.5},
            "confirm": {
                "top_k": args.top_k,
                "seeds": args.seeds,
                "verdict_seeds": args.verdict_seeds,
                "verdict": args.design,
            },
            "teacher": {
                "checkpoint": None,
                "train": {"epochs": 15, "learning_rate": 3.0e-3, "teacher_backbone": "resnet18"},
            },
            "wandb": {"mode": "disabled"},
        }
        space_file = Path(tmp) / "space.yaml"
        space_file.write_text(yaml.safe_dump(space))
        sweep_dir = Path(args.out) / "bench-real-kd"
        if sweep_dir.exists():
            shutil.rmtree(sweep_dir)
        search.main(["--space", str(space_file), "--storage", args.out, "--num-cpus", "2"])
        best = json.loads((sweep_dir / "best.json").read_text())
    nan = float("nan")
    estimate = best["estimate"] or {"mean": nan, "ci95": [nan, nan]}
    v = best["kd_vs_baseline"] or {
        "design": args.design,
        "outcome": "no verdict",
        "effect": nan,
        "ci95": [nan, nan],
        "mde80": nan,
        "n_valid": 0,
        "tuned": None,
        "sentence": "no verdict (no selection)",
    }
    print(f"verdict: {v['sentence']}")
    if v.get("interaction"):
        print(f"interaction: {v['interaction']['effect']:+.4f} (95% CI {v['interaction']['ci95']})")
    tuned = (v.get("tuned") or {}).get("diff", nan)
    epochs = trial_epochs(sweep_dir)
    print(
        f"RESULT winner={best['winner']} student={best['student']} estimate_mean={estimate['mean']:.4f} "
        f"estimate_ci95={estimate['ci95'][0]:.4f},{estimate['ci95'][1]:.4f} design={v['design']} "
        f"outcome={v['outcome'].replace(' ', '_')} effect={v['effect']:+.4f} ci95={v['ci95'][0]:+.4f},"
        f"{v['ci95'][1]:+.4f} mde80={v['mde80']:.4f} n_valid={v['n_valid']} tuned_diff={tuned:+.4f} "
        f"trial_epochs={epochs['search']}+{epochs['confirm']}+{epochs['verdict']} "
        f"test_mean_dice={best['test']['mean']['dice']:.4f}"
    )


def trial_epochs(sweep_dir: Path) -> dict[str, int]:
    """Epochs trained per stage, from each Ray trial's result file (its last reported epoch)."""
    out = {}
    for stage, folders in (("search", ("trials", "control")), ("confirm", ("confirm",)), ("verdict", ("verdict",))):
        total = 0
        for folder in folders:
            for result in (sweep_dir / folder).glob("*/result.json"):
                lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
                total += max((int(r.get("epoch", 0)) for r in lines), default=0)
        out[stage] = total
    return out


if __name__ == "__main__":
    main()
