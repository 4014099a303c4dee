"""How often the sweep's verdict is wrong: the whole procedure after the search — candidates at an equal
budget (tune.sweep.select.choose_candidates), selection over seeds (tune.records.rank_confirmed), the
same-student baseline (tune.sweep.verdict.partner_for) and the paired verdict on fresh seeds
(tune.sweep.verdict.paired_verdict) — driven by a simulated trainer, many times.

The simulated trainer: a configuration's true validation Dice is a smooth function of its learning rate
(best at 3e-3, falling with the squared distance in decades) plus a per-backbone offset, plus its own
config-level noise; a run adds a seed effect shared by every configuration trained with that seed and its
own run noise (paired SD of a KD-minus-baseline difference: `--paired-sd`). α and T do nothing; distillation
adds `effect` to every KD configuration. Each arm samples its own configurations (the same search effort).
By default the landscape is flat and configurations have no deviation of their own: the null the verdict
tests, "the selected KD configuration is no better than the selected baseline of the same student"; the
sensitivity lines then show how often it fires when the arms' best configurations truly differ.

Targets: with no effect, "helped" and "hurt" each at most 0.03 (nominal 0.025) over >= 2,000 runs; the power
at +0.02 (paired SD 0.015, 8 verdict seeds) is reported.

    python bench/verdict_null.py [--runs 5000]
Prints `RESULT false_helped_rate=... false_hurt_rate=... power_at_0.02=... runs=...`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import config_from_dict
from tune.objective import Objective
from tune.records import Confirmed, TrialRow, rank_confirmed
from tune.sampling import Sampled
from tune.sweep.select import choose_candidates, seed_plan
from tune.sweep.verdict import paired_verdict, partner_for

OBJECTIVE = Objective("best_val_dice", "max")
BACKBONES = {"mobilenet_v2": 0.0, "resnet18": 0.01}
BASE = config_from_dict({"encoder_weights": None, "mode": "distillation"}, source="bench")


class SimulatedTrainer:
    """Validation Dice of (configuration, seed), with config-level and seed-level noise."""

    def __init__(
        self, rng: np.random.Generator, effect: float, config_sd: float, seed_sd: float, run_sd: float, curvature: float
    ):
        self.rng, self.effect, self.curvature = rng, effect, curvature
        self.config_sd, self.seed_sd, self.run_sd = config_sd, seed_sd, run_sd
        self.quality: dict[str, float] = {}
        self.seed_effect: dict[int, float] = {}

    def sample(self, arm: str) -> Sampled:
        values = {
            "learning_rate": 10 ** self.rng.uniform(-4, -2),
            "student_backbone": str(self.rng.choice(list(BACKBONES))),
        }
        if arm == "kd":
            values.update(alpha=self.rng.uniform(0.1, 0.9), temperature=self.rng.uniform(1, 10))
        return Sampled(arm, values)

    def true_quality(self, sampled: Sampled) -> float:
        """Drawn once per configuration (its config-level noise), then fixed."""
        key = repr((sampled.arm, sorted(sampled.values.items())))
        if key not in self.quality:
            p = sampled.params
            self.quality[key] = (
                0.70
                - self.curvature * (math.log10(p["learning_rate"]) + 2.5) ** 2
                + BACKBONES[p["student_backbone"]]
                + self.rng.normal(0, self.config_sd)
                + (self.effect if sampled.arm == "kd" else 0.0)
            )
        return self.quality[key]

    def train(self, sampled: Sampled, seed: int) -> float:
        if seed not in self.seed_effect:
            self.seed_effect[seed] = self.rng.normal(0, self.seed_sd)
        return self.true_quality(sampled) + self.seed_effect[seed] + self.rng.normal(0, self.run_sd)


def seed_runs(trainer: SimulatedTrainer, candidate, seeds: list[int]) -> Confirmed:
    values = [trainer.train(candidate.sampled, s) for s in seeds]
    return Confirmed(candidate, seeds, values, values, [""] * len(seeds), [""] * len(seeds))


def one_sweep(trainer: SimulatedTrainer, per_arm: int, top_k: int, selection: int, verdict: int) -> str:
    """The outcome of one simulated sweep: search, candidates, selection, partner, verdict."""
    search_seed = 42
    rows = []
    for arm in ("kd", "baseline"):
        for i in range(per_arm):
            sampled = trainer.sample(arm)
            value = trainer.train(sampled, search_seed)
            rows.append(
                TrialRow(f"{arm}{i}", sampled, "finished", 12, value, value, value, 12, value, curve={12: value})
            )
    candidates = choose_candidates(rows, top_k, [12], OBJECTIVE)
    selection_seeds, verdict_seeds = seed_plan(search_seed, selection, verdict)
    selected = [seed_runs(trainer, c, selection_seeds) for c in candidates]
    kd = next(c for c in rank_confirmed(selected, OBJECTIVE) if c.candidate.arm == "kd")
    partner = partner_for(kd, selected, OBJECTIVE, BASE)
    result = paired_verdict(
        seed_runs(trainer, kd.candidate, verdict_seeds),
        seed_runs(trainer, partner, verdict_seeds),
        OBJECTIVE,
        "student",
    )
    return result.outcome


def rates(effect: float, args: argparse.Namespace, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(args.runs):
        trainer = SimulatedTrainer(
            rng, effect, args.config_sd, args.seed_sd, args.paired_sd / math.sqrt(2), args.curvature
        )
        outcomes.append(one_sweep(trainer, args.per_arm, args.top_k, args.selection_seeds, args.verdict_seeds))
    return {o: outcomes.count(o) / len(outcomes) for o in ("helped", "hurt", "inconclusive", "none")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--per-arm", type=int, default=24, help="search trials per arm (kd.yaml: 24)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--selection-seeds", type=int, default=3)
    parser.add_argument("--verdict-seeds", type=int, default=8)
    parser.add_argument("--paired-sd", type=float, default=0.015, help="SD of a paired KD-baseline difference")
    parser.add_argument("--seed-sd", type=float, default=0.01, help="seed effect shared by configurations")
    parser.add_argument("--config-sd", type=float, default=0.0, help="a configuration's own deviation")
    parser.add_argument(
        "--curvature",
        type=float,
        default=0.0,
        help="Dice lost per squared decade of learning rate away from the best (3e-3)",
    )
    parser.add_argument("--effect", type=float, default=0.02)
    args = parser.parse_args()
    start = time.perf_counter()
    null = rates(0.0, args, seed=0)
    alt = rates(args.effect, args, seed=1)
    print(f"no effect:  {null}")
    print(f"+{args.effect}: {alt}  ({time.perf_counter() - start:.0f}s)")
    # The verdict compares two selected configurations: where the arms' best configurations differ for
    # reasons other than the teacher (a learning rate one arm found and the other did not), it finds that too.
    for curvature, config_sd in ((0.04, 0.0), (0.0, 0.002), (0.04, 0.005)):
        other = argparse.Namespace(
            **{**vars(args), "curvature": curvature, "config_sd": config_sd, "runs": max(200, args.runs // 4)}
        )
        r = rates(0.0, other, seed=2)
        print(
            f"sensitivity, no effect, curvature {curvature}, config SD {config_sd}: helped {r['helped']:.4f} "
            f"hurt {r['hurt']:.4f} ({other.runs} runs)"
        )
    print(
        f"RESULT false_helped_rate={null['helped']:.4f} false_hurt_rate={null['hurt']:.4f} "
        f"power_at_{args.effect:g}={alt['helped']:.4f} runs={args.runs}"
    )


if __name__ == "__main__":
    main()
