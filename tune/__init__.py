"""Ray Tune layer of polyp-kd-tune: search-space files, the trial wrapper, the sweep CLI and export.

No training math lives here: every trial runs `core.train.Trainer`.
"""
