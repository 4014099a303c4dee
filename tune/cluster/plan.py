"""Know the bill before `ray up`: a space's expected trial-epochs (its ASHA schedule simulated), and the
wall time and on-demand cost of running it on N workers of each `cluster.yaml` worker type.

    python -m tune.search --space kd.yaml --plan [--workers N] [--epoch-seconds S]

Nothing runs on a cluster. Without --epoch-seconds one epoch is measured on this machine (a subset of
the space's training images, scaled to all of them): on a CPU that is far slower than a GPU, so pass the
target GPU's seconds per epoch for a real estimate. On-demand prices are kept here, in one place.
"""

from __future__ import annotations

import heapq
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from core.data import PolypData, discover
from core.errors import UserError
from core.train import Trainer
from tune.space import SearchSpace
from tune.sweep.ray_compat.conventions import rungs

CLUSTER_FILE = Path(__file__).resolve().parents[2] / "cluster.yaml"
# AWS on-demand list prices, USD per hour, Linux, us-west-2 (cluster.yaml's region); spot is usually
# well below. A type missing here is shown without a cost.
ON_DEMAND_USD_PER_HOUR = {"m5.xlarge": 0.192, "g5.xlarge": 1.006, "g5.12xlarge": 5.672}
# A fresh process per trial imports torch, smp and albumentations before its first epoch
# (README, Performance: ~5.5 s per trial measured on this project's CPU machine).
TRIAL_START_SECONDS = 5.5
SIMULATIONS = 400
# Validation Dice at a rung: a trial's own quality plus this much noise (in units of the spread of
# qualities between trials), so that rungs rank trials alike but not identically.
RUNG_NOISE = 0.5
MEASURE_IMAGES = 32


@dataclass
class WorkerType:
    name: str
    instance: str
    cpu: float
    gpu: float
    max_workers: int

    @property
    def price(self) -> float | None:
        return ON_DEMAND_USD_PER_HOUR.get(self.instance)

    def trials_per_node(self, cpu: float, gpu: float) -> int:
        """How many trials asking for `cpu` CPUs and `gpu` GPUs Ray places on one node of this type."""
        fits = math.floor(self.cpu / cpu + 1e-9)
        if gpu > 0:
            fits = min(fits, math.floor(self.gpu / gpu + 1e-9))
        return fits


@dataclass
class ClusterShape:
    head_instance: str
    workers: list[WorkerType]
    idle_timeout_minutes: float

    @property
    def head_price(self) -> float | None:
        return ON_DEMAND_USD_PER_HOUR.get(self.head_instance)


def cluster_shape(path: Path = CLUSTER_FILE) -> ClusterShape:
    """The head's instance type and each worker type's resources, as cluster.yaml states them."""
    config = yaml.safe_load(path.read_text())
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = []
    for name, spec in types.items():
        if name == head:
            continue
        resources = spec.get("resources") or {}
        if "CPU" not in resources:
            raise UserError(
                f"{path}: available_node_types.{name}.resources must state CPU (and GPU) for the "
                f"packing check and the plan, e.g. {{CPU: 4, GPU: 1}}"
            )
        workers.append(
            WorkerType(
                name,
                spec["node_config"].get("InstanceType", name),
                float(resources["CPU"]),
                float(resources.get("GPU", 0)),
                int(spec.get("max_workers", 0)),
            )
        )
    return ClusterShape(
        types[head]["node_config"].get("InstanceType", head), workers, float(config.get("idle_timeout_minutes", 5))
    )


def simulate_asha(
    num_samples: int,
    concurrency: int,
    max_t: int,
    grace_period: int,
    reduction_factor: int,
    epoch_seconds: float = 1.0,
    start_seconds: float = 0.0,
    values: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[int, float]:
    """One run of Ray's asynchronous successive halving: (trial-epochs trained, seconds until the last trial
    ended). Trials start in order as slots free up; each epoch takes `epoch_seconds`. At a milestone a
    trial is stopped when its value is below the (1 - 1/reduction_factor) quantile of the values recorded
    there before it (Ray's rule, higher is better). `values[i, r]` is trial i's value at rung r (default:
    a random quality per trial plus rung noise)."""
    milestones = [m for m in rungs(max_t, grace_period, reduction_factor) if m < max_t]
    if values is None:
        rng = rng or np.random.default_rng()
        values = rng.normal(size=(num_samples, 1)) + RUNG_NOISE * rng.normal(size=(num_samples, len(milestones)))
    recorded: list[list[float]] = [[] for _ in milestones]
    events: list[tuple[float, int, int]] = []  # (time, trial, rung index or -1 for the end)
    total, clock, started = 0, 0.0, 0

    def start(trial: int, at: float) -> None:
        first = milestones[0] if milestones else max_t
        heapq.heappush(events, (at + start_seconds + first * epoch_seconds, trial, 0 if milestones else -1))

    for trial in range(min(concurrency, num_samples)):
        start(trial, 0.0)
        started += 1
    while events:
        clock, trial, rung = heapq.heappop(events)
        if rung == -1:
            total += max_t
        else:
            value, before = values[trial, rung], recorded[rung]
            stop = bool(before) and value < np.nanpercentile(before, (1 - 1 / reduction_factor) * 100)
            before.append(value)
            if stop:
                total += milestones[rung]
            else:
                last = rung + 1 == len(milestones)
                later = max_t if last else milestones[rung + 1]
                heapq.heappush(
                    events, (clock + (later - milestones[rung]) * epoch_seconds, trial, -1 if last else rung + 1)
                )
                continue
        if started < num_samples:
            start(started, clock)
            started += 1
    return total, clock


@dataclass
class SearchEstimate:
    epochs: float  # expected trial-epochs
    low: int  # 5th and 95th percentile over the simulations
    high: int
    seconds: float  # expected wall time of the search stage


def expected_search(
    space: SearchSpace,
    concurrency: int,
    epoch_seconds: float,
    start_seconds: float = TRIAL_START_SECONDS,
    simulations: int = SIMULATIONS,
    seed: int = 0,
) -> SearchEstimate:
    """Each arm's search (one after the other, its own ASHA) simulated `simulations` times."""
    rng = np.random.default_rng(seed)
    a = space.asha
    epochs, seconds = np.zeros(simulations), np.zeros(simulations)
    for n in space.arm_trials().values():
        for i in range(simulations):
            e, t = simulate_asha(
                n, concurrency, a.max_t, a.grace_period, a.reduction_factor, epoch_seconds, start_seconds, rng=rng
            )
            epochs[i] += e
            seconds[i] += t
    return SearchEstimate(
        float(epochs.mean()), int(np.percentile(epochs, 5)), int(np.percentile(epochs, 95)), float(seconds.mean())
    )


def verdict_configurations(space: SearchSpace) -> int:
    """At most how many configurations the verdict seeds train (tune/sweep/verdict.py): the winner, the best
    distillation configuration and, by design, its no-teacher twin, the tuned baseline and that baseline with
    the teacher."""
    assert space.confirm is not None
    design, control = space.confirm.verdict, space.has_control
    if design == "tuned":
        return 3 if control else 1
    return 3 + (2 if design == "factorial" else 1) * control


def post_search_runs(space: SearchSpace) -> dict[str, int]:
    """At most how many runs follow the search: selection (each arm's top-K, plus one front configuration per
    student backbone with a deploy target, all x selection seeds) and verdict (configurations x fresh seeds)."""
    if space.confirm is None:
        return {"selection": 0, "front": 0, "verdict": 0}
    c, arms = space.confirm, len(space.arm_trials())
    front = len(space.student_backbones()) if space.deploy else 0
    return {
        "selection": c.top_k * arms * c.seeds,
        "front": front * c.seeds,
        "verdict": verdict_configurations(space) * c.verdict_seeds,
    }


def confirmation_runs(space: SearchSpace) -> int:
    """Every run after the search, at most (`post_search_runs` summed)."""
    return sum(post_search_runs(space).values())


def measure_epoch_seconds(space: SearchSpace, teacher: bool = False) -> tuple[float, str]:
    """Seconds of one training epoch of the space's base config on this machine, on all its training images
    (timed on a spread of MEASURE_IMAGES of them, the second of two epochs, loading in the training process,
    then scaled). A distillation trial is timed as the same student without a teacher: with cached teacher
    logits an epoch costs the same (README, Performance: KD-cached / baseline 0.99 to 1.01)."""
    data = discover(space.base_config().data_root)
    if len(data.train) < 4:
        raise UserError(f"{data.root}: too few training images to time an epoch; pass --epoch-seconds")
    step = max(1, len(data.train) // MEASURE_IMAGES)
    subset = data.train[::step][:MEASURE_IMAGES]
    cfg = space.teacher_config() if teacher else space.base_config()
    with tempfile.TemporaryDirectory(prefix="polyp-kd-plan-") as tmp:
        # Loader workers off: starting them is a fixed cost per epoch that scaling a subset would multiply.
        cfg = cfg.replace(
            epochs=2,
            encoder_weights=None,
            val_split="random",
            save_dir=tmp,
            cache_dir=tmp,
            num_workers=0,
            **({} if teacher else {"mode": "baseline", "teacher_checkpoint": None}),
        )
        trainer = Trainer(cfg, data=PolypData(data.root, subset, {}))
        seconds = [result.seconds for result in trainer.epochs()][-1]
    what = f"UNet++/{cfg.teacher_backbone}" if teacher else cfg.student_backbone
    source = (
        f"measured on this machine ({trainer.device.type}): {what} at {cfg.img_size}px, batch {cfg.batch_size}, "
        f"{len(subset)} of {len(data.train)} images timed and scaled"
    )
    return seconds * len(data.train) / len(subset), source


@dataclass
class Plan:
    space: SearchSpace
    epoch_seconds: float
    epoch_source: str
    teacher_epochs: int
    teacher_epoch_seconds: float | None
    rows: list[dict]
    search_epochs: SearchEstimate  # at the first row's concurrency (trial-epochs barely depend on it)
    confirm_epochs: int


def make_plan(
    space: SearchSpace, workers: int | None, epoch_seconds: float | None, shape: ClusterShape | None = None
) -> Plan:
    shape = shape or cluster_shape()
    r = space.resources
    teacher_epochs = space.teacher_config().epochs if space.distillation and not space.teacher.checkpoint else 0
    teacher_seconds = None
    if epoch_seconds is None:
        epoch_seconds, source = measure_epoch_seconds(space)
        if teacher_epochs:
            teacher_seconds, _ = measure_epoch_seconds(space, teacher=True)
    else:
        if epoch_seconds <= 0:
            raise UserError(f"--epoch-seconds must be > 0, got {epoch_seconds:g}")
        source = "given (--epoch-seconds)"
    confirm_runs = confirmation_runs(space)
    rows: list[dict[str, Any]] = []
    for worker in shape.workers:
        per_node = worker.trials_per_node(r.cpu, r.gpu)
        if per_node < 1:
            rows.append({"type": worker, "per_node": 0})
            continue
        # Default: as many workers as the concurrent trials fill, which is what the autoscaler launches.
        n = workers or min(max(1, worker.max_workers), math.ceil(space.search.max_concurrent_trials / per_node))
        concurrency = min(space.search.max_concurrent_trials, n * per_node)
        search = expected_search(space, concurrency, epoch_seconds)
        trial_seconds = TRIAL_START_SECONDS + space.asha.max_t * epoch_seconds
        confirm_seconds = math.ceil(confirm_runs / concurrency) * trial_seconds if confirm_runs else 0.0
        teacher = teacher_epochs * (teacher_seconds or 0.0)
        wall = teacher + search.seconds + confirm_seconds
        cost = None
        if worker.price is not None and shape.head_price is not None:
            # Workers stay idle_timeout_minutes after the last trial before the autoscaler removes them.
            cost = (wall / 3600) * (
                shape.head_price + n * worker.price
            ) + shape.idle_timeout_minutes / 60 * n * worker.price
        rows.append(
            {
                "type": worker,
                "per_node": per_node,
                "workers": n,
                "concurrency": concurrency,
                "search": search,
                "wall": wall,
                "cost": cost,
            }
        )
    fitting = [row for row in rows if row["per_node"]]
    if not fitting:
        raise UserError(
            f"{space.source}: a trial asking for resources {{cpu: {r.cpu:g}, gpu: {r.gpu:g}}} fits no "
            f"worker type in {CLUSTER_FILE.name}; lower them or add a larger type"
        )
    return Plan(
        space,
        epoch_seconds,
        source,
        teacher_epochs,
        teacher_seconds,
        rows,
        fitting[0]["search"],
        confirm_runs * space.asha.max_t,
    )


def format_plan(plan: Plan, shape: ClusterShape | None = None) -> str:
    shape = shape or cluster_shape()
    space, a, s = plan.space, plan.space.asha, plan.space.search
    search = plan.search_epochs
    lines = [
        f"plan for sweep {space.name} ({space.source}): nothing is run on a cluster",
        f"  epoch: {plan.epoch_seconds:.1f} s per trial epoch, {plan.epoch_source}",
    ]
    if "measured" in plan.epoch_source:
        lines.append(
            "         (a GPU is far faster than this machine's CPU: pass --epoch-seconds S for the target GPU)"
        )
    control = (
        f"; {space.arm_trials()['baseline']} of them the no-teacher control arm, searched on its own"
        if space.has_control
        else ""
    )
    lines.append(
        f"  search: {s.num_samples} trials, ASHA milestones at epochs {', '.join(map(str, a.rungs()))}"
        f" (reduction factor {a.reduction_factor}, max_t {a.max_t}){control}: expected "
        f"{search.epochs:.0f} trial-epochs (90% of {SIMULATIONS} simulations: {search.low}-{search.high})"
    )
    if space.confirm is not None:
        c, runs = space.confirm, post_search_runs(space)
        front = (
            f" + {runs['front'] // c.seeds} front configurations (one per student backbone) x {c.seeds} seeds"
            if runs["front"]
            else ""
        )
        lines.append(
            f"  selection: at most {runs['selection'] + runs['front']} runs ({c.top_k} configurations of each arm "
            f"x {c.seeds} seeds{front}) x {a.max_t} epochs = {(runs['selection'] + runs['front']) * a.max_t} "
            "trial-epochs"
        )
        lines.append(
            f"  verdict ({c.verdict}): at most {runs['verdict']} runs ({verdict_configurations(space)} "
            f"configurations x {c.verdict_seeds} fresh seeds) x {a.max_t} epochs = {runs['verdict'] * a.max_t} "
            "trial-epochs"
        )
    if plan.teacher_epochs:
        priced = (
            f", {plan.teacher_epoch_seconds:.1f} s each (measured here)"
            if plan.teacher_epoch_seconds
            else "; not in the wall time below (its epochs cost more than a student's: measure with --plan)"
        )
        lines.append(f"  teacher: trained in the sweep, {plan.teacher_epochs} epochs{priced}")
    lines.append(
        f"  total: {search.epochs + plan.confirm_epochs:.0f} trial-epochs"
        + (f" + {plan.teacher_epochs} teacher epochs" if plan.teacher_epochs else "")
    )
    lines.append("")
    lines.append(
        f"  {'worker type':<18}{'instance':<13}{'trials/node':>12}{'workers':>9}{'concurrent':>12}"
        f"{'wall':>10}{'on-demand cost':>16}"
    )
    for row in plan.rows:
        w = row["type"]
        if not row["per_node"]:
            lines.append(
                f"  {w.name:<18}{w.instance:<13}{'0':>12}   a trial ({space.resources.cpu:g} CPU, "
                f"{space.resources.gpu:g} GPU) does not fit ({w.cpu:g} CPU, {w.gpu:g} GPU)"
            )
            continue
        cost = f"${row['cost']:,.2f}" if row["cost"] is not None else "price unknown"
        lines.append(
            f"  {w.name:<18}{w.instance:<13}{row['per_node']:>12}{row['workers']:>9}{row['concurrency']:>12}"
            f"{_duration(row['wall']):>10}{cost:>16}"
        )
    head = f"${shape.head_price:.3f}/h" if shape.head_price is not None else "price unknown"
    prices = ", ".join(f"{w.instance} ${w.price:.3f}/h" for w in shape.workers if w.price is not None)
    lines.append(
        f"  cost: head {shape.head_instance} {head} for the whole run, workers ({prices}) plus "
        f"{shape.idle_timeout_minutes:g} min idle at the end; AWS on-demand list prices in "
        f"tune/cluster/plan.py, spot is usually well below; node start-up and setup not included"
    )
    return "\n".join(lines)


def print_plan(space: SearchSpace, workers: int | None, epoch_seconds: float | None) -> None:
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    shape = cluster_shape()
    print(format_plan(make_plan(space, workers, epoch_seconds, shape), shape))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
