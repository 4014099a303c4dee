"""tune/front.py: the Dice–latency front on known numbers, and the choice of a student by latency budget."""

import math

import pytest

from core.errors import UserError
from tune.front import best_within, build_front
from tune.objective import Objective
from tune.records import Candidate, Confirmed, Sampled

MAX = Objective("best_val_dice", "max")


def confirmed(name: str, backbone: str, values: list[float], arm: str = "kd", front: bool = True) -> Confirmed:
    sampled = Sampled(arm, {"student_backbone": backbone, "learning_rate": 1e-3})
    return Confirmed(
        Candidate(name, f"t-{name}", sampled, max(values), 8, front),
        [1, 2, 3],
        values,
        values,
        [f"confirm/{name}-{i}/checkpoint" for i in range(3)],
        [f"{name}{i}" for i in range(3)],
    )


def student(ms: float, budget: float | None = 50.0) -> dict:
    return {
        "latency_ms": ms,
        "fp32_ms": ms * 2,
        "int8_ms": ms,
        "measured_at": "here",
        "feasible": budget is None or ms <= budget,
    }


STUDENTS = {
    "resnet34": student(90.0),
    "resnet18": student(45.0),
    "mobilenet_v2": student(20.0),
    "efficientnet-b0": student(30.0),
    "tu-mobilenetv3_small_100": student(10.0),
}
CONFIRMED = [
    confirmed("kd-1", "resnet18", [0.80, 0.82, 0.81]),
    # mobilenet_v2's front configuration is the baseline one (chosen on the search's values): kd-2's better
    # selection mean does not replace it, or the seeds that estimate an entry would also choose it.
    confirmed("kd-2", "mobilenet_v2", [0.78, 0.80, 0.79], front=False),
    confirmed("baseline-1", "mobilenet_v2", [0.76, 0.78, 0.77], arm="baseline"),
    confirmed("kd-3", "efficientnet-b0", [0.74, 0.76, 0.75]),  # slower and worse than mobilenet_v2
    confirmed("kd-4", "tu-mobilenetv3_small_100", [math.nan, math.nan, math.nan]),
]  # every seed failed


def test_front_lists_every_backbone_fastest_first_and_marks_the_pareto_optimal():
    front = build_front(STUDENTS, CONFIRMED, MAX, "mobilenet_v2")
    assert [e["backbone"] for e in front] == [
        "tu-mobilenetv3_small_100",
        "mobilenet_v2",
        "efficientnet-b0",
        "resnet18",
        "resnet34",
    ]
    by = {e["backbone"]: e for e in front}
    # Each backbone's front configuration, estimated on its selection seeds (mobilenet_v2: the baseline one).
    assert by["mobilenet_v2"]["config"] == "baseline-1" and by["mobilenet_v2"]["mean"] == pytest.approx(0.77)
    assert by["mobilenet_v2"]["ci95"][0] < 0.77 < by["mobilenet_v2"]["ci95"][1]
    assert by["resnet18"]["checkpoint"] == "confirm/kd-1-1/checkpoint"  # its best seed
    # Unconfirmed (failed seeds, over budget) are listed with their latency and no score.
    assert by["tu-mobilenetv3_small_100"]["mean"] is None and by["resnet34"]["mean"] is None
    assert by["resnet34"]["feasible"] is False and by["resnet34"]["latency_ms"] == 90.0
    assert {b for b, e in by.items() if e["pareto"]} == {"mobilenet_v2", "resnet18"}


def test_export_budget_picks_the_best_confirmed_student_within_it_and_refuses_one_nothing_meets():
    front = build_front(STUDENTS, CONFIRMED, MAX, "mobilenet_v2")
    assert best_within(front, 50.0, MAX)["backbone"] == "resnet18"
    assert best_within(front, 44.9, MAX)["backbone"] == "mobilenet_v2"
    with pytest.raises(UserError, match=r"fastest is mobilenet_v2 at 20.0 ms"):
        best_within(front, 15.0, MAX)


def test_selection_confirms_the_best_of_every_backbone_even_one_asha_stopped_early():
    from tune.records import TrialRow
    from tune.sweep.select import choose_candidates

    def row(trial_id: str, backbone: str, curve: dict[int, float]) -> TrialRow:
        last = max(curve)
        return TrialRow(
            trial_id=trial_id,
            sampled=Sampled("kd", {"student_backbone": backbone}),
            end="finished" if last == 6 else "stopped by ASHA",
            epochs=last,
            objective=curve[last],
            best_val_dice=curve[last],
            best_val_iou=0.0,
            best_epoch=last,
            last_val_dice=curve[last],
            curve=curve,
        )

    rows = [
        row("a", "resnet18", {2: 0.5, 4: 0.6, 6: 0.7}),
        row("b", "resnet18", {2: 0.4, 4: 0.5}),
        row("c", "mobilenet_v2", {2: 0.45}),
        row("d", "mobilenet_v2", {2: 0.3}),
    ]
    plain = choose_candidates(rows, 1, [2, 4, 6], MAX, arms=("kd",))
    assert [(c.trial_id, c.search_epochs) for c in plain] == [("a", 6)]
    front = choose_candidates(rows, 1, [2, 4, 6], MAX, arms=("kd",), front_of="mobilenet_v2")
    # mobilenet_v2's trials all stopped at the first rung: its best there is confirmed too; resnet18's front
    # configuration is the top-1 candidate already chosen, marked as such.
    assert [(c.name, c.trial_id, c.search_epochs, c.front) for c in front] == [
        ("kd-1", "a", 6, True),
        ("front-mobilenet_v2", "c", 2, True),
    ]


def test_front_configurations_come_from_either_arm_one_per_backbone_on_search_values():
    from tune.records import TrialRow
    from tune.sweep.select import choose_candidates

    def row(trial_id: str, arm: str, backbone: str, value: float) -> TrialRow:
        sampled = Sampled(arm, {"student_backbone": backbone, "learning_rate": 1e-3})
        return TrialRow(trial_id, sampled, "finished", 4, value, value, 0.0, 4, value, curve={4: value})

    rows = [
        row("k1", "kd", "resnet18", 0.80),
        row("k2", "kd", "resnet18", 0.79),
        row("k3", "kd", "mobilenet_v2", 0.60),
        row("b1", "baseline", "resnet18", 0.70),
        row("b2", "baseline", "mobilenet_v2", 0.65),  # mobilenet_v2's best search value: the baseline arm's
    ]
    chosen = choose_candidates(rows, 2, [4], MAX, front_of="mobilenet_v2")
    assert [(c.name, c.trial_id, c.front) for c in chosen] == [
        ("kd-1", "k1", True),
        ("kd-2", "k2", False),
        ("baseline-1", "b1", False),
        ("baseline-2", "b2", True),
    ]
    per_backbone = {}
    for c in chosen:
        if c.front:
            per_backbone[c.params["student_backbone"]] = per_backbone.get(c.params["student_backbone"], 0) + 1
    assert per_backbone == {"resnet18": 1, "mobilenet_v2": 1}
