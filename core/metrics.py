"""Dice and IoU per image at threshold 0.5, averaged over images (the polyp-benchmark convention).

An image where both prediction and mask are empty scores 1; predictions are scored at each mask's
original resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

THRESHOLD = 0.5


def dice_iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Dice and IoU of two binary masks of the same shape."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).sum().item()
    total = pred.sum().item() + target.sum().item()
    union = total - inter
    if total == 0:
        return 1.0, 1.0
    return 2.0 * inter / total, inter / union


def binarize(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample one 1xSxS logit map to `size` and threshold its probability at 0.5."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return torch.sigmoid(logits[0]) > THRESHOLD


@dataclass
class SegmentationScores:
    """Running per-image Dice/IoU of one dataset."""

    dice: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    def add_batch(self, logits: torch.Tensor, masks: list[torch.Tensor]) -> None:
        for one_logits, mask in zip(logits.detach().cpu(), masks):
            height, width = mask.shape
            d, i = dice_iou(binarize(one_logits, (height, width)), mask)
            self.dice.append(d)
            self.iou.append(i)

    def summary(self) -> dict[str, float]:
        n = len(self.dice)
        return {
            "dice": sum(self.dice) / n if n else float("nan"),
            "iou": sum(self.iou) / n if n else float("nan"),
            "n": n,
        }


def mean_over_sets(per_set: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over the test sets present (each set counts once, whatever its size)."""
    if not per_set:
        return {"dice": float("nan"), "iou": float("nan"), "n": 0}
    return {
        "dice": sum(s["dice"] for s in per_set.values()) / len(per_set),
        "iou": sum(s["iou"] for s in per_set.values()) / len(per_set),
        "n": sum(int(s["n"]) for s in per_set.values()),
    }


def source_summaries(scores: SegmentationScores, sources: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per source (the data set image i comes from is `sources[i]`): mean Dice and IoU over its images, and n."""
    by_source: dict[str, SegmentationScores] = {}
    for source, dice, iou in zip(sources, scores.dice, scores.iou, strict=True):
        part = by_source.setdefault(source, SegmentationScores())
        part.dice.append(dice)
        part.iou.append(iou)
    return {source: by_source[source].summary() for source in sorted(by_source)}


def validation_average(scores: SegmentationScores, sources: Sequence[str], how: str) -> dict[str, float]:
    """Validation Dice/IoU averaged over `how`: "sources" (each source's mean counts once, as the test sets'
    mean does) or "images" (every image counts once)."""
    return mean_over_sets(source_summaries(scores, sources)) if how == "sources" else scores.summary()
