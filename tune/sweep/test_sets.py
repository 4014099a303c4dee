"""Stage 5's test-set scores: every verdict checkpoint of the compared configurations, scored once on every
test set present and kept per image (test_per_image.csv); from them the winner's score over its seeds and the
teacher's effect on the test sets (the verdict's first pair: with minus without the teacher), each with a
two-way bootstrap interval (seeds, and test images resampled by content group: a video's frames together).
"""

from __future__ import annotations

import csv
import math
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from core.config import config_from_dict
from core.data import PolypData, discover
from core.evaluate import score_test_sets, summarize
from core.files import atomic_file
from core.metrics import SegmentationScores
from core.models import load_model, resolve_device
from core.split import content_groups
from tune.cluster import storage
from tune.records import CHECKPOINT_FILE, TEST_PER_IMAGE_FILE, Confirmed, resolve
from tune.statistics import two_way_bootstrap
from tune.sweep.runtime import SweepRun

# Per configuration name, per seed, per test set: the image stems and their (Dice, IoU) in the same order.
Scores = dict[str, dict[int, dict[str, tuple[list[str], np.ndarray]]]]


@dataclass
class TestSetScores:
    scores: Scores
    data: PolypData
    clusters: dict[str, list[list[int]]]  # per test set: column indices of its content groups

    def table(self, name: str, seeds: list[int], test_set: str, metric: int) -> np.ndarray:
        """seeds x images of one configuration's `metric` (0 Dice, 1 IoU) on one test set."""
        return np.stack([self.scores[name][seed][test_set][1][:, metric] for seed in seeds])

    @property
    def missing(self) -> list[str]:
        return list(self.data.missing_test_sets)

    def summary(self, name: str, seed: int) -> dict[str, Any] | None:
        """One checkpoint's scores as core.evaluate reports them (None where that run has none)."""
        by_set = self.scores.get(name, {}).get(seed)
        if by_set is None:
            return None
        scored = {
            test_set: (stems, SegmentationScores(values[:, 0].tolist(), values[:, 1].tolist()))
            for test_set, (stems, values) in by_set.items()
        }
        return summarize(scored, self.data)

    def seeds(self, *names: str) -> list[int]:
        """The seeds every named configuration has a scored checkpoint of (failed runs have none)."""
        common = set.intersection(*(set(self.scores[name]) for name in names))
        return sorted(common)


def score_verdict_checkpoints(
    run: SweepRun, configurations: list[Confirmed], data_root: str | None = None
) -> TestSetScores:
    """Score every seed's checkpoint of `configurations` on the test sets under `data_root` (default: the
    one they trained on; failed seeds are skipped) and write test_per_image.csv beside best.json."""
    device = resolve_device("auto")
    scores: Scores = {}
    data: PolypData | None = None
    cache_dir = None
    with ExitStack() as stack:
        for confirmed in configurations:
            scores[confirmed.candidate.name] = {}
            for seed, value, checkpoint in zip(confirmed.seeds, confirmed.values, confirmed.checkpoints):
                if math.isnan(value):
                    continue
                folder = _local(checkpoint, run, stack)
                model, state = load_model(str(Path(folder) / CHECKPOINT_FILE))
                cfg = config_from_dict(state["config"], source=f"{folder}: config")
                data = data or discover(data_root or cfg.data_root)
                cache_dir = cache_dir or cfg.cache_dir
                scored = score_test_sets(model, data, cfg.img_size, cfg.batch_size, device)
                scores[confirmed.candidate.name][seed] = {
                    name: (stems, np.column_stack([s.dice, s.iou])) for name, (stems, s) in scored.items()
                }
    if data is None:
        raise ValueError("score_verdict_checkpoints: no configuration has a scored checkpoint")
    clusters = {name: _clusters(pairs, name, cache_dir) for name, pairs in data.test_sets.items()}
    write_per_image(scores, run.paths.sweep_dir / TEST_PER_IMAGE_FILE)
    return TestSetScores(scores, data, clusters)


def over_seeds(scored: TestSetScores, name: str, metric: int) -> dict[str, Any]:
    """One configuration's score per test set and their mean, over its seeds and images, with intervals."""
    seeds = scored.seeds(name)
    if not seeds:
        return {}
    tables = {test_set: scored.table(name, seeds, test_set, metric) for test_set in scored.data.test_sets}
    return _as_record(two_way_bootstrap(tables, scored.clusters, bounds=(0.0, 1.0)), "score")


def teacher_effect(scored: TestSetScores, with_teacher: str, without: str, metric: int) -> dict[str, Any]:
    """Per test set and their mean: with minus without the teacher, paired by seed, over seeds and images."""
    seeds = scored.seeds(with_teacher, without)
    if not seeds:
        return {}
    tables = {
        test_set: scored.table(with_teacher, seeds, test_set, metric) - scored.table(without, seeds, test_set, metric)
        for test_set in scored.data.test_sets
    }
    return _as_record(two_way_bootstrap(tables, scored.clusters, bounds=(-1.0, 1.0)), "delta")


def write_per_image(scores: Scores, path: Path) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "seed", "test_set", "image", "dice", "iou"])
        for name, by_seed in scores.items():
            for seed, by_set in by_seed.items():
                for test_set, (stems, values) in by_set.items():
                    for stem, (dice, iou) in zip(stems, values.tolist()):
                        writer.writerow([name, seed, test_set, stem, f"{dice:.6f}", f"{iou:.6f}"])


def _as_record(results: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        name: {key: r.mean, "ci95": list(r.ci95), "n_images": r.n_images, "n_seeds": r.n_seeds}
        for name, r in results.items()
    }


def _clusters(pairs: list, test_set: str, cache_dir: str | None) -> list[list[int]]:
    column = {p.stem: i for i, p in enumerate(pairs)}
    groups = content_groups(pairs, cache_dir=cache_dir, sources={p.stem: test_set for p in pairs})
    return [[column[stem] for stem in group] for group in groups]


def _local(checkpoint: str, run: SweepRun, stack: ExitStack) -> str:
    if not storage.is_uri(checkpoint) and not run.paths.remote:
        return resolve(checkpoint, run.paths.sweep_dir)
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="polyp-kd-tune-test-"))
    return tune.Checkpoint(checkpoint).to_directory(folder)
