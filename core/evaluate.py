"""Evaluation: Dice/IoU of a model on each test set present plus their mean, and overlay pictures.

CLI: python -m core.evaluate --checkpoint P [--data-root D | --test-dir F] [--save-visuals] [--out DIR]
--data-root scores every test set under D/TestDataset (no TrainDataset needed); --test-dir scores one folder
holding images/ and masks/, under the folder's name. DIR holds metrics.json, EVALUATION.txt (what was
scored; how a later run knows it may replace DIR) and visuals/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from core.data import (
    EvalBatch,
    EvalSet,
    PolypData,
    discover_test_sets,
    eval_loader,
    normalize,
    read_image,
    single_test_set,
)
from core.errors import cli_errors
from core.files import OutputKind, output_folder, writing
from core.image_files import write_png
from core.metrics import SegmentationScores, binarize, mean_over_sets
from core.models import load_model, resolve_device

# Beside metrics.json (which an export holds too): how --out knows an earlier evaluation it may replace.
EVALUATION_MARKER = "EVALUATION.txt"
EVALUATION_KIND = OutputKind("an evaluation folder")


@torch.no_grad()
def score_loader(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: bool = False,
    on_batch: Callable[[EvalBatch, torch.Tensor], None] | None = None,
) -> SegmentationScores:
    """Per-image Dice/IoU of `model` over an eval loader; `on_batch(batch, logits)` sees each batch."""
    model.eval()
    scores = SegmentationScores()
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(normalize(batch.images.to(device, non_blocking=True)))
        logits = logits.float().cpu()
        scores.add_batch(logits, batch.masks)
        if on_batch is not None:
            on_batch(batch, logits)
    return scores


def score_test_sets(
    model: nn.Module,
    data: PolypData,
    img_size: int,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    on_batch: Callable[[str, EvalBatch, torch.Tensor], None] | None = None,
) -> dict[str, tuple[list[str], SegmentationScores]]:
    """Per test set present: its images' stems and their Dice/IoU, in the same order."""
    model.to(device)
    per_set = {}
    for name, pairs in data.test_sets.items():
        loader = eval_loader(EvalSet(pairs, img_size), batch_size, num_workers)
        hook = (lambda batch, logits, name=name: on_batch(name, batch, logits)) if on_batch else None
        per_set[name] = ([p.stem for p in pairs], score_loader(model, loader, device, device.type == "cuda", hook))
    return per_set


def evaluate_test_sets(
    model: nn.Module,
    data: PolypData,
    img_size: int,
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    on_batch: Callable[[str, EvalBatch, torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """{'test_sets': {name: {dice, iou, n}}, 'mean': {...}, 'missing': [...], 'synthetic': bool}."""
    scored = score_test_sets(model, data, img_size, batch_size, device, num_workers, on_batch)
    return summarize(scored, data)


def summarize(scored: dict[str, tuple[list[str], SegmentationScores]], data: PolypData) -> dict[str, Any]:
    """score_test_sets' per-image scores as evaluate_test_sets reports them."""
    per_set = {name: scores.summary() for name, (_, scores) in scored.items()}
    return {
        "test_sets": per_set,
        "mean": mean_over_sets(per_set),
        "missing": list(data.missing_test_sets),
        "synthetic": data.synthetic,
    }


def format_table(report: dict[str, Any], title: str = "test sets") -> str:
    width = max([20] + [len(name) + 2 for name in report["test_sets"]])  # any folder can be a test set
    lines = [
        title + (" [SYNTHETIC data]" if report.get("synthetic") else ""),
        f"{'test set':<{width}}{'images':>7}{'Dice':>9}{'IoU':>9}",
    ]
    for name, s in report["test_sets"].items():
        lines.append(f"{name:<{width}}{s['n']:>7}{s['dice']:>9.4f}{s['iou']:>9.4f}")
    m = report["mean"]
    lines.append(f"{'mean':<{width}}{m['n']:>7}{m['dice']:>9.4f}{m['iou']:>9.4f}")
    if report.get("missing"):
        lines.append(f"missing (not evaluated): {', '.join(report['missing'])}")
    return "\n".join(lines)


def tint(image_rgb: np.ndarray, mask01: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A copy of the RGB image with the mask's region tinted by `colour` and its outer contour drawn."""
    out = image_rgb.copy()
    region = mask01.astype(bool)
    out[region] = (0.55 * out[region] + 0.45 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(mask01.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, image_rgb.shape[0] // 150))
    return out


def overlay_panel(image_rgb: np.ndarray, mask: np.ndarray, pred: np.ndarray, height: int = 256) -> np.ndarray:
    """image | ground truth (green) | prediction (red), each with its contour; returns BGR uint8."""
    tiles = [image_rgb, tint(image_rgb, mask, (0, 255, 0)), tint(image_rgb, pred, (255, 0, 0))]
    scale = height / image_rgb.shape[0]
    size = (max(1, round(image_rgb.shape[1] * scale)), height)
    panel = np.concatenate([cv2.resize(t, size, interpolation=cv2.INTER_NEAREST) for t in tiles], axis=1)
    return cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)


def visual_writer(data: PolypData, folder: Path, max_visuals: int) -> Callable[[str, EvalBatch, torch.Tensor], None]:
    """An `on_batch` hook of evaluate_test_sets writing up to `max_visuals` overlay panels per test set to
    folder/<test set>/<stem>.png."""
    saved: dict[str, int] = {}

    def save_visuals(name: str, batch: EvalBatch, logits: torch.Tensor) -> None:
        for stem, mask, one in zip(batch.stems, batch.masks, logits):
            if saved.get(name, 0) >= max_visuals:
                return
            pair = next(p for p in data.test_sets[name] if p.stem == stem)
            height, width = mask.shape
            pred = binarize(one, (height, width)).numpy()
            (folder / name).mkdir(parents=True, exist_ok=True)
            write_png(folder / name / f"{stem}.png", overlay_panel(read_image(pair.image), mask.numpy(), pred))
            saved[name] = saved.get(name, 0) + 1

    return save_visuals


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with cli_errors():
        model, state = load_model(args.checkpoint, which=args.which)
        cfg = state["config"]
        data = (
            single_test_set(args.test_dir) if args.test_dir else discover_test_sets(args.data_root or cfg["data_root"])
        )
        device = resolve_device(args.device)
        out = Path(args.out or Path("results") / "evaluate" / cfg["experiment_name"])
        inputs = [
            ("checkpoint folder", Path(state["path"]).parent),
            ("--test-dir folder" if args.test_dir else "data root", data.root),
        ]
        # Written beside `out` and renamed when complete: never a half-written folder.
        with output_folder(out, EVALUATION_KIND, inputs) as tmp:
            hook = visual_writer(data, tmp / "visuals", args.max_visuals) if args.save_visuals else None
            report = evaluate_test_sets(model, data, cfg["img_size"], args.batch_size, device, on_batch=hook)
            report["checkpoint"] = state["path"]
            report["weights"] = args.which
            with writing(tmp / "metrics.json"):
                (tmp / "metrics.json").write_text(json.dumps(report, indent=2))
            with writing(tmp / EVALUATION_MARKER):
                (tmp / EVALUATION_MARKER).write_text(
                    f"Written by `python -m core.evaluate`: {state['path']} ({args.which} weights) on {data.root}.\n"
                )
        print(format_table(report, title=f"{state['path']} ({args.which} weights)"))
        print(f"wrote {out / 'metrics.json'}" + (f" and overlays in {out / 'visuals'}" if args.save_visuals else ""))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", required=True, help="best.pt/last.pt, a run folder, or an exported model folder"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data-root",
        help="score every test set under DATA_ROOT/TestDataset (default: the data_root the checkpoint was trained on)",
    )
    source.add_argument("--test-dir", help="score one folder holding images/ and masks/, named after the folder")
    parser.add_argument(
        "--which",
        choices=("best", "last"),
        default="best",
        help="weights of the best validation epoch (default) or of the last epoch",
    )
    parser.add_argument("--save-visuals", action="store_true", help="write image | ground truth | prediction overlays")
    parser.add_argument("--max-visuals", type=int, default=16, help="overlays per test set")
    parser.add_argument(
        "--out",
        help="output folder (default results/evaluate/<experiment_name>); an earlier evaluation there is "
        "replaced (files you added are kept), anything else refused",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    return parser


if __name__ == "__main__":
    main()
