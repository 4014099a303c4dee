"""Read a finished sweep: `show` prints its leaderboard, `export` writes the winner as a self-contained
folder (weights, config, metrics, ONNX checked against PyTorch, model card).

    python -m tune.best show [--sweep DIR]
    python -m tune.best export [--sweep DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from core.checkpoint import WEIGHTS_FILENAME, save_checkpoint
from core.data import EvalSet, discover, normalize
from core.errors import UserError, cli_errors
from core.evaluate import format_table
from core.models import count_parameters, load_model
from tune.report import format_leaderboard

DEFAULT_STORAGE = Path("results")


def find_sweep(sweep: str | None, storage: Path = DEFAULT_STORAGE) -> Path:
    """The named sweep folder, or the newest one under results/ that has a best.json."""
    if sweep:
        path = Path(sweep)
        if not path.is_dir() and (storage / sweep).is_dir():
            path = storage / sweep
        if not (path / "best.json").is_file():
            raise UserError(f"{path}: no best.json there; pass a finished sweep folder "
                            f"(results/<sweep>), or finish it with `python -m tune.search --resume`")
        return path
    finished = sorted(storage.glob("*/best.json"), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise UserError(f"{storage}: no finished sweep found; run `python -m tune.search --space demo.yaml`")
    return finished[-1].parent


def read_leaderboard(sweep_dir: Path) -> list[dict[str, Any]]:
    with (sweep_dir / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            row[key] = _parse_cell(value)
    return rows


def show(sweep_dir: Path) -> None:
    best = json.loads((sweep_dir / "best.json").read_text())
    print(f"sweep {sweep_dir}")
    print(format_leaderboard(read_leaderboard(sweep_dir)))
    print(f"\nwinner: trial {best['trial_id']}, val Dice {best['best_val_dice']:.4f}")
    print(format_table(best["test"], title="winner on the test sets"))


def export(sweep_dir: Path, out: Path) -> dict[str, Any]:
    """Write the winner to `out` (via a temporary folder, so a failure leaves nothing half-written)."""
    best = json.loads((sweep_dir / "best.json").read_text())
    model, state = load_model(best["checkpoint"])
    weights = model.state_dict()
    cfg = state["config"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        metrics = {key: best[key] for key in ("sweep", "trial_id", "objective", "best_val_dice",
                                               "best_val_iou", "best_epoch", "params")}
        metrics["test"] = best["test"]
        save_checkpoint({"config": cfg, "architecture": state["architecture"], "model": weights, "weights_only": True,
                         "epoch": best["best_epoch"], "metrics": json.loads(json.dumps(metrics)),
                         "synthetic_data": bool(best.get("synthetic_data"))}, tmp / WEIGHTS_FILENAME)
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        onnx_check = export_onnx(model, cfg, tmp / "model.onnx")
        metrics["onnx"] = onnx_check
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (tmp / "MODEL_CARD.md").write_text(model_card(best, state, model, onnx_check))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def write_onnx(model: torch.nn.Module, img_size: int, path: Path) -> None:
    """ONNX (one file) with a dynamic batch axis; input `image` (normalised NCHW), output `logits`."""
    example = torch.zeros(2, 3, img_size, img_size)
    torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), dynamo=True,
                      external_data=False, verbose=False)


def inference_speed(model: torch.nn.Module, onnx_path: Path, img_size: int, batch: int,
                    repeats: int = 10) -> dict[str, float]:
    """Images/s of PyTorch eager and ONNX Runtime on this machine's CPU (median of `repeats` calls)."""
    import statistics
    import time

    import onnxruntime as ort

    x = torch.randn(batch, 3, img_size, img_size)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runners = {"pytorch": lambda: model(x), "onnxruntime": lambda: session.run(None, {"image": x.numpy()})}
    speed = {}
    with torch.inference_mode():
        for name, run in runners.items():
            run()  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            speed[name] = batch / statistics.median(times)
    return speed


def export_onnx(model: torch.nn.Module, cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write ONNX, then check the same test image through PyTorch and ONNX Runtime and time both."""
    import onnxruntime as ort

    write_onnx(model, cfg["img_size"], path)
    image, source = _reference_image(cfg)
    with torch.no_grad():
        expected = model(image).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"image": image.numpy()})[0]
    diff = float(np.abs(actual - expected).max())
    if not diff < 1e-3:
        raise RuntimeError(f"ONNX export differs from PyTorch by {diff:.3g} on {source}")
    speed = inference_speed(model, path, cfg["img_size"], batch=1, repeats=5)
    return {"max_abs_diff": diff, "checked_on": source, "opset": _opset(path),
            "cpu_images_per_s_batch1": {k: round(v, 2) for k, v in speed.items()},
            "recommended_runtime": max(speed, key=speed.get)}


def model_card(best: dict[str, Any], state: dict[str, Any], model: torch.nn.Module,
               onnx_check: dict[str, Any]) -> str:
    cfg, arch = state["config"], state["architecture"]
    synthetic = best.get("synthetic_data")
    rows = "\n".join(f"| {name} | {s['n']} | {s['dice']:.4f} | {s['iou']:.4f} |"
                     for name, s in best["test"]["test_sets"].items())
    mean = best["test"]["mean"]
    missing = best["test"].get("missing") or []
    params = "\n".join(f"- `{k}`: {v}" for k, v in best["params"].items())
    teacher = f", teacher `{cfg['teacher_checkpoint']}`" if cfg["mode"] == "distillation" else ""
    n_params = f"{count_parameters(model) / 1e6:.2f}M"
    onnx_line = (f"`model.onnx` (dynamic batch, opset {onnx_check['opset']}), max |ONNX − PyTorch| = "
                 f"{onnx_check['max_abs_diff']:.2e} on {onnx_check['checked_on']}")
    speed = onnx_check["cpu_images_per_s_batch1"]
    runtime_line = (f"**Recommended runtime: {onnx_check['recommended_runtime']}** — measured at export on "
                    f"this machine's CPU, batch 1: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in speed.items())
                    + " (bench/inference.py measures batch 1 and 8, and CUDA where present)")
    warning = ("\n> **Trained and scored on SYNTHETIC demo data** (generated by `python -m core.data demo`). "
               "These numbers say nothing about real polyp segmentation.\n" if synthetic else "")
    return f"""# Polyp segmentation student: {arch['arch']} / {arch['encoder']}
{warning}
Winner of sweep `{best['sweep']}` (trial `{best['trial_id']}`), selected on validation Dice
({best['best_val_dice']:.4f} at epoch {best['best_epoch']}) of a split carved from TrainDataset; the test sets
below were only scored, never used for selection.

## Data
- data root: `{cfg['data_root']}`; mode `{cfg['mode']}`{teacher}
- validation fraction {cfg['val_fraction']} of TrainDataset (seed {cfg['seed']})

## Test Dice / IoU (per-image mean, threshold 0.5, at each mask's original size)
| test set | images | Dice | IoU |
|---|---|---|---|
{rows}
| **mean** | {mean['n']} | **{mean['dice']:.4f}** | **{mean['iou']:.4f}** |
{('Not evaluated (absent): ' + ', '.join(missing)) if missing else ''}

## Hyperparameters found
{params}

## Model
- architecture: smp.{arch['arch']}(encoder_name="{arch['encoder']}", classes=1), {n_params} parameters
- input: RGB, {cfg['img_size']}x{cfg['img_size']}, scaled to [0, 1] then normalised with ImageNet mean
  (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); output: one logit map, polyp where sigmoid > 0.5
- ONNX: {onnx_line}
- {runtime_line}

## How to load
```python
import torch, segmentation_models_pytorch as smp
state = torch.load("{WEIGHTS_FILENAME}", weights_only=True)
model = smp.{arch['arch']}(encoder_name="{arch['encoder']}", encoder_weights=None, classes=1)
model.load_state_dict(state["model"]); model.eval()
```
```bash
python -m core.evaluate --checkpoint <this folder> --data-root dataset --save-visuals
```
```python
import onnxruntime as ort
logits = ort.InferenceSession("model.onnx").run(None, {{"image": batch_nchw_float32}})[0]
```
"""


def _reference_image(cfg: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """The first test image, preprocessed exactly as evaluation does; random noise if none is reachable."""
    try:
        data = discover(cfg["data_root"])
        for pairs in data.test_sets.values():
            image, _, _ = EvalSet(pairs[:1], cfg["img_size"])[0]
            return normalize(image[None]), f"test image {pairs[0].image.name}"
    except UserError:
        pass
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, cfg["img_size"], cfg["img_size"], generator=generator), "a random input"


def _opset(path: Path) -> int:
    import onnx

    imports = onnx.load(str(path), load_external_data=False).opset_import
    return max(o.version for o in imports if o.domain in ("", "ai.onnx"))


def _parse_cell(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tune.best", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("show", "print the leaderboard and the winner"),
                       ("export", "write the winning model to a folder")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--sweep", help="sweep folder or name (default: the newest finished one in results/)")
        if name == "export":
            p.add_argument("--out", help="output folder (default: <sweep>/export)")
    args = parser.parse_args(argv)
    with cli_errors():
        sweep_dir = find_sweep(args.sweep)
        if args.command == "show":
            show(sweep_dir)
            return
        out = Path(args.out) if args.out else sweep_dir / "export"
        metrics = export(sweep_dir, out)
        mean = metrics["test"]["mean"]
        print(f"exported trial {metrics['trial_id']} of {sweep_dir} to {out}: {WEIGHTS_FILENAME}, model.onnx "
              f"(max |ONNX - PyTorch| {metrics['onnx']['max_abs_diff']:.2e}), config.yaml, metrics.json, "
              f"MODEL_CARD.md; test mean Dice {mean['dice']:.4f}")


if __name__ == "__main__":
    main()
