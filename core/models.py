"""Model registry: every network is built here, like timm's `create_model`.

Student: smp U-Net on a selectable encoder. Teacher: smp U-Net++ (ResNet50 by default). One logit channel each.
"""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from core.checkpoint import load_checkpoint
from core.config import TrainConfig
from core.errors import UserError

TEACHER_ARCH = "UnetPlusPlus"
STUDENT_ARCH = "Unet"


def architecture(cfg: TrainConfig) -> dict[str, str]:
    """What a checkpoint records so that a loader can rebuild (and verify) the network."""
    if cfg.mode == "teacher":
        return {"arch": TEACHER_ARCH, "encoder": cfg.teacher_backbone}
    return {"arch": STUDENT_ARCH, "encoder": cfg.student_backbone}


def build_model(arch: dict[str, str], encoder_weights: str | None) -> nn.Module:
    model_class = {STUDENT_ARCH: smp.Unet, TEACHER_ARCH: smp.UnetPlusPlus}.get(arch["arch"])
    if model_class is None:
        raise UserError(f"unknown architecture {arch['arch']!r}; expected {STUDENT_ARCH} or {TEACHER_ARCH}")
    try:
        return model_class(encoder_name=arch["encoder"], encoder_weights=encoder_weights, in_channels=3, classes=1)
    except OSError as err:
        # Pretrained weights come from the Hugging Face hub; offline this surfaces as an OSError.
        raise UserError(
            f"could not download '{encoder_weights}' weights for encoder "
            f"{arch['encoder']!r} ({err.__class__.__name__}); without network access set "
            f"`encoder_weights: null` (random init)"
        ) from None


def build_for_training(cfg: TrainConfig) -> nn.Module:
    """The network a run of `cfg.mode` trains: the teacher in mode teacher, else the student."""
    return build_model(architecture(cfg), cfg.encoder_weights)


def load_model(path: str, which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in a checkpoint; `which` is 'best' (best-val weights) or 'last'."""
    state = load_checkpoint(path)
    model = build_model(state["architecture"], encoder_weights=None)
    model.load_state_dict(best_weights(state) if which == "best" else state["model"])
    return model.eval(), state


def best_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The best-validation weights of any checkpoint: a weights file holds only those; a full training
    state holds them separately unless the last epoch was the best (then they are its `model`)."""
    return state.get("best_model") or state["model"]


def require_teacher_path(path: str | None) -> str:
    """The path of a valid teacher checkpoint, or the error that says what is wrong and how to fix it."""
    return _teacher_state(path, mmap=True)["path"]


def teacher_split(path: str) -> dict[str, Any] | None:
    """The training split a teacher checkpoint records (None for checkpoints that predate the record)."""
    return load_checkpoint(path, mmap=True).get("split")


def named_teacher(path: str | None) -> str:
    """`path`, or the error saying distillation needs a teacher checkpoint (nothing is read)."""
    if not path:
        raise UserError(
            "mode distillation needs 'teacher_checkpoint'; train one with "
            "`python -m core.train --mode teacher` and set teacher_checkpoint=<run>/best.pt"
        )
    return path


def _teacher_state(path: str | None, mmap: bool = False) -> dict[str, Any]:
    state = load_checkpoint(named_teacher(path), mmap=mmap)
    arch = state.get("architecture", {})
    if arch.get("arch") != TEACHER_ARCH:
        raise UserError(
            f"{state['path']}: holds a {arch.get('arch')}/{arch.get('encoder')} model, not a "
            f"teacher ({TEACHER_ARCH}); pass a checkpoint from --mode teacher"
        )
    return state


def load_frozen_teacher(path: str | None, device: torch.device) -> nn.Module:
    """The trained teacher for distillation: eval mode, no gradients."""
    state = _teacher_state(path)
    teacher = build_model(state["architecture"], encoder_weights=None)
    teacher.load_state_dict(best_weights(state))
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"'device' is {name!r} but no CUDA GPU is visible; use device=auto or cpu")
    return torch.device(name)
