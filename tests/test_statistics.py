"""tune/statistics.py: the two-way bootstrap over seeds and test images."""

import numpy as np
import pytest

from tune.statistics import two_way_bootstrap


def _draw(rng, true_effect, n_seeds=4, n_videos=20, frames=3):
    """Per-image differences of paired runs: a video's frames share its effect, each seed shifts every image
    alike, and every image of every seed has its own noise."""
    video_effect = rng.normal(true_effect, 0.1, n_videos)
    per_image = np.repeat(video_effect, frames) + rng.normal(0, 0.03, n_videos * frames)
    table = per_image[None, :] + rng.normal(0, 0.01, (n_seeds, 1)) + rng.normal(0, 0.02, (n_seeds, len(per_image)))
    clusters = [list(range(v * frames, (v + 1) * frames)) for v in range(n_videos)]
    return table, clusters


def test_interval_covers_the_true_effect_in_nine_of_ten_simulated_sweeps():
    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(200):
        table, clusters = _draw(rng, 0.02)
        result = two_way_bootstrap({"set": table}, {"set": clusters}, replicates=400, seed=draw)["set"]
        covered += result.ci95[0] <= 0.02 <= result.ci95[1]
    assert covered >= 180, covered


def test_the_mean_weighs_each_table_once_and_counts_seeds_and_images():
    a = np.full((3, 10), 0.1)
    b = np.full((3, 2), 0.3)
    out = two_way_bootstrap({"a": a, "b": b}, {"a": [[i] for i in range(10)], "b": [[0, 1]]}, replicates=50)
    assert out["a"].mean == pytest.approx(0.1) and out["a"].ci95 == pytest.approx((0.1, 0.1))
    assert out["mean"].mean == pytest.approx(0.2) and out["mean"].ci95 == pytest.approx((0.2, 0.2))
    assert (out["mean"].n_images, out["mean"].n_seeds, out["b"].n_images) == (12, 3, 2)


def test_intervals_stay_inside_the_bounds_and_tables_must_share_seeds():
    table = np.array([[0.99, 1.0, 0.2], [1.0, 1.0, 0.98]])
    out = two_way_bootstrap({"x": table}, {"x": [[0], [1], [2]]}, replicates=200, bounds=(0.0, 1.0))
    assert 0.0 <= out["x"].ci95[0] <= out["x"].ci95[1] <= 1.0
    with pytest.raises(ValueError, match="same seeds"):
        two_way_bootstrap({"x": table, "y": table[:1]}, {"x": [[0]], "y": [[0]]})
