"""The winner's validation pictures for report.html: its checkpoint scored on every image of the validation
split it was selected on, and the best, median and worst of them drawn (image | ground truth | prediction).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from core.config import config_from_dict
from core.data import EvalBatch, EvalSet, SamplePair, discover, eval_loader, read_image
from core.evaluate import overlay_panel, score_loader
from core.metrics import binarize, dice_iou
from core.models import load_model, resolve_device
from core.split import training_split

CASES_PER_KIND = 3  # this many best, median and worst validation images


@dataclass
class Case:
    kind: str  # best | median | worst
    stem: str
    dice: float
    iou: float
    picture: str  # data URI of image | ground truth | prediction
    # What the picture was drawn from, at the mask's original size, for W&B's masked images (tracking/artifacts).
    image: np.ndarray  # RGB uint8 H x W x 3
    ground_truth: np.ndarray  # uint8 H x W in {0, 1}
    prediction: np.ndarray  # uint8 H x W in {0, 1}


@dataclass
class Gallery:
    cases: list[Case]
    n_images: int
    mean_dice: float
    note: str = ""


def pick_cases(dice: list[float], per_kind: int = CASES_PER_KIND) -> list[tuple[str, int]]:
    """(kind, index) of the best, median and worst images by Dice, each image at most once; listed
    best first, then median, then worst."""
    order = sorted(range(len(dice)), key=lambda i: (-dice[i], i))
    taken: set[int] = set()
    picks: dict[str, list[int]] = {}
    mid = len(order) // 2
    median_slots = order[max(0, mid - per_kind // 2) :][:per_kind]
    for kind, slots in (("best", order[:per_kind]), ("worst", order[::-1][:per_kind]), ("median", median_slots)):
        picks[kind] = [i for i in slots if i not in taken]
        taken.update(picks[kind])
    picks["worst"] = picks["worst"][::-1]
    return [(kind, i) for kind in ("best", "median", "worst") for i in picks[kind]]


def validation_gallery(checkpoint: Path, per_kind: int = CASES_PER_KIND, device: str = "auto") -> Gallery:
    """Score the checkpoint's best weights on each image of the validation split it was selected on (rebuilt
    from its config) at each mask's original size, and draw the best, median and worst ones."""
    model, state = load_model(str(checkpoint))
    cfg = config_from_dict(state["config"], source=f"{checkpoint}: config")
    data = discover(cfg.data_root)
    split = training_split(cfg, data.train)
    val, rebuilt = split.val, split.record["val_sha256"]
    note = ""
    recorded = (state.get("split") or {}).get("val_sha256")
    if recorded and recorded != rebuilt:
        note = (
            f"the files under {cfg.data_root} changed since training: these are not exactly the validation "
            f"images the winner was selected on"
        )
    torch_device = resolve_device(device)
    model.to(torch_device)
    scores: dict[str, tuple[float, float]] = {}

    def keep_score(batch: EvalBatch, logits: torch.Tensor) -> None:
        for stem, mask, one in zip(batch.stems, batch.masks, logits):
            height, width = mask.shape
            scores[stem] = dice_iou(binarize(one, (height, width)), mask)

    amp = torch_device.type == "cuda"
    score_loader(model, eval_loader(EvalSet(val, cfg.img_size), cfg.batch_size, 0), torch_device, amp, keep_score)
    dice = [scores[p.stem][0] for p in val]
    picks = pick_cases(dice, max(1, min(per_kind, len(val) // 3)))  # a small split still shows all three kinds
    chosen: list[SamplePair] = [val[i] for _, i in picks]
    pictures: dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray]] = {}

    def draw(batch: EvalBatch, logits: torch.Tensor) -> None:
        for stem, mask, one in zip(batch.stems, batch.masks, logits):
            pair = next(p for p in chosen if p.stem == stem)
            image, truth = read_image(pair.image), mask.numpy().astype(np.uint8)
            height, width = mask.shape
            pred = binarize(one, (height, width)).numpy().astype(np.uint8)
            _, encoded = cv2.imencode(".png", overlay_panel(image, truth, pred, height=180))
            uri = "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()
            pictures[stem] = (uri, image, truth, pred)

    # Only the few drawn images are run again: keeping every prediction would hold the whole split in memory.
    score_loader(model, eval_loader(EvalSet(chosen, cfg.img_size), cfg.batch_size, 0), torch_device, amp, draw)
    cases = []
    for kind, i in picks:
        stem = val[i].stem
        (dice_score, iou), picture = scores[stem], pictures[stem]
        cases.append(Case(kind, stem, dice_score, iou, *picture))
    return Gallery(cases, len(val), float(np.mean(dice)), note)
