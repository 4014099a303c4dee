"""Statistics of repeated runs: a mean with its Student-t interval over seeds, the effect seeds detect, and
a two-way bootstrap over seeds and test images.

Used where seeds are compared (confirmation, the KD-vs-baseline verdict, the test sets) and where their
results are read back (best.json); no Ray, no Optuna.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_REPLICATES = 2000


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean and two-sided Student-t interval at `level` over seeds (NaN interval for fewer than two values)."""
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return math.nan, (math.nan, math.nan)
    mean = statistics.fmean(clean)
    if len(clean) < 2:
        return mean, (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, len(clean) - 1) * statistics.stdev(clean) / math.sqrt(len(clean))
    return mean, (mean - half, mean + half)


def mean_ci95(values: list[float]) -> tuple[float, tuple[float, float]]:
    return mean_ci(values, 0.95)


def mde80(sd: float, n: int) -> float:
    """The smallest true mean difference that a two-sided paired t-test at 5% finds with 80% power, for n
    pairs whose differences spread by `sd` (the usual t-based approximation); NaN below two pairs."""
    if n < 2 or sd is None or math.isnan(sd):
        return math.nan
    return (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.80, n - 1)) * sd / math.sqrt(n)


@dataclass(frozen=True)
class Bootstrapped:
    """A mean over seeds and images with its two-way bootstrap interval."""

    mean: float
    ci95: tuple[float, float]
    n_images: int
    n_seeds: int

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"mean": self.mean, "ci95": list(self.ci95), "n_images": self.n_images, "n_seeds": self.n_seeds}


def two_way_bootstrap(
    tables: Mapping[str, np.ndarray],
    clusters: Mapping[str, Sequence[Sequence[int]]],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
    bounds: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, Bootstrapped]:
    """The mean of each table (seeds x images, e.g. per-image Dice differences of paired runs) and of their
    unweighted mean ("mean": each table counts once, as the test sets' mean does), each with a 95 % percentile
    interval from resampling both ways: the seeds (rows; one draw per replicate, shared by every table, since
    a seed is one training run scored on every table) and, per table, its image clusters (`clusters[name]`:
    lists of column indices, e.g. the frames of one video; resampled whole, with replacement). Intervals are
    clipped to `bounds`, the range the values can take."""
    names = list(tables)
    n_seeds = {tables[name].shape[0] for name in names}
    if len(n_seeds) != 1:
        raise ValueError(f"every table needs the same seeds (rows); got {sorted(n_seeds)}")
    (n,) = n_seeds
    rng = np.random.default_rng(seed)
    # Each cluster's per-seed sum and its size: a replicate is then a sum over the drawn rows and clusters.
    sums = {name: np.stack([tables[name][:, c].sum(axis=1) for c in clusters[name]], axis=1) for name in names}
    sizes = {name: np.array([len(c) for c in clusters[name]]) for name in names}
    draws = np.empty((replicates, len(names)))
    for b in range(replicates):
        rows = rng.integers(0, n, n)
        for k, name in enumerate(names):
            picked = rng.integers(0, len(sizes[name]), len(sizes[name]))
            draws[b, k] = sums[name][np.ix_(rows, picked)].sum() / (n * sizes[name][picked].sum())
    means = [float(tables[name].mean()) for name in names]
    out = {}
    for k, name in enumerate([*names, "mean"]):
        column = draws[:, k] if k < len(names) else draws.mean(axis=1)
        low, high = np.clip(np.percentile(column, [2.5, 97.5]), *bounds)
        n_images = tables[name].shape[1] if k < len(names) else sum(t.shape[1] for t in tables.values())
        mean = means[k] if k < len(names) else float(np.mean(means))
        out[name] = Bootstrapped(mean, (float(low), float(high)), int(n_images), n)
    return out
