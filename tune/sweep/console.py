"""The sweep's console: the project's own lines and one line per trial start and end (a Ray Tune callback);
everything Ray prints (its trial tables, its log records, what its processes print) goes to <sweep>/ray.log,
named once when Ray starts, and with --verbose to the console as well.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import posixpath
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from tune.sampling import Sampled, run_candidate
from tune.sweep.ray_compat.conventions import TQDM_RAY_PRINT

if TYPE_CHECKING:
    from ray.tune.experiment import Trial
    from ray.tune.stopper import Stopper

# Code whose writes go to ray.log: Ray's own (its tables, the output it forwards from its processes), and log
# records and warnings (Ray's log records; warnings are a library's, e.g. Ray's, not a user's to act on).
LOG_WRITERS = ("ray", "logging", "warnings")
SHORT_NAMES = {"learning_rate": "lr", "temperature": "T", "weight_decay": "wd"}
# Read by Tune when a Tuner starts: no automatic result loggers. Its JSON and CSV ones (what the sweep reads
# back) are passed explicitly (`stage_callbacks`); the third, TensorBoard's, wrote event files nothing reads
# and printed a `tensorboard --logdir` hint into Ray's temporary session folder at every stage.
QUIET_SWITCHES = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}


class TrialProgress(tune.Callback):
    """One console line when a trial starts and one when it ends (how, at which epoch, its objective value),
    for one stage's Tuner. `stage` names it (search kd, selection, ...); `max_t`, the search's ASHA budget,
    tells a trial ASHA stopped from a finished one (selection and verdict runs, without it, are "runs")."""

    def __init__(self, stage: str, metric: str, max_t: int | None = None) -> None:
        self.stage, self.metric, self.max_t = stage, metric, max_t
        self.total = 0

    def setup(
        self,
        stop: Stopper | None = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self.total = total_num_samples or 0

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        again = f" (attempt {trial.num_failures + 1})" if trial.num_failures else ""
        self.say(trials, trial, f"started{again}  {describe(trial.config)}")

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.say(trials, trial, self.ending(trial.last_result or {}))

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.say(trials, trial, f"failed, retried from its last checkpoint: {error_summary(trial)}")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.say(trials, trial, f"errored: {error_summary(trial)}")

    def ending(self, result: dict[str, Any]) -> str:
        epoch = int(result.get("epoch", 0) or 0)
        value = result.get(self.metric)
        score = f"  {self.metric} {value:.4f}" if isinstance(value, (int, float)) else ""
        if result.get("diverged"):
            return f"diverged at epoch {epoch}: {result.get('error', 'loss not finite')}"
        if self.max_t is not None and epoch < self.max_t:
            return f"stopped by ASHA at epoch {epoch}{score}"
        return f"finished at epoch {epoch}{score}"

    def say(self, trials: list[Trial], trial: Trial, what: str) -> None:
        number = next((i for i, t in enumerate(trials, 1) if t is trial), len(trials))
        noun = "trial" if self.max_t is not None else "run"
        print(f"{self.stage}  {noun} {number}/{max(self.total, len(trials))}  {trial.trial_id}  {what}", flush=True)


def stage_callbacks(stage: str, metric: str, max_t: int | None = None) -> list:
    """The callbacks every stage's Tuner (new or restored) runs with, besides W&B's: its progress lines, and
    the result files Ray writes in each trial's folder (result.json, progress.csv)."""
    return [TrialProgress(stage, metric, max_t), JsonLoggerCallback(), CSVLoggerCallback()]


def describe(config: dict[str, Any]) -> str:
    """A trial's Ray config in a few words: a search trial's sample (alpha=0.41 lr=1.2e-3 T=3.2 mobilenet_v2),
    a selection or verdict run's configuration and seed (kd-1 seed 43)."""
    run = run_candidate(config)
    if run is not None:
        return f"{run[0]} seed {run[1]}"
    params = Sampled.from_ray(config).params
    words = [f"{SHORT_NAMES.get(k, k)}={number(v)}" for k, v in params.items() if k != "student_backbone"]
    return " ".join(words + ([str(params["student_backbone"])] if "student_backbone" in params else []))


def number(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    if value != 0 and abs(value) < 0.01:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.2g}"


def error_summary(trial: Trial) -> str:
    """A failed trial's exception (the last line of Ray's error file: Ray wraps the trial's exception) and
    where its whole traceback is kept: the trial's folder in the sweep."""
    local: str | None = getattr(trial, "error_file", None)  # Ray's staging copy, written before callbacks are told
    last = ""
    if local:
        with contextlib.suppress(OSError):
            lines = Path(local).read_text(errors="replace").strip().splitlines()
            last = lines[-1] if lines else ""
    where = posixpath.join(trial.path, posixpath.basename(local)) if local and trial.path else trial.path
    return f"{last or 'Ray recorded no message'}; see {where}"


def _print_wrappers() -> set[object]:
    """The code of Python functions standing in for the builtin print: today's builtins.print, and Ray's own
    replacement even when another wrapper now calls it (it stays in place after a first Ray run)."""
    module_name, function_name = TQDM_RAY_PRINT
    ray_print = getattr(sys.modules.get(module_name), function_name, None)
    return {getattr(f, "__code__", None) for f in (builtins.print, ray_print)} - {None}


class RoutedStream(io.TextIOBase):
    """sys.stdout or sys.stderr while Ray runs: what Ray writes (its tables and log records, the output it
    forwards from its processes) and warnings go to `log`, with `echo` to `console` as well; anything else
    (the sweep's own lines) to `console`."""

    def __init__(self, console: TextIO, log: TextIO, echo: bool):
        self.console, self.log, self.echo = console, log, echo

    def write(self, text: str) -> int:
        # The writer is the module of the frame that called print (the builtin is no Python frame; a Python
        # function that replaced it is skipped: Ray's tqdm_ray does, once it prints its processes' output).
        # Ray prints its tables and its processes' output from ray.* modules, its log records through logging.
        frame, wrappers = sys._getframe(1), _print_wrappers()
        while frame.f_back is not None and frame.f_code in wrappers:
            frame = frame.f_back
        if frame.f_globals.get("__name__", "").partition(".")[0] not in LOG_WRITERS:
            return self.console.write(text)
        if not self.log.closed:
            self.log.write(text)
        if self.echo:
            self.console.write(text)
        return len(text)

    # flush, isatty and fileno are asked after the sweep too, by whoever kept this stream (colorama's exit hook,
    # imported by Ray meanwhile; a logging handler made while Ray ran), when its console may be closed (the
    # stderr copy below, or pytest's capture at interpreter exit): a closed console is no terminal and has no
    # descriptor, never a ValueError from inside someone's exit hook.
    def flush(self) -> None:
        if _is_open(self.console):
            self.console.flush()
        if _is_open(self.log):
            self.log.flush()

    def isatty(self) -> bool:
        try:
            return _is_open(self.console) and self.console.isatty()
        except ValueError:  # closed meanwhile (another thread)
            return False

    def fileno(self) -> int:
        if not _is_open(self.console):  # what a stream without a descriptor raises (an OSError and a ValueError)
            raise io.UnsupportedOperation("fileno: the console stream is closed")
        return self.console.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]  # typeshed: a writable attribute; at runtime read-only
        return getattr(self.console, "encoding", None) or "utf-8"


def _is_open(stream: TextIO) -> bool:
    try:
        return not stream.closed
    except ValueError:  # a text stream whose buffer was detached
        return False


@contextlib.contextmanager
def ray_output(log_path: Path, verbose: bool) -> Iterator[None]:
    """From Ray's start to its shutdown (the block): Ray's output goes to `log_path` (appended: a resumed
    sweep adds to it), with `verbose` to the console as well; the switches that quiet Ray at its source set."""
    with open(log_path, "a", encoding="utf-8", buffering=1) as log, _environment(QUIET_SWITCHES):
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        print(f"Ray's output (its trial tables and logs){' also' if verbose else ''} goes to {log_path}", flush=True)
        saved = sys.stdout, sys.stderr
        with _stderr_descriptor_to(log) as console_err:
            sys.stdout = RoutedStream(saved[0], log, verbose)
            sys.stderr = RoutedStream(console_err, log, verbose)
            try:
                yield
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:  # the console's streams are back even when a flush fails (a closed pipe)
                    sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _stderr_descriptor_to(log: TextIO) -> Iterator[TextIO]:
    """File descriptor 2 into `log`; yields a stream to the console's stderr. Ray's C++ core inside this
    process writes its error lines to descriptor 2 directly: one for each W&B logging actor Ray's callback
    starts (an actor handle among the arguments of an actor Ray may restart: ray-project/ray#53727), which
    no setting turns off and no user can act on."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to divert
        yield sys.stderr
        return
    console = sys.stderr
    with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
        if sys.stderr.fileno() == 2:  # it writes to descriptor 2 itself: the console is now the copy
            console = open(  # noqa: SIM115 - closed in the finally below, once descriptor 2 is back
                saved, "w", encoding=sys.stderr.encoding, errors="backslashreplace", buffering=1, closefd=False
            )
    os.dup2(log.fileno(), 2)
    try:
        yield console
    finally:
        console.flush()
        os.dup2(saved, 2)
        if console is not sys.stderr:
            console.close()
        os.close(saved)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
