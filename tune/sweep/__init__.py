"""A sweep's stages, in the order they run: prepare → search → select → verdict → finish, driven by
`pipeline.run_sweep`; `runtime` builds the Ray Tune pieces they share, `ray_compat` holds everything that
relies on Ray's internals, undocumented files or timings, `trainable` is the trial function, `study` the
Optuna study and `searcher` what it is told.

Importing this package sets Ray's and W&B's environment defaults first: Ray reads some at import time, and
the processes it starts inherit them.
"""

import os

# Tune warns when a result takes > 0.5 s to process; on a 2-core machine busy with trials that is the normal
# case, not a bottleneck worth a line per epoch.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
os.environ.setdefault("WANDB_SILENT", "true")
# The driver's own handler (tune/sweep/signals.py) sees every Ctrl-C and asks Tune to stop through Tune's
# SIGUSR1 handler; Tune's SIGINT handler would swallow a Ctrl-C that arrives as a run's last trial ends.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
