"""What the sweep relies on in Ray Tune's files, folder names and timings, none of which Ray documents: each
written once here, as a name or a rule, and checked against the installed Ray by tests/test_ray_compat.py.

No Ray import (the standard library only): readers of a finished sweep (tune.records, tune.space, the report,
`--plan`) use these too, and never import Ray.
"""

from __future__ import annotations

import fnmatch
import math
import signal

# --- an experiment folder: what Tuner.restore reads ------------------------------------------------------
# Of each pattern, Ray reads the newest file (`newest_state_file`). Ray writes each in its driver's staging
# folder and copies it into the experiment folder in place (pyarrow's copy_files: truncate, then write); only
# tuner.pkl is written there directly, once, when the Tuner starts.
EXPERIMENT_STATE = "experiment_state-*.json"  # JSON; every other state file is a pickle, *.json ones included
SEARCHER_STATE = "searcher-state-*.pkl"  # the searcher's pickled __dict__
TUNER_FILE = "tuner.pkl"
STATE_FILES = (
    EXPERIMENT_STATE,
    "search_gen_state-*.json",
    SEARCHER_STATE,
    "basic-variant-state-*.json",
    "callback-states-*.pkl",
    TUNER_FILE,
)


def newest_state_file(names: list[str], pattern: str) -> str | None:
    """The file of `pattern` among `names` that Ray reads: the greatest name (names carry the session's time)."""
    matching = fnmatch.filter(names, pattern)
    return max(matching) if matching else None


def is_json_state(name: str) -> bool:
    """Whether a state file is JSON (the experiment state); the others are pickles."""
    return fnmatch.fnmatch(name, EXPERIMENT_STATE)


# --- a trial's folder --------------------------------------------------------------------------------------
RESULT_FILE = "result.json"  # every result the trial reported, one JSON object per line
CHECKPOINT_DIR_PREFIX = "checkpoint_"  # checkpoint_000000, ...: numbered by checkpoint, not by epoch


def is_checkpoint_dir(name: str) -> bool:
    """Whether a folder in a trial's folder is one of the trial's checkpoints (by Ray's naming)."""
    return name.startswith(CHECKPOINT_DIR_PREFIX)


# --- ASHA ----------------------------------------------------------------------------------------------------


def rungs(max_t: int, grace_period: int, reduction_factor: int) -> list[int]:
    """ASHA's milestones, as Ray's private `_Bracket` computes them for its single bracket (max_t may be one):
    the one place this rule is written (the sweep, its report and `--plan` all use it)."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


# --- stopping a run ----------------------------------------------------------------------------------------
# Tune's run loop installs its stop handler ("save the state, end the trials") on this signal, and on SIGINT
# unless TUNE_DISABLE_SIGINT_HANDLER is set (tune/sweep/__init__.py sets it).
TUNE_STOP_SIGNAL = signal.SIGUSR1
# After a stop, Tune waits up to this long for the trial processes it is ending (TuneController._cleanup_trials).
TUNE_STOP_WAIT_S = 5.0


# --- token authentication ------------------------------------------------------------------------------------
# A local ray.init turns token authentication on and, where no token exists, writes one to this file under the
# home folder with the process's umask, readable by everyone as a rule
# (_private.authentication.authentication_token_setup._get_default_token_path and the writer above it);
# RAY_AUTH_TOKEN_PATH names another file.
AUTH_TOKEN_FILE = (".ray", "auth_token")
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


# --- W&B -----------------------------------------------------------------------------------------------------


def wandb_run_id(trial_id: str) -> str:
    """The W&B run id Ray's W&B callback gives a trial's run: the Ray trial id itself."""
    return trial_id


# Ray's tqdm_ray replaces builtins.print with this function once it forwards its processes' output, and leaves
# it there: the console's router looks through it for the module that printed.
TQDM_RAY_PRINT = ("ray.experimental.tqdm_ray", "safe_print")
