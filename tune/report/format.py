"""How numbers and durations read in every report of a sweep: console tables, report.html, chart ticks."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    """best.json's `estimate` in words: `0.6476 (95% CI 0.4810 … 0.8141) over 3 fresh seeds [45, 46, 47], on
    the validation set that chose it`. The interval is clipped to [0, 1], the range of Dice and IoU."""
    lo, hi = (None if v is None or math.isnan(v) else min(1.0, max(0.0, v)) for v in estimate["ci95"])
    return (
        f"{fmt(estimate['mean'])} (95% CI {fmt(lo)} … {fmt(hi)}) over {estimate['n_valid']} fresh seeds "
        f"{estimate['seeds']}, on the validation set that chose it"
    )


def averaged_over(val_average: str | None) -> str:
    """What a validation score averages, in words (TrainConfig.val_averaging)."""
    if val_average == "sources":
        return "validation scores average the data's sources, each counting once (val_average: sources)"
    return "validation scores average every validation image alike (val_average: images)"


def interval(ci: Sequence[float]) -> str:
    """A signed interval as the verdict's sentences print it: `-0.012 … +0.034`."""
    return f"{ci[0]:+.3f} … {ci[1]:+.3f}"


def verdict_details(verdict: dict[str, Any], label: str) -> list[str]:
    """The lines under a verdict (best.json's `kd_vs_baseline`): the interaction (factorial design) and the
    comparison with the separately tuned baseline."""
    lines = [averaged_over(verdict["val_average"])] if verdict.get("val_average") else []
    interaction, tuned = verdict.get("interaction"), verdict.get("tuned")
    if interaction is not None and interaction["effect"] is not None and not math.isnan(interaction["effect"]):
        lo, hi = interaction["ci95"]
        depends = lo is not None and not math.isnan(lo) and (lo > 0 or hi < 0)
        lines.append(
            f"interaction: the teacher's effect at {verdict['kd']}'s settings minus at {verdict['baseline']}'s: "
            f"{interaction['effect']:+.3f} (95% CI {interval(interaction['ci95'])})"
            + ("; the teacher's effect depends on the settings" if depends else "")
        )
    if tuned is not None:
        lines.append(
            f"against the separately tuned baseline ({tuned['kd']} minus {tuned['baseline']}): {tuned['diff']:+.3f} "
            f"{label} (95% CI {interval(tuned['ci95'])}) — this includes what each search found; it is not a "
            "test of the teacher"
        )
    return lines
