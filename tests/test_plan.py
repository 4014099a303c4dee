"""tune/cluster/plan.py: ASHA simulated as Ray runs it, packing and cost from cluster.yaml, and the expected
trial-epochs of the demo space's schedule against a real sweep's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import ray
import yaml
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from core.errors import UserError
from tune import search as search_cli
from tune.cluster.plan import (
    ClusterShape,
    WorkerType,
    cluster_shape,
    format_plan,
    make_plan,
    measure_epoch_seconds,
    simulate_asha,
    verdict_configurations,
)
from tune.space import SPACES_DIR, load_space
from tune.sweep.ray_compat.conventions import rungs

ROOT = Path(__file__).resolve().parents[1]


def rays_epochs(values: np.ndarray, max_t: int, grace: int, rf: int) -> int:
    """Trial-epochs when Ray's own ASHA bracket judges the trials one after another (one at a time)."""
    bracket, total = _Bracket(grace, max_t, rf, 0), 0
    for i, trial_values in enumerate(values):
        trial = SimpleNamespace(trial_id=str(i))
        epochs = max_t
        for milestone, value in zip([m for m in rungs(max_t, grace, rf) if m < max_t], trial_values):
            if bracket.on_result(trial, milestone, value) == TrialScheduler.STOP:
                epochs = milestone
                break
        total += epochs
    return total


@pytest.mark.parametrize("max_t, grace, rf", [(12, 4, 2), (40, 5, 3), (8, 1, 2)])
def test_simulation_stops_exactly_the_trials_rays_bracket_stops(max_t, grace, rf):
    rng = np.random.default_rng(1)
    n_rungs = len([m for m in rungs(max_t, grace, rf) if m < max_t])
    for _ in range(20):
        values = rng.normal(size=(10, n_rungs))
        simulated, _ = simulate_asha(10, 1, max_t, grace, rf, values=values)
        assert simulated == rays_epochs(values, max_t, grace, rf)


def test_improving_trials_all_run_the_budget_and_worsening_ones_stop_at_the_first_milestone():
    better = np.arange(6, dtype=float)[:, None].repeat(2, axis=1)
    assert simulate_asha(6, 1, 12, 4, 2, values=better)[0] == 6 * 12
    assert simulate_asha(6, 1, 12, 4, 2, values=better[::-1])[0] == 12 + 5 * 4


def test_wall_time_counts_concurrency_start_up_and_epochs():
    # grace == max_t: nothing is stopped, 6 trials of 5 epochs, 3 at a time -> two waves.
    epochs, seconds = simulate_asha(6, 3, 5, 5, 2, epoch_seconds=10.0, start_seconds=2.0)
    assert epochs == 30 and seconds == pytest.approx(2 * (2.0 + 5 * 10.0))


def test_packing_and_cost_follow_cluster_yaml():
    shape = cluster_shape()
    xlarge = next(w for w in shape.workers if w.instance == "g5.xlarge")
    assert (xlarge.cpu, xlarge.gpu) == (4, 1)
    kd = load_space("kd.yaml")
    assert xlarge.trials_per_node(kd.resources.cpu, kd.resources.gpu) == 2
    plan = make_plan(kd, workers=None, epoch_seconds=60.0, shape=shape)
    row = next(r for r in plan.rows if r["type"] is xlarge)
    # kd.yaml runs 4 trials at once: two g5.xlarge hold them.
    assert row["workers"] == 2 and row["concurrency"] == 4
    hours = row["wall"] / 3600
    assert row["cost"] == pytest.approx(hours * (0.192 + 2 * 1.006) + shape.idle_timeout_minutes / 60 * 2 * 1.006)
    # Selection: top_k 3 of each of 2 arms x 3 seeds, and one front configuration per student backbone (6) x 3
    # seeds; verdict (factorial): the winner, the KD winner with and without its teacher, the tuned baseline
    # without and with it: 5 configurations x 8 fresh seeds; 40 epochs each, at most.
    assert plan.confirm_epochs == (3 * 2 * 3 + 6 * 3 + 5 * 8) * 40
    text = format_plan(plan, shape)
    assert "selection: at most 36 runs (3 configurations of each arm x 3 seeds + 6 front configurations" in text
    assert "verdict (factorial): at most 40 runs (5 configurations x 8 fresh seeds) x 40 epochs = 1600" in text
    kd.confirm.verdict = "ablation"
    assert verdict_configurations(kd) == 4
    kd.confirm.verdict, kd.control = "tuned", None
    assert verdict_configurations(kd) == 1


def test_a_trial_that_fits_no_worker_type_is_an_error():
    tiny = ClusterShape("m5.xlarge", [WorkerType("small", "g5.xlarge", 4, 1, 2)], 10)
    space = load_space("teacher.yaml")
    space.resources.cpu = 8  # more than the only worker type has
    with pytest.raises(UserError, match="fits no worker type"):
        make_plan(space, None, 10.0, shape=tiny)


def test_plan_cli_prints_epochs_wall_time_and_cost_without_starting_ray(capsys):
    search_cli.main(["--space", "kd.yaml", "--plan", "--epoch-seconds", "45", "--workers", "3"])
    out = capsys.readouterr().out
    assert not ray.is_initialized()
    assert "expected" in out and "trial-epochs" in out and "= 1440 trial-epochs" in out and "= 1600 trial-epochs" in out
    for worker in cluster_shape().workers:
        line = next(line for line in out.splitlines() if line.strip().startswith(worker.name))
        assert worker.instance in line and "$" in line
    assert "45.0 s per trial epoch" in out


def test_workers_without_plan_is_an_error():
    with pytest.raises(SystemExit) as exit_info:
        search_cli.main(["--space", "demo.yaml", "--workers", "2"])
    assert exit_info.value.code == 2


def test_one_epoch_is_measured_the_way_plan_does(demo_root, tmp_path):
    """What --plan prices a trial-epoch at, timed here on the demo space's settings (no Ray). The trial-epochs
    it expects are checked against a real sweep's in tests/test_demo_golden.py."""
    demo = yaml.safe_load((SPACES_DIR / "demo.yaml").read_text())
    demo["base"].update(data_root=str(demo_root), cache_dir=str(tmp_path / "cache"))
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    seconds, source = measure_epoch_seconds(load_space(tmp_path / "demo.yaml"))
    assert seconds > 0 and "measured on this machine" in source
