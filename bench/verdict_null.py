"""How often the sweep's verdict on the teacher is wrong, and how often it finds a real effect: the whole
procedure after the search — candidates at an equal budget with one front configuration per student
(tune.sweep.select.choose_candidates), selection over seeds (tune.records.rank_confirmed), the verdict's
configurations (tune.sweep.verdict.plan_verdict) and its judgement on fresh seeds (tune.sweep.verdict.judge) —
driven by a simulated trainer, many times.

Shaped like search_spaces/kd.yaml: 6 student backbones, a deploy target (front configurations), 24 trials
per arm, top 3 of each arm, 3 selection and 8 verdict seeds. A configuration's true validation Dice is 0.70
plus its backbone's offset, minus `--curvature` per squared decade of learning rate away from the best (3e-4),
plus its own deviation (SD `--config-sd`, drawn once per setting of the shared keys: α and T do nothing), plus
`--effect` when it trains with the teacher. A run adds a seed effect shared by every configuration trained
with that seed (SD 0.01) and its own noise (SD 0.011).

With `--effect 0` "helped" and "hurt" are error rates; with `--effect 0.02` `helped_rate` is the power.
Landscapes with curvature or configuration deviations are where comparing two separately searched
configurations (`--design tuned`) fires without any teacher effect: the arms' best configurations differ for
reasons other than the teacher.

    python bench/verdict_null.py                       # the table: five nulls and +0.02, default vs tuned
    python bench/verdict_null.py --effect 0 --curvature 0.04 --runs 1000 [--design ablation] [--seed 1]
Prints `RESULT design=... helped_rate=... hurt_rate=... no_effect_rate=... runs=...` per row.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import config_from_dict, teacher_only_keys
from tune.objective import Objective
from tune.records import Candidate, Confirmed, TrialRow, rank_confirmed
from tune.sampling import Sampled, param_name
from tune.space import VERDICT_DESIGNS, ConfirmSettings
from tune.sweep.select import choose_candidates, seed_plan
from tune.sweep.verdict import judge, plan_verdict

OBJECTIVE = Objective("best_val_dice", "max")
BACKBONES = {
    "tu-mobilenetv3_small_100": -0.03,
    "tu-mobilenetv3_large_100": -0.01,
    "mobilenet_v2": 0.0,
    "efficientnet-b0": 0.01,
    "resnet18": 0.005,
    "resnet34": 0.015,
}
BASE = config_from_dict({"encoder_weights": None, "mode": "distillation"}, source="bench")
SHIPPED = ConfirmSettings(top_k=3, seeds=3, verdict_seeds=8)  # kd.yaml's confirm settings
PER_ARM, MAX_T, SEARCH_SEED = 24, 40, 42
SEED_SD, RUN_SD, BEST_LR = 0.01, 0.011, 3e-4
# The landscapes with no teacher effect (curvature, config SD), then a true effect of +0.02.
TABLE = [(0.0, 0.0, 0.0), (0.0, 0.04, 0.0), (0.0, 0.0, 0.005), (0.0, 0.04, 0.005), (0.0, 0.0, 0.01), (0.02, 0.0, 0.0)]


class SimulatedTrainer:
    """Validation Dice of (configuration, seed): a landscape over the shared settings, the teacher's effect,
    a seed effect shared by configurations and run noise."""

    def __init__(self, rng: np.random.Generator, effect: float, curvature: float, config_sd: float):
        self.rng, self.effect, self.curvature, self.config_sd = rng, effect, curvature, config_sd
        self.deviation: dict[str, float] = {}
        self.seed_effect: dict[int, float] = {}

    def sample(self, arm: str) -> Sampled:
        values = {
            "learning_rate": float(10 ** self.rng.uniform(-5, math.log10(3e-3))),
            "student_backbone": str(self.rng.choice(list(BACKBONES))),
        }
        if arm == "kd":
            values.update(alpha=float(self.rng.uniform(0.1, 0.9)), temperature=float(self.rng.uniform(1, 10)))
        return Sampled(arm, values)

    def true_dice(self, sampled: Sampled) -> float:
        shared = {k: v for k, v in sampled.params.items() if param_name(k) not in teacher_only_keys()}
        key = repr(sorted(shared.items()))
        if key not in self.deviation:  # drawn once per setting of the shared keys: the teacher does not change it
            self.deviation[key] = float(self.rng.normal(0, self.config_sd)) if self.config_sd else 0.0
        lr_decades = math.log10(shared["learning_rate"]) - math.log10(BEST_LR)
        teacher = self.effect if sampled.arm == "kd" else 0.0
        return (
            0.70
            + BACKBONES[shared["student_backbone"]]
            - self.curvature * lr_decades**2
            + self.deviation[key]
            + teacher
        )

    def train(self, sampled: Sampled, seed: int) -> float:
        if seed not in self.seed_effect:
            self.seed_effect[seed] = float(self.rng.normal(0, SEED_SD))
        return self.true_dice(sampled) + self.seed_effect[seed] + float(self.rng.normal(0, RUN_SD))


def seed_runs(trainer: SimulatedTrainer, candidate: Candidate, seeds: list[int]) -> Confirmed:
    values = [trainer.train(candidate.sampled, s) for s in seeds]
    return Confirmed(candidate, seeds, values, values, [""] * len(seeds), [""] * len(seeds))


def one_sweep(trainer: SimulatedTrainer, design: str, confirm: ConfirmSettings = SHIPPED) -> str:
    """The verdict's outcome for one simulated sweep: search, candidates (with the front), selection, verdict."""
    rows = []
    for arm in ("kd", "baseline"):
        for i in range(PER_ARM):
            sampled = trainer.sample(arm)
            v = trainer.train(sampled, SEARCH_SEED)
            rows.append(TrialRow(f"{arm}{i}", sampled, "finished", MAX_T, v, v, v, MAX_T, v, curve={MAX_T: v}))
    candidates = choose_candidates(rows, confirm.top_k, [MAX_T], OBJECTIVE, front_of=BASE.student_backbone)
    selection_seeds, verdict_seeds = seed_plan(SEARCH_SEED, confirm.seeds, confirm.verdict_seeds)
    selected = [seed_runs(trainer, c, selection_seeds) for c in candidates]
    plan = plan_verdict(selected, OBJECTIVE, BASE, design)
    if plan is None:
        return "no verdict"
    winner = rank_confirmed(selected, OBJECTIVE)[0].candidate
    runs = {c.name: seed_runs(trainer, c, verdict_seeds) for c in plan.candidates(winner)}
    return judge(plan, runs, OBJECTIVE, confirm.margin).outcome


def rates(effect: float, curvature: float, config_sd: float, runs: int, seed: int, design: str) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    outcomes = [one_sweep(SimulatedTrainer(rng, effect, curvature, config_sd), design) for _ in range(runs)]
    return {o: outcomes.count(o) / runs for o in ("helped", "hurt", "no effect", "inconclusive", "no verdict")}


def result_line(design: str, r: dict[str, float], runs: int) -> str:
    return (
        f"RESULT design={design} helped_rate={r['helped']:.4f} hurt_rate={r['hurt']:.4f} "
        f"no_effect_rate={r['no effect']:.4f} runs={runs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--effect", type=float, help="the teacher's true effect on val Dice (no flag: the table)")
    parser.add_argument("--curvature", type=float, default=0.0, help="Dice lost per squared decade of learning rate")
    parser.add_argument("--config-sd", type=float, default=0.0, help="a setting's own deviation from the landscape")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--design", choices=VERDICT_DESIGNS, default=SHIPPED.verdict)
    args = parser.parse_args()
    start = time.perf_counter()
    if args.effect is not None:
        r = rates(args.effect, args.curvature, args.config_sd, args.runs, args.seed, args.design)
        print(result_line(args.design, r, args.runs) + f"  ({time.perf_counter() - start:.0f}s)")
        return
    designs = (SHIPPED.verdict, "tuned")
    table = []
    for effect, curvature, config_sd in TABLE:
        cells = []
        for design in designs:
            r = rates(effect, curvature, config_sd, args.runs, args.seed, design)
            cells.append(f"{r['helped']:.3f} / {r['hurt']:.3f} / {r['no effect']:.3f}")
            print(f"{result_line(design, r, args.runs)} effect={effect} curvature={curvature} config_sd={config_sd}")
        table.append(f"{effect:>7}{curvature:>10}{config_sd:>10}  " + "".join(f"{c:>32}" for c in cells))
    print(f"\n{args.runs} simulated kd.yaml-shaped sweeps per row: rate of helped / hurt / no effect")
    print(f"{'effect':>7}{'curvature':>10}{'config SD':>10}  " + "".join(f"{d:>32}" for d in designs))
    print("\n".join(table) + f"\n({time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
