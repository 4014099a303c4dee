"""Losses: supervised Dice+BCE, the knowledge-distillation term, and their α-weighted sum.

total = α·(Dice + BCE vs. ground truth) + (1 − α)·KD(student, teacher; T)
"""
from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn


class SupervisedLoss(nn.Module):
    """Dice + BCE on logits against a binary mask."""

    def __init__(self) -> None:
        super().__init__()
        self.dice = smp.losses.DiceLoss(mode="binary", from_logits=True)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, mask) + F.binary_cross_entropy_with_logits(logits, mask)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            kind: str = "bce") -> torch.Tensor:
    """Per-pixel distillation of the teacher's soft map into the student.

    bce: BCE between the student's T-softened logits and the teacher's T-softened probabilities,
         × T² so that gradient magnitude does not shrink as T grows (Hinton et al., 2015).
    mse: MSE between the T-scaled logits.
    """
    teacher_logits = teacher_logits.detach()
    s, t = student_logits / temperature, teacher_logits / temperature
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(s, torch.sigmoid(t)) * temperature**2
    if kind == "mse":
        return F.mse_loss(s, t)
    raise ValueError(f"unknown kd loss {kind!r}")


class DistillationLoss(nn.Module):
    def __init__(self, alpha: float, temperature: float, kind: str) -> None:
        super().__init__()
        self.alpha, self.temperature, self.kind = alpha, temperature, kind
        self.supervised = SupervisedLoss()

    def forward(self, student_logits: torch.Tensor, mask: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        supervised = self.supervised(student_logits, mask)
        distill = kd_loss(student_logits, teacher_logits, self.temperature, self.kind)
        return self.alpha * supervised + (1.0 - self.alpha) * distill
