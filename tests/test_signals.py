"""The driver's signal handling (tune/sweep/signals.py): a signal is never lost, whether it arrives outside a
Tune run (a blocking ray.get included), during one, or just as a run's last trial ends."""

import os
import signal
import threading
import time

import pytest
import ray

from tune.sweep.signals import GRACE_S, StopSignals


def test_sigterm_outside_a_run_interrupts_at_once_and_exits_143():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals().installed() as signals, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises in this thread
    assert signals.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handlers are back


def test_a_signal_during_a_run_asks_tune_to_stop_and_is_honoured_after_the_run_returns():
    asked = []
    # A fresh driver's SIGUSR1 (an earlier in-process Tune run of the suite leaves its handler installed).
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    with StopSignals().installed() as signals:
        with pytest.raises(KeyboardInterrupt), signals.during_fit():
            # What Tune's run loop does when it starts: its stop handler on SIGUSR1.
            signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            # The run's last trial ended at this moment: Tune returns normally, as if nothing happened.
        assert asked == [signal.SIGINT]
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # a finished run's handler is never called
    assert signals.exit_code == 130
    signal.signal(signal.SIGUSR1, previous)


def test_a_run_slow_to_stop_is_cut_short_after_the_grace_period():
    """Tune waits up to 5 s for trial processes that are still starting; the driver does not wait past
    GRACE_S, as if a second Ctrl-C had come."""
    with StopSignals().installed() as signals:
        started = time.time()
        with pytest.raises(KeyboardInterrupt), signals.during_fit():
            signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # Tune's stop: takes its time
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # Tune's cleanup, still waiting
        assert GRACE_S <= time.time() - started < GRACE_S + 2
    assert signals.exit_code == 143  # the cut does not turn SIGTERM into a Ctrl-C


def test_a_second_signal_during_a_run_stops_at_once():
    with StopSignals().installed() as signals, pytest.raises(KeyboardInterrupt), signals.during_fit():
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached
    assert signals.exit_code == 143


@ray.remote(num_cpus=1)
def _long_task() -> None:
    time.sleep(120)


@pytest.mark.slow
def test_sigterm_interrupts_a_blocking_ray_get_within_seconds():
    """The teacher stage waits in ray.get on a task that trains for minutes: a SIGTERM there was ignored."""
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        with StopSignals().installed() as signals:
            signals.install()  # after ray.init, as the driver does: Ray installs a SIGTERM handler of its own
            ref = _long_task.remote()
            threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
            started = time.time()
            with pytest.raises(KeyboardInterrupt):
                ray.get(ref)
            assert time.time() - started < 10
        assert signals.exit_code == 143
    finally:
        ray.shutdown()
