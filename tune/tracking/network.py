"""W&B's network waits, each bounded and announced: a run's start (wandb.init online retries for 90 s), its
end (run.finish waits for every upload, without end by default), the W&B Sweep's registration, and the wait at
the end of each stage for the trial runs' logging processes (Ray's `upload_timeout`, 30 min by default).

`$POLYP_KD_TUNE_WANDB_TIMEOUT_S` (default 60) bounds each: wandb.init gets it as `init_timeout` (wandb adds
its own identity lookup, up to 10 s, before), run.finish as `finish_timeout`. A run that cannot reach W&B
is logged offline instead, in the sweep's wandb/ folder, and an upload that times out stays there too:
`wandb sync` uploads either later. Losing the upload is not losing the sweep: its results are its files.
No Ray here: the sweep's Ray pieces (tune/sweep/ray_compat/wandb_actor.py) and its end use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.environment import positive_number

TIMEOUT_ENV = "POLYP_KD_TUNE_WANDB_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0
# Before init_timeout counts, wandb.init looks up whom the key belongs to, twice when the first fails, 5 s each
# (wandb/sdk/lib/identity.py _RESOLVE_TIMEOUT_SECONDS; measured: init_timeout 5 s fails after 15.5 s).
IDENTITY_LOOKUP_S = 10.0
T = TypeVar("T")


def wandb_timeout_s() -> float:
    """Seconds W&B gets for each network wait: $POLYP_KD_TUNE_WANDB_TIMEOUT_S, default 60."""
    return positive_number(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, "seconds")


def run_settings(timeout_s: float) -> dict[str, float]:
    """wandb.init settings bounding a run's start and end (a dict: Ray pickles it to its logging actors)."""
    return {"init_timeout": timeout_s, "finish_timeout": timeout_s}


def run_wait_s(timeout_s: float) -> float:
    """The longest a run's start and end take together without a network: the identity lookup, init_timeout
    and finish_timeout, and a margin for the processes' own start and end."""
    return IDENTITY_LOOKUP_S + 2 * timeout_s + 10.0


def sync_hint(wandb_dir: Path | str, include_online: bool = False) -> str:
    """The command that uploads a sweep's runs W&B did not get: offline ones, or (`include_online`) those that
    started online and whose upload timed out."""
    return f"`wandb sync{' --include-online' if include_online else ''} {wandb_dir}`"


def init_or_offline(
    init: Callable[..., Any], kwargs: dict[str, Any], say: Callable[[str], None] | None = None
) -> tuple[Any, str | None]:
    """`init(**kwargs)` (wandb.init); online, a failure to reach W&B (no network, a server that refuses the key)
    is one line to `say` and the same run logged offline, in the same folder. Returns the run and the reason
    it went offline (None when it did not)."""
    import wandb

    try:
        return init(**kwargs), None
    except wandb.errors.Error as err:
        if kwargs.get("mode") != "online":
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    # wandb's service still holds the run that timed out ("run ID ... is in use"): a fresh one takes it offline.
    wandb.teardown()
    if say is not None:
        say(reason)
    return init(**{**kwargs, "mode": "offline"}), reason


def call_with_timeout(fn: Callable[[], T], timeout_s: float) -> tuple[bool, T | None]:
    """`fn()` in a daemon thread, waited for at most `timeout_s`: (True, its value) or (False, None) when it
    did not return in time (it is left to end on its own; its result is then ignored). Its exception is
    raised here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, name="wandb-bounded-call", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("value")
