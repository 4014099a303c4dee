"""Ray's OptunaSearch with the internals a searcher built on it needs, named; and Optuna's private trial id.

Ray 2.60 keeps the Optuna study and the Ray trial -> Optuna trial link in private attributes (`_ot_study`,
`_ot_trials`, `_completed_trials`, `_storage`, `_study_name`, `_sampler`) and pickles them whole as its
saved state (searcher-state-*.pkl). What the sweep does with them is tune/sweep/searcher.py's.
"""

from __future__ import annotations

import pickle
from typing import Any, cast

import optuna
from ray.tune.search.optuna import OptunaSearch


class OptunaSearchInternals(OptunaSearch):
    """OptunaSearch whose study and trial links a subclass reads and changes through these methods, and whose
    restore keeps this searcher's study storage.

    Ray loads the pickled searcher whole, study storage included: that names the journal of the folder the
    sweep first ran in, so a copied or moved sweep went on writing the original's. This searcher was built for
    the folder the sweep is in now: its storage is kept, and the restored study and trials are re-opened on it
    (the sampler's state is the restored one)."""

    @property
    def study(self) -> optuna.Study:
        return cast(optuna.Study, self._ot_study)  # Ray declares it None until the space is set

    def asked(self, trial_id: str) -> optuna.trial.Trial | None:
        """The Optuna trial OptunaSearch asked for Ray trial `trial_id`, told or not; None if none."""
        return self._ot_trials.get(trial_id)

    def open_trial(self, trial_id: str) -> optuna.trial.Trial | None:
        """The Optuna trial of Ray trial `trial_id` while the study has not been told how it ended."""
        if trial_id in self._completed_trials:
            return None
        return self._ot_trials.get(trial_id)

    def completed(self, trial_id: str) -> None:
        """Ray trial `trial_id` was told to the study: later results of it are ignored."""
        self._completed_trials.add(trial_id)

    def forget(self, trial_id: str) -> None:
        """Drop the link to a proposal that never reaches Ray (its Optuna trial is already told)."""
        del self._ot_trials[trial_id]

    def links(self) -> dict[str, optuna.trial.Trial]:
        """{Ray trial id: its Optuna trial}, a copy."""
        return dict(self._ot_trials)

    def link(self, trial_id: str, frozen: optuna.trial.FrozenTrial) -> None:
        """Ray trial `trial_id`'s results go, from now on, to the study's trial `frozen`."""
        self._ot_trials[trial_id] = optuna_trial(self.study, frozen)

    def restore(self, checkpoint_path: str) -> None:
        storage = self._storage
        super().restore(checkpoint_path)
        self._storage = storage
        study = optuna.load_study(
            study_name=self._study_name,
            storage=storage,  # type: ignore[arg-type]
            sampler=self._sampler,
        )  # the sweep's searchers always have a storage
        self._ot_study = study  # type: ignore[assignment]  # Ray declares it None until the space is set
        for trial in self._ot_trials.values():
            trial.study, trial.storage = study, study._storage


def reported_steps(trial: optuna.trial.Trial) -> dict[int, float]:
    """The intermediate values a live Optuna trial holds, without a storage read (Optuna's cached trial)."""
    return trial._cached_frozen_trial.intermediate_values


def optuna_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.trial.Trial:
    """A live Optuna trial (report, tell) for a trial already in `study`: Optuna's public API makes one only
    through ask(); its constructor takes the storage's trial id."""
    return optuna.trial.Trial(study, frozen._trial_id)


def storage_id(trial: optuna.trial.Trial | optuna.trial.FrozenTrial) -> int:
    """The id an Optuna storage knows a trial by (unique across the journal's studies, unlike `number`)."""
    return trial._trial_id


def searcher_trials(searcher_state: bytes) -> dict[str, optuna.trial.Trial]:
    """{Ray trial id: its Optuna trial} from OptunaSearch's saved state (searcher-state-*.pkl): the link
    OptunaSearch itself uses (`_ot_trials`); each trial's params and distributions are as it sampled them.
    Empty when the state does not unpickle: the caller then matches trials by their parameters."""
    try:
        state: dict[str, Any] = pickle.loads(searcher_state)
        return dict(state["_ot_trials"])
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError, TypeError, ValueError):
        return {}
