"""Ray's W&B callback and its logging actor, hooked: each run's settings come from the sweep (a
tune.tracking.run_settings.TrialRunSettings), logging processes are reused, no API key leaks into Ray's logs,
and an interrupted sweep's runs end without the driver hanging.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ray
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

from tune.tracking.network import init_or_offline, sync_hint

if TYPE_CHECKING:
    from tune.tracking.run_settings import TrialRunSettings

QUIET_WAIT_S = 2.0  # runs that end their upload within this need no line


class _WandbWithStartHook:
    """The wandb module as Ray's logging actor calls it, with `init` also calling `run_started(run)` (Ray's
    actor offers no hook between `wandb.init` and the first `log`)."""

    def __init__(self, run_started: Callable[[Any], None] | None):
        self.run_started = run_started

    def __getattr__(self, name: str):
        import wandb

        return getattr(wandb, name)

    def init(self, *args, **kwargs):
        import wandb

        # Online without W&B (no network): the run is logged offline in the sweep's wandb/ folder, for `wandb
        # sync`, instead of the actor failing and the trial's run being lost; the line goes to ray.log.
        run, _ = init_or_offline(
            functools.partial(wandb.init, *args),
            kwargs,
            lambda reason: print(f"W&B: not reached ({reason}); this run is logged offline"),
        )
        if self.run_started is not None:
            self.run_started(run)
        return run


class ReusableWandbLoggingActor(_WandbLoggingActor):
    """Ray's W&B logging actor that calls `run_started` on its run, and can log another trial's run after its
    last one finished."""

    def __init__(
        self,
        logdir: str,
        queue,
        exclude: list[str],
        to_config: list[str],
        *args,
        run_started: Callable[[Any], None] | None = None,
        **kwargs,
    ):
        super().__init__(logdir, queue, exclude, to_config, *args, **kwargs)
        self._wandb = _WandbWithStartHook(run_started)  # type: ignore[assignment]  # the hook: wandb, wrapped

    def reset(self, logdir: str, queue, exclude: list[str], to_config: list[str], **kwargs) -> None:
        ReusableWandbLoggingActor.__init__(self, logdir, queue, exclude, to_config, **kwargs)


class SweepWandbLoggerCallback(WandbLoggerCallback):
    """Ray's W&B callback, with each run's settings from `settings`, logging processes reused, and no leaked
    API key.

    Ray starts two processes per trial (a logging actor and its queue actor, ~3 s of CPU on this project's
    2-core machine, where they compete with training); here a logging actor whose run finished cleanly logs
    the next trial's run (bench/sweep_overhead.py --wandb). Ray also hands WANDB_API_KEY to its logging actor
    through runtime_env, which Ray writes in plain text to its session logs; the actor runs on this node and
    inherits this process's environment anyway, so the key is hidden from runtime_env while it starts."""

    _logger_actor_cls = ReusableWandbLoggingActor

    def __init__(
        self,
        *args,
        settings: TrialRunSettings,
        max_actors: int = 1,
        idle: list[tuple[Any, Any]] | None = None,
        **kwargs,
    ):
        """`max_actors`: trials that run at once (no more logging processes are started ahead of a result).
        `idle`: a pool of free logging actors shared with the sweep's other stages (they then outlive this
        experiment and end with the driver's Ray); without it, this callback's own, ended with the experiment."""
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.max_actors = max_actors
        self._shared = idle is not None
        self._idle: list[tuple[Any, Any]] = idle if idle is not None else []  # (actor, its queue): run finished
        self._failed: set = set()  # trials that errored: Ray may restart them, never reuse

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the callback into the experiment's state: the shared pool's actor handles belong to
        this driver's Ray and are left out (a restored experiment gets this run's callbacks anyway)."""
        return {**self.__dict__, "_idle": [], "_shared": False}

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        if trial in self._trial_logging_futures:  # a restarted trial goes on logging to its run
            return None
        wandb_init_kwargs = self.settings.init_kwargs(trial.config, wandb_init_kwargs)
        wandb_init_kwargs["reinit"] = "finish_previous"  # Ray's `reinit=True` is deprecated by wandb
        wandb_init_kwargs["run_started"] = self.settings.run_started  # for the actor, not for wandb.init
        self._cleanup_logging_actors()  # collect runs that have finished since: their actors are free
        if self._idle:
            actor, queue = self._idle.pop()
            actor.reset.remote(
                logdir=trial.local_path,
                queue=queue,
                exclude=exclude_results,
                to_config=self.AUTO_CONFIG_KEYS,
                **wandb_init_kwargs,
            )
            self._trial_queues[trial], self._trial_logging_actors[trial] = queue, actor
            future = actor.run.remote()  # an actor runs its calls in order: after reset
            self._trial_logging_futures[trial] = future
            self._logging_future_to_trial[future] = trial
            return None
        key = os.environ.pop("WANDB_API_KEY", None)
        try:
            return super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
        finally:
            if key is not None:
                os.environ["WANDB_API_KEY"] = key

    def on_trial_start(self, iteration, trials, trial, **info):
        """A trial's run starts now where a free logging actor waits, or fewer than `max_actors` exist (its
        process then starts while the trial's does); otherwise with its first result (`log_trial_result`
        starts it), an epoch later, when the run of an ended trial has finished and its actor is free."""
        self._cleanup_logging_actors()
        if self._idle or len(self._trial_logging_actors) < self.max_actors:
            self.log_trial_start(trial)

    def log_trial_end(self, trial, failed: bool = False):
        if trial not in self._trial_queues:
            # A restored trial that ends before it logged anything in this run (a seed that had finished
            # when the driver was killed): Ray's callback would raise KeyError and fail the resume.
            return
        if failed:
            self._failed.add(trial)
        super().log_trial_end(trial, failed=failed)

    def _cleanup_logging_actor(self, trial):
        """Called for a run that finished (or, at the end, timed out): keep a cleanly finished actor."""
        future = self._trial_logging_futures[trial]
        if trial in self._failed or not ray.wait([future], timeout=0)[0]:
            return super()._cleanup_logging_actor(trial)
        queue = self._trial_queues.pop(trial)
        while not queue.empty():  # nothing of an earlier trial may land in the next run
            queue.get_nowait()
        self._idle.append((self._trial_logging_actors.pop(trial), queue))
        del self._trial_logging_futures[trial]
        return None

    def on_experiment_end(self, trials, **info):
        """End every trial's run, then wait a bounded, announced time for them to finish writing.

        Ray signals the end of a run only for trials that ended; the run of a trial still running when the
        sweep is interrupted never got it (seen with `reuse_actors`), and Ray then waited its whole
        `upload_timeout` (30 min) for that run: a Ctrl-C that hung the driver. Signalling every open run
        first makes each finish (and stay syncable) with what it logged. Actors whose run finished go back to
        the shared pool, where there is one: the next stage's runs start without new processes."""
        for trial in list(self._trial_queues):
            self._signal_logging_actor_stop(trial)
        self._wait_for_uploads()
        self._cleanup_logging_actors(timeout=0, kill_on_timeout=True)
        if not self._shared:
            for actor, _ in self._idle:
                ray.kill(actor)
            self._idle.clear()

    def _wait_for_uploads(self) -> None:
        """Wait at most `upload_timeout` for the runs still logging, announced when it lasts: without a network
        each run's start and end take their bounds (tune/tracking/network.py); the runs whose upload did
        not end stay in the sweep's wandb/ folder for `wandb sync`, one line says so, and the stage goes on."""
        futures = list(self._trial_logging_futures.values())
        if not futures:
            return
        wandb_dir = os.path.join(self.kwargs.get("dir") or ".", "wandb")
        _, late = ray.wait(futures, num_returns=len(futures), timeout=QUIET_WAIT_S)
        if not late:
            return
        doing = "uploading" if self.kwargs.get("mode") == "online" else "ending"
        print(
            f"W&B: {doing} {len(late)} runs of this stage (at most {self._upload_timeout} s; what W&B does not "
            f"get stays in {wandb_dir} for `wandb sync`)",
            flush=True,
        )
        _, late = ray.wait(late, num_returns=len(late), timeout=self._upload_timeout)
        if late:
            print(
                f"W&B: {len(late)} runs did not end their upload within {self._upload_timeout} s (is W&B "
                f"reachable?); they stay in {wandb_dir}: upload them later with {sync_hint(wandb_dir, True)}",
                flush=True,
            )
