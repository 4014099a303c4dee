"""tune/study.py: the journal-backed study opens in optuna-dashboard; importance reads back from it."""

import json
from wsgiref.util import setup_testing_defaults

import optuna

from tune.sweep.study import journal_storage, param_importance, tpe_sampler


def fill(study, n=12):
    for _i in range(n):
        trial = study.ask()
        alpha = trial.suggest_float("alpha", 0.1, 0.9)
        trial.suggest_float("temperature", 1.0, 10.0)
        trial.report(1.0 - abs(alpha - 0.5), step=1)  # only alpha matters
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_optuna_dashboard_opens_the_journal(tmp_path):
    from optuna_dashboard import wsgi

    study = optuna.create_study(
        study_name="s", storage=journal_storage(tmp_path), direction="maximize", sampler=tpe_sampler(6, seed=0)
    )
    fill(study, 3)
    environ = {"PATH_INFO": "/api/studies", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(wsgi(journal_storage(tmp_path))(environ, lambda s, h, exc=None: status.append(s)))
    assert status[0].startswith("200") and json.loads(body)["study_summaries"][0]["study_name"] == "s"


def test_importance_of_pruned_trials_at_their_first_rung(tmp_path):
    # Seeded: 12 unseeded random trials now and then gave temperature the larger share by chance.
    study = optuna.create_study(
        study_name="s",
        storage=journal_storage(tmp_path),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    fill(study)
    result = param_importance(optuna.load_study(study_name="s", storage=journal_storage(tmp_path)), at_epoch=1)
    assert result["at_epoch"] == 1 and result["trials"] == 12
    assert param_importance(optuna.load_study(study_name="s", storage=journal_storage(tmp_path)), at_epoch=3) is None
    assert result["importance"]["alpha"] > result["importance"]["temperature"]


def test_tpe_start_up_trials_scale_with_the_sweep():
    assert tpe_sampler(6, 0)._n_startup_trials == 2 and tpe_sampler(64, 0)._n_startup_trials == 10
