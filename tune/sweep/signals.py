"""How the sweep driver stops on Ctrl-C (SIGINT) or SIGTERM, at any stage, within seconds.

Outside a Ray Tune run (data check, teacher, cache warm-up, between stages, finish) a signal interrupts at
once, a blocking `ray.get` included: the handler raises KeyboardInterrupt itself (re-sending SIGINT to the
own process from a SIGTERM handler was lost during the teacher's `ray.get`). Inside a run, Tune is asked to
stop its trials and save a resumable state, within GRACE_S seconds. Either way the signal is remembered, so
one that arrives just as the last trial ends still stops the sweep; the driver exits 130 (SIGINT) or 143
(SIGTERM), no winner.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from tune.sweep.ray_compat.conventions import TUNE_STOP_SIGNAL

GRACE_S = 4.0  # how long Tune may take to stop gracefully after a signal
# What signal.getsignal returns and signal.signal takes (typeshed's own alias, signal._HANDLER, is private).
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopSignals:
    """The driver's SIGINT/SIGTERM handling: `install()` once in the main thread (again after `ray.init`,
    which installs a SIGTERM handler of its own); wrap every `Tuner.fit()` in `during_fit()`."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._in_fit = False
        self._usr1_before: Handler = None  # TUNE_STOP_SIGNAL's handler before the current run: not Tune's
        self._original: dict[int, Handler] = {}
        self._deadline: threading.Timer | None = None  # cuts Tune's graceful stop short

    @property
    def exit_code(self) -> int:
        return 143 if self.received == signal.SIGTERM else 130

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers there only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._original.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, self._handle)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Installed for the block; the handlers before it are back afterwards (a caller such as a test
        process keeps its own)."""
        self.install()
        try:
            yield self
        finally:
            for sig, handler in self._original.items():
                signal.signal(sig, handler)
            self._original.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = self.received or signum
        # Tune's own stop handler: it registers one for TUNE_STOP_SIGNAL (SIGUSR1) when its run loop starts (its
        # SIGINT one is switched off in tune/sweep/__init__.py, so this handler stays in place and sees every signal).
        tune_stop = signal.getsignal(TUNE_STOP_SIGNAL)
        if first and self._in_fit and callable(tune_stop) and tune_stop is not self._usr1_before:
            tune_stop(signum, frame)
            # Tune saves its state first, then waits up to 5 s (conventions.TUNE_STOP_WAIT_S) for trial
            # processes still starting to stop (measured: up to 9.5 s from signal to exit on 2 idle cores); past
            # GRACE_S it is cut short like a second Ctrl-C, and ray.shutdown ends those processes.
            self._deadline = threading.Timer(
                GRACE_S, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)
            )
            self._deadline.daemon = True
            self._deadline.start()
            return
        raise KeyboardInterrupt  # a second signal, or outside Tune's loop: stop now

    @contextlib.contextmanager
    def during_fit(self) -> Iterator[None]:
        """Around `Tuner.fit()`: a signal stops Tune gracefully; afterwards a signal received at any moment
        of the run (even as its last trial ended) raises KeyboardInterrupt."""
        main = threading.current_thread() is threading.main_thread()
        self._usr1_before = signal.getsignal(TUNE_STOP_SIGNAL)
        self._in_fit = True
        try:
            yield
        finally:
            self._in_fit = False
            if self._deadline is not None:
                self._deadline.cancel()
            if main:  # Tune leaves its handler in place: a later signal must never reach a finished run
                signal.signal(TUNE_STOP_SIGNAL, self._usr1_before)
        self.check()

    def check(self) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
