"""`Tuner.restore` that writes only where the experiment is now, with this run's callbacks and trial count."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import cast

from ray import tune
from ray.train._internal.storage import get_fs_and_path
from ray.tune.experiment import Experiment
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator


class _RestoredSearch(SearchGenerator):
    """Ray's search generator, restored to where the experiment is now and with this run's trial count.

    Ray restores the generator's pickled experiment, whose storage names the folder the sweep first ran in
    (a copied sweep's new trials were created in the original), and its first trial count (a sweep resumed
    with more trials, `--resume --extend`, never ran them)."""

    def __init__(self, searcher, num_samples: int, storage_path: str):
        super().__init__(searcher)
        self.num_samples = num_samples
        self.storage_path = storage_path  # the folder (or URI) that holds the experiment now

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._total_samples = max(self._total_samples, self.num_samples)
        experiment = cast(Experiment, self._experiment)  # Ray declares it None until set_state
        storage = copy.copy(experiment.spec["storage"])
        storage.storage_filesystem, fs_path = get_fs_and_path(self.storage_path, None)
        storage.storage_fs_path = Path(fs_path).as_posix()
        experiment.spec["storage"] = experiment.storage = storage


def restore_tuner(
    experiment: str, trainable, callbacks: list, tune_config: tune.TuneConfig | None = None
) -> tune.Tuner:
    """`Tuner.restore` that writes only where the experiment is now.

    Ray re-points trial folders and checkpoints of a moved experiment itself, but runs the restored run's
    pickled callbacks and searcher, which keep the absolute paths of the first run (W&B's folder, the
    Optuna journal): a resumed copy of a sweep wrote into the original. They are replaced here by this run's
    `callbacks` and, for a search, by `tune_config`'s searcher with its trial count."""
    tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    internal = tuner._local_tuner
    assert internal is not None, "a Tuner restored in this process, not through Ray Client"
    internal._run_config.callbacks = callbacks
    if tune_config is not None:
        searcher = tune_config.search_alg
        storage_path = internal._run_config.storage_path
        assert isinstance(searcher, Searcher) and storage_path is not None
        if tune_config.max_concurrent_trials:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=tune_config.max_concurrent_trials)
        internal._tune_config.search_alg = _RestoredSearch(searcher, tune_config.num_samples, storage_path)
        internal._tune_config.max_concurrent_trials = None  # the limiter above is that setting
    return tuner
