"""What "best" means in a sweep: the metric a trial is judged by and its direction.

Every reader of "best" goes through `Objective`: ASHA and the Optuna study (metric, mode), the leaderboard's
ranking, the selection of candidates and of the winner, the verdict's sign, the report and the export. A
second objective or a constraint (e.g. latency under a budget) is a change here and in those few callers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from core.errors import UserError
from core.validation import choices, one_of

# The metrics a trial reports that can be optimised, and how people read them.
METRICS = {"best_val_dice": "val Dice", "val_dice": "val Dice", "best_val_iou": "val IoU", "val_iou": "val IoU"}
MODES = ("max", "min")
T = TypeVar("T")


@dataclass(frozen=True)
class Objective:
    """A space file's `objective:` section (read by core/validation.py, which checks the rules on its fields)."""

    metric: Annotated[str, one_of(METRICS)] = "best_val_dice"
    mode: Annotated[str, one_of(MODES)] = "max"

    def __post_init__(self) -> None:
        # The same rules for an Objective made in code (or from best.json), worded as the validator words them.
        if self.metric not in METRICS:
            raise UserError(f"objective.metric: must be {choices(METRICS)}, got {self.metric!r}")
        if self.mode not in MODES:
            raise UserError(f"objective.mode: must be {choices(MODES)}, got {self.mode!r}")

    @property
    def maximize(self) -> bool:
        return self.mode == "max"

    @property
    def worst(self) -> float:
        """The worst value the metric can take (every metric here, Dice or IoU, lies in [0, 1]): what a failed
        or diverged seed counts as when configurations are ranked."""
        return 0.0 if self.maximize else 1.0

    @property
    def label(self) -> str:
        """The metric in words, for sentences and table titles."""
        return METRICS[self.metric]

    @property
    def test_metric(self) -> tuple[int, str]:
        """Which per-image score the test sets report for this objective: (0, "Dice") or (1, "IoU")."""
        return (1, "IoU") if "iou" in self.metric else (0, "Dice")

    @property
    def test_label(self) -> str:
        return self.test_metric[1]

    def value(self, result: Mapping[str, Any]) -> float:
        """The objective's value in a trial result (NaN when it was never reported)."""
        value = result.get(self.metric)
        return math.nan if value is None else float(value)

    def gain(self, difference: float) -> float:
        """A difference (a − b) as an improvement: positive when a is better than b."""
        return difference if self.maximize else -difference

    def ranked(
        self,
        items: Iterable[T],
        value: Callable[[T], float],
        usable: Callable[[T], bool] = lambda _: True,
        tie: Callable[[T], Any] = lambda _: 0,
    ) -> list[T]:
        """Best first; items that are unusable or have no value (NaN) last, in their given order."""

        def key(item: T) -> tuple:
            v = value(item)
            ok = usable(item) and not (v is None or math.isnan(v))
            return (not ok, -self.gain(v) if ok else 0.0, tie(item))

        return sorted(items, key=key)

    def best(self, values: Iterable[float]) -> int:
        """Index of the best of `values` (NaN never wins unless all are NaN)."""
        values = list(values)
        return self.ranked(range(len(values)), lambda i: values[i])[0]

    def to_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "mode": self.mode}
