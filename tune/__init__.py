"""Ray Tune layer of polyp-kd-tune: a sweep's space, its stages, its records and its reports.

    space.py, sampling.py, objective.py   what is searched, how a sample becomes a TrainConfig, what is best
    records.py                            the sweep folder: layout, lock, search.json, best.json, leaderboard
    sweep/                                the stages (prepare → search → select → verdict → finish) on Ray
    report/                               console tables, charts, report.html, W&B's summary run (no Ray)
    cluster/                              shared storage, the cost plan, recovery after a lost driver
    search.py, best.py                    the command lines (`python -m tune.search`, `python -m tune.best`)

No training math lives here: every trial runs `core.train.Trainer`.
"""
