"""Losses: supervised Dice+BCE, the knowledge-distillation term, and their α-weighted sum.

total = α·(Dice + BCE vs. ground truth) + (1 − α)·KD(student, teacher; T), where KD is a term registered by
name in core/kd_losses.py (its `kd_loss` is re-exported here).
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from core.kd_losses import kd_loss


class SupervisedLoss(nn.Module):
    """Dice + BCE on logits against a binary mask."""

    def __init__(self) -> None:
        super().__init__()
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, mask) + F.binary_cross_entropy_with_logits(logits, mask)


class DistillationLoss(nn.Module):
    def __init__(self, alpha: float, temperature: float, kind: str) -> None:
        super().__init__()
        self.alpha, self.temperature, self.kind = alpha, temperature, kind
        self.supervised = SupervisedLoss()

    def forward(self, student_logits: torch.Tensor, mask: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        supervised = self.supervised(student_logits, mask)
        distill = kd_loss(student_logits, teacher_logits, self.temperature, self.kind)
        return self.alpha * supervised + (1.0 - self.alpha) * distill
