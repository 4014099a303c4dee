"""Knowledge-distillation terms by name: each registers itself, and `kd_loss` looks it up.

`core.config` takes its allowed `kd_loss` values from this registry, so a new term is one decorated function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Only torch here: `core.config` imports this module, and loading a config must not pull in
# segmentation_models_pytorch.
KD_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {}


def register_kd_loss(name: str) -> Callable[[Callable], Callable]:
    """Register `fn(student_logits, teacher_logits, temperature) -> loss` under `name`."""

    def register(fn: Callable) -> Callable:
        if name in KD_LOSSES:
            raise ValueError(f"kd loss {name!r} is already registered")
        KD_LOSSES[name] = fn
        return fn

    return register


@register_kd_loss("bce")
def bce_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """BCE between the student's T-softened logits and the teacher's T-softened probabilities,
    × T² so that gradient magnitude does not shrink as T grows (Hinton et al., 2015)."""
    s, t = student_logits / temperature, teacher_logits / temperature
    return F.binary_cross_entropy_with_logits(s, torch.sigmoid(t)) * temperature**2


@register_kd_loss("mse")
def mse_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """MSE between the T-scaled logits."""
    s, t = student_logits / temperature, teacher_logits / temperature
    return F.mse_loss(s, t)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, kind: str = "bce"
) -> torch.Tensor:
    """Per-pixel distillation of the teacher's soft map into the student, by the registered term `kind`.

    The teacher's logits are detached here, once, so no registered term can send gradient into the teacher.
    """
    if kind not in KD_LOSSES:
        raise ValueError(f"unknown kd loss {kind!r}; registered: {', '.join(KD_LOSSES)}")
    return KD_LOSSES[kind](student_logits, teacher_logits.detach(), temperature)
