"""A deterministic stand-in for `Trainer`: the same data, model, checkpoints and history, but each epoch's
validation Dice is a fixed function of the configuration, the seed and the epoch instead of a trained model's.

A sweep with `search.trainer: simulated` exercises every decision it makes (which trials ASHA stops, what TPE
proposes next, which candidate is selected, the verdict's arithmetic) in seconds per trial and with the same
numbers on every CPU: torch's kernels take other floating-point paths on another CPU, and every later TPE
proposal follows from the values a trial reports. Its results say nothing about polyps.
"""

from __future__ import annotations

import hashlib
import math
import random

from core.config import TrainConfig
from core.train import Trainer, ValidationScores

# The landscape: a best learning rate, a backbone offset, a teacher effect that depends on alpha and T,
# a saturating learning curve and seed-to-seed noise of about the size real 64 px runs show.
BEST_LEARNING_RATE = 3e-3
LEARNING_RATE_CURVATURE = 0.05  # Dice lost per squared decade away from the best learning rate
TEACHER_GAIN = 0.02
EPOCHS_TO_SATURATE = 2.0
SEED_NOISE_SD = 0.01


def _unit_random(*parts: object) -> random.Random:
    """A random stream named by `parts`: the same on every machine and Python build (no `hash()` salt)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def simulated_quality(cfg: TrainConfig) -> float:
    """The Dice a configuration reaches with unlimited epochs, before seed noise."""
    quality = 0.70 - LEARNING_RATE_CURVATURE * (math.log10(cfg.learning_rate / BEST_LEARNING_RATE)) ** 2
    quality += _unit_random("backbone", cfg.student_backbone).uniform(-0.03, 0.03)
    quality -= 0.1 * max(0.0, math.log10(cfg.weight_decay / 1e-4))
    if cfg.mode == "distillation":
        quality += TEACHER_GAIN * (1 - 4 * (cfg.alpha - 0.5) ** 2) - 0.001 * (cfg.temperature - 4.0) ** 2
    return quality


def simulated_val_dice(cfg: TrainConfig, epoch: int) -> float:
    """Validation Dice after `epoch` epochs of `cfg` (`cfg.seed` picks the noise), in [0, 1]."""
    curve = 1 - math.exp(-epoch / EPOCHS_TO_SATURATE)
    noise = _unit_random("seed", cfg.seed, cfg.mode, cfg.student_backbone, epoch).gauss(0.0, SEED_NOISE_SD)
    return min(1.0, max(0.0, simulated_quality(cfg) * curve + noise))


class SimulatedTrainer(Trainer):
    """`Trainer` whose epoch is no gradient step and no validation pass, only `simulated_val_dice`. The model
    keeps its seeded initial weights, so checkpoints, export and prediction downstream work unchanged."""

    def train_and_validate(self) -> tuple[float, ValidationScores]:
        # A step without gradients changes no weight and keeps the learning-rate schedule's order check quiet.
        self.optimizer.step()
        dice = simulated_val_dice(self.cfg, self.epoch + 1)
        return 1.0 - dice, ValidationScores(dice, dice / (2.0 - dice))


TRAINERS: dict[str, type[Trainer]] = {"torch": Trainer, "simulated": SimulatedTrainer}
