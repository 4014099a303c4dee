"""The leaderboard counts epochs as ASHA does (the trial's `epoch` metric), not Ray's iterations."""
import math
from types import SimpleNamespace

from tune.report import leaderboard
from tune.space import AshaSettings, SearchSpace


def result(trial_id, epoch, iteration, best):
    metrics = {"trial_id": trial_id, "epoch": epoch, "training_iteration": iteration,
               "best_val_dice": best, "best_val_iou": best / 2, "best_epoch": epoch, "val_dice": best}
    return SimpleNamespace(metrics=metrics, error=None, config={"learning_rate": 1e-3}, checkpoint=None,
                           path=f"/trials/{trial_id}")


def test_epochs_and_early_stops_follow_the_epoch_metric():
    space = SearchSpace(name="s", source="s.yaml", base={}, parameters=[], asha=AshaSettings(max_t=8))
    # "b" resumed from a checkpoint newer than Ray's record: 8 epochs trained in 5 reported iterations.
    rows = leaderboard([result("a", 4, 4, 0.5), result("b", 8, 5, 0.6)], space)
    assert [(r["trial_id"], r["epochs"], r["stopped_early"]) for r in rows] == [("b", 8, False), ("a", 4, True)]
    assert not math.isnan(rows[0]["best_val_dice"])
