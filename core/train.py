"""The training loop, written once: `Trainer.epochs()` yields each epoch's metrics and the trainer's
state can be saved and restored, so `core.train`'s CLI and the Ray trainable share every line of it.

CLI: python -m core.train --mode {baseline,distillation,teacher} [--config F.yaml] [--set k=v ...]
     python -m core.train --resume <run>/last.pt [--set epochs=N]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from core.cache import training_caches
from core.checkpoint import best_epoch, load_checkpoint, save_checkpoint
from core.config import MODES, TrainConfig, config_from_dict, load_config, parse_overrides
from core.data import CachedEvalSet, EpochSampler, PolypData, TrainSet, discover, eval_loader, normalize, train_loader
from core.errors import UserError, cli_errors
from core.evaluate import evaluate_test_sets, format_table, score_loader
from core.losses import DistillationLoss, SupervisedLoss
from core.metrics import source_summaries, validation_average
from core.models import (
    architecture,
    best_weights,
    build_for_training,
    count_parameters,
    load_frozen_teacher,
    require_teacher_path,
    resolve_device,
    teacher_split,
)
from core.split import check_teacher_split, training_split


class DivergedError(UserError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochResult:
    epoch: int  # epochs completed so far, 1-based
    train_loss: float
    val_dice: float  # averaged as cfg.val_averaging says (over sources or images)
    val_iou: float
    seconds: float
    learning_rate: float
    is_best: bool
    val_dice_by_source: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationScores:
    dice: float  # averaged as cfg.val_averaging says
    iou: float
    dice_by_source: dict[str, float] = field(default_factory=dict)


class Trainer:
    """One training run of `cfg.mode`: model, optional frozen teacher, optimizer, data and history."""

    def __init__(self, cfg: TrainConfig, data: PolypData | None = None, progress: bool = False):
        self.cfg = cfg.validate()
        self.device = resolve_device(cfg.device)
        self.progress = progress
        self.data = data if data is not None else discover(cfg.data_root)
        distill = cfg.mode == "distillation"
        split = training_split(cfg, self.data.train)
        train_pairs, val_pairs, self.split = split.train, split.val, split.record
        self.val_sources = [split.sources[p.stem] for p in val_pairs]  # in the validation loader's order
        if distill:
            path = require_teacher_path(cfg.teacher_checkpoint)  # a wrong teacher fails before any decoding
            check_teacher_split(teacher_split(path), self.split, path)
        # Train and validation images are decoded once per node and shared by every run there.
        # Cached distillation: the teacher's logits on the un-augmented images, moved with each
        # augmentation; the teacher never runs in the loop. Online: it runs on every augmented batch.
        samples, cached_logits = training_caches(cfg, self.data.train, self.device, progress)
        self.teacher = (
            load_frozen_teacher(cfg.teacher_checkpoint, self.device) if distill and cached_logits is None else None
        )
        self.train_loader = train_loader(
            TrainSet(samples.images, samples.masks, samples.index_of(train_pairs), cfg.seed, cached_logits),
            cfg.batch_size,
            cfg.seed,
            cfg.num_workers,
        )
        self.val_loader = eval_loader(
            CachedEvalSet(samples.images, samples.masks, samples.index_of(val_pairs), samples.stems),
            cfg.batch_size,
            cfg.num_workers,
        )

        torch.manual_seed(cfg.seed)
        self.model = build_for_training(cfg).to(self.device)
        self.criterion: nn.Module = (
            DistillationLoss(cfg.alpha, cfg.temperature, cfg.kd_loss) if distill else SupervisedLoss()
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs)
        # Mixed precision only where it pays and is well supported: CUDA.
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        self.epoch = 0
        self.best_val_dice = -math.inf
        self.best_model: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []

    @property
    def best_epoch(self) -> dict[str, Any] | None:
        """The history entry of the epoch with the highest validation Dice so far."""
        return best_epoch(self.history)

    def epochs(self) -> Iterator[EpochResult]:
        """Train until cfg.epochs, yielding after each epoch (state is consistent at every yield)."""
        while self.epoch < self.cfg.epochs:
            yield self.run_epoch()

    def run_epoch(self) -> EpochResult:
        start = time.perf_counter()
        train_loss, val = self.train_and_validate()
        self.scheduler.step()
        self.epoch += 1
        is_best = val.dice > self.best_val_dice
        if is_best:
            self.best_val_dice = val.dice
            self.best_model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        result = EpochResult(
            self.epoch,
            train_loss,
            val.dice,
            val.iou,
            time.perf_counter() - start,
            self.optimizer.param_groups[0]["lr"],
            is_best,
            val.dice_by_source,
        )
        self.history.append(result.to_dict())
        return result

    def train_and_validate(self) -> tuple[float, ValidationScores]:
        """One epoch of training, then the validation set: (train loss, its scores)."""
        train_loss = self._train_one_epoch()
        scores = score_loader(self.model, self.val_loader, self.device, self.amp)
        average = validation_average(scores, self.val_sources, self.cfg.val_averaging)
        by_source = {source: s["dice"] for source, s in source_summaries(scores, self.val_sources).items()}
        return train_loss, ValidationScores(average["dice"], average["iou"], by_source)

    def _train_one_epoch(self) -> float:
        self.model.train()
        sampler = self.train_loader.sampler
        assert isinstance(sampler, EpochSampler)  # what train_loader() builds; mypy sees DataLoader's Sampler
        sampler.set_epoch(self.epoch)
        total, batches = 0.0, 0
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
            leave=False,
            disable=not self.progress,
            unit="batch",
        )
        for batch in bar:
            images = normalize(batch[0].to(self.device, non_blocking=True))
            masks = batch[1].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.model(images)
                if self.teacher is not None:
                    with torch.no_grad():
                        target_logits = self.teacher(images).float()
                elif len(batch) == 3:
                    target_logits = batch[2].to(self.device, non_blocking=True)
                else:
                    target_logits = None
            if target_logits is None:
                loss = self.criterion(logits.float(), masks)
            else:
                loss = self.criterion(logits.float(), masks, target_logits)
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"training loss became {loss.item()} at epoch {self.epoch + 1}, batch {batches + 1} "
                    f"(learning_rate={self.cfg.learning_rate:g}); lower learning_rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.item()
            batches += 1
            bar.set_postfix(loss=f"{total / batches:.4f}")
        return total / max(batches, 1)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this epoch ended; plain tensors and values."""
        best_is_last = bool(self.history) and self.history[-1]["is_best"]
        return {
            **self._summary(),
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            # Stored once when they are the current weights: a checkpoint is 3x the model, not 4x.
            "best_model": None if best_is_last else self.best_model,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def weights_state(self) -> dict[str, Any]:
        """The best-validation weights with config and history only (best.pt): 1x the model."""
        best = self.best_epoch
        if self.best_model is None or best is None:
            raise RuntimeError("no epoch has finished yet: there are no best weights to save")
        return {**self._summary(), "epoch": best["epoch"], "model": self.best_model, "weights_only": True}

    def _summary(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "architecture": architecture(self.cfg),
            "best_val_dice": self.best_val_dice,
            "history": self.history,
            "synthetic_data": self.data.synthetic,
            "split": self.split,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("architecture") != architecture(self.cfg):
            raise UserError(
                f"{state.get('path', 'checkpoint')}: holds a {state.get('architecture')} model, "
                f"this run trains {architecture(self.cfg)}; resume with the matching mode"
            )
        if "optimizer" not in state:
            raise UserError(
                f"{state.get('path', 'checkpoint')}: holds the best weights only, not a "
                f"training state; resume from last.pt in the same folder"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        self.best_val_dice = float(state["best_val_dice"])
        self.history = list(state.get("history", []))
        self.best_model = best_weights(state) if self.history else None

    def evaluate_best(self) -> dict[str, Any]:
        """Test-set scores of the best-validation weights (reported, never selected on)."""
        if self.best_model is None:
            raise RuntimeError("no epoch has finished yet: there are no best weights to evaluate")
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_model)
        return evaluate_test_sets(
            model, self.data, self.cfg.img_size, self.cfg.batch_size, self.device, self.cfg.num_workers
        )

    def save(self, path: str | Path) -> Path:
        """The full training state (last.pt, trial checkpoints): what `resume` continues from."""
        return save_checkpoint(self.state_dict(), path)

    def save_best(self, path: str | Path) -> Path:
        """The best weights only (best.pt): what evaluation, distillation and export read."""
        return save_checkpoint(self.weights_state(), path)

    @classmethod
    def resume(
        cls,
        path: str | Path,
        overrides: dict[str, Any] | None = None,
        data: PolypData | None = None,
        progress: bool = False,
    ) -> Trainer:
        """Rebuild a trainer from a checkpoint's own config (plus overrides) and restore its state."""
        state = load_checkpoint(path)
        cfg = config_from_dict({**state["config"], **(overrides or {})}, source=f"{state['path']} config")
        trainer = cls(cfg, data=data, progress=progress)
        trainer.load_state_dict(state)
        return trainer


def run_training(trainer: Trainer, log: Callable[[str], None] = print) -> Path:
    """The CLI loop: print each epoch, keep last.pt / best.pt / history.json, then score test sets."""
    cfg = trainer.cfg
    run_dir = cfg.run_dir
    log(trainer.data.describe())
    log(
        f"{cfg.mode}: {architecture(cfg)['arch']}/{architecture(cfg)['encoder']} "
        f"({count_parameters(trainer.model) / 1e6:.1f}M params) on {trainer.device}, "
        f"{cfg.img_size}px, batch {cfg.batch_size}, epochs {trainer.epoch + 1}..{cfg.epochs} -> {run_dir}"
    )
    for result in trainer.epochs():
        # The run folder appears with the first finished epoch, so a run that fails early leaves nothing.
        trainer.save(run_dir / "last.pt")
        if result.is_best:
            trainer.save_best(run_dir / "best.pt")
        (run_dir / "history.json").write_text(json.dumps(trainer.history, indent=2))
        log(
            f"epoch {result.epoch:3d}/{cfg.epochs}  loss {result.train_loss:.4f}  "
            f"val dice {result.val_dice:.4f}  iou {result.val_iou:.4f}  {result.seconds:5.1f}s"
            + ("  *best" if result.is_best else "")
            + (
                "  (" + ", ".join(f"{s} {d:.4f}" for s, d in result.val_dice_by_source.items()) + ")"
                if len(result.val_dice_by_source) > 1
                else ""
            )
        )
    if trainer.best_model is not None:
        report = trainer.evaluate_best()
        (run_dir / "test_metrics.json").write_text(json.dumps(report, indent=2))
        log(format_table(report, title=f"test sets (best val epoch, val dice {trainer.best_val_dice:.4f})"))
    return run_dir


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m core.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=MODES, help="what to train (overrides the config's mode)")
    parser.add_argument("--config", help="YAML file of TrainConfig keys")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key; repeatable",
    )
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its last.pt")
    args = parser.parse_args(argv)
    with cli_errors():
        if args.resume:
            if args.config or args.mode:
                raise UserError("--resume takes its config from the checkpoint; change values with --set")
            trainer = Trainer.resume(args.resume, overrides=parse_overrides(args.overrides), progress=True)
        else:
            cfg = load_config(args.config, args.overrides, extra={"mode": args.mode} if args.mode else None)
            trainer = Trainer(cfg, progress=True)
        run_training(trainer)


if __name__ == "__main__":
    main()
