"""How numbers and durations read in every report of a sweep: console tables, report.html, chart ticks."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int | None = 4) -> str:
    """A value for a table cell or a label: `digits` decimals for ordinary numbers (Dice, α), 3 significant
    digits for very small or large ones (learning rates) or when `digits` is None (axis ticks); "–" for
    missing (None, NaN)."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "–"
    if value == 0:
        return "0" if digits is None else f"{value:.{digits}f}"
    if digits is not None and 1e-2 <= abs(value) < 1e5:
        return f"{value:.{digits}f}"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def params_text(params: dict[str, Any]) -> str:
    """Parameters by config key, as one line: `alpha=0.5390, learning_rate=5.19e-3`."""
    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def estimate_text(estimate: dict[str, Any]) -> str:
    """best.json's `estimate` in words: `0.6476 (95% CI 0.4810 … 0.8141) over 3 fresh seeds [45, 46, 47]`."""
    lo, hi = estimate["ci95"]
    return (
        f"{fmt(estimate['mean'])} (95% CI {fmt(lo)} … {fmt(hi)}) over {estimate['n_valid']} fresh seeds "
        f"{estimate['seeds']}"
    )
