"""Statistics of repeated runs: a mean with its Student-t interval over seeds, and the effect seeds detect.

Used where seeds are compared (confirmation, the KD-vs-baseline verdict) and where their results are read
back (best.json); no Ray, no Optuna.
"""

from __future__ import annotations

import math
import statistics

from scipy import stats


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
