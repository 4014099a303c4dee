"""Where W&B runs go: online when wandb finds an API key (WANDB_API_KEY, `wandb login`'s netrc, its
settings), offline otherwise; WANDB_MODE in the environment wins. Going online without a key, or with a
WANDB_API_KEY that is not one, is a UserError here, before anything trains (W&B would refuse it at the first
run, after the teacher). A key's format is checked; the key is never printed or written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from core.errors import UserError

MODES = ("auto", "online", "offline", "disabled")
RunMode = Literal["online", "offline", "disabled"]  # what `wandb.init(mode=...)` is given
RUN_MODES: tuple[RunMode, ...] = ("online", "offline", "disabled")


@dataclass(frozen=True)
class WandbTarget:
    """The resolved W&B mode, why it was chosen, and the entity (team or user) runs are logged under."""

    mode: RunMode
    reason: str
    entity: str | None = None

    @property
    def on(self) -> bool:
        return self.mode != "disabled"

    def line(self) -> str:
        return f"W&B: {self.mode} ({self.reason})"


def has_credentials() -> bool:
    """Whether wandb can authenticate without asking: a key in the environment, `wandb login`'s netrc or
    wandb's settings. Nothing is verified against the server (no network is needed to decide)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    import wandb

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # noqa: BLE001 - an unreadable netrc or settings file is "no credentials", not a crash
        return False


def resolve_mode(configured: str, entity: str | None = None) -> WandbTarget:
    """The mode for a space's `wandb.mode` (auto, online, offline, disabled) in this environment; online
    only with a usable key (`check_online`)."""
    entity = os.environ.get("WANDB_ENTITY") or entity
    env = _run_mode(os.environ.get("WANDB_MODE"))
    if env is not None:
        if env == "online":
            check_online("WANDB_MODE=online")
        return WandbTarget(env, "WANDB_MODE is set", entity)
    chosen = _run_mode(configured)
    if chosen in ("offline", "disabled"):
        return WandbTarget(chosen, f"wandb.mode: {configured} in the space", entity)
    found = has_credentials()
    if configured == "online" and not found:
        return WandbTarget(
            "offline", "wandb.mode: online, but no API key: run `wandb login` or set WANDB_API_KEY", entity
        )
    if found:
        check_online(f"wandb.mode: {configured}", found)
        return WandbTarget("online", "an API key was found (WANDB_API_KEY or `wandb login`)", entity)
    return WandbTarget("offline", "no API key found; `wandb login` to log online", entity)


def check_online(why: str, found: bool | None = None) -> None:
    """Online logging needs a key (`found`: has_credentials(), when already asked), and WANDB_API_KEY, which
    wins over `wandb login`'s, in W&B's format; `why` says what asked for online. Only the format is checked:
    no network is needed to start a sweep."""
    if not (has_credentials() if found is None else found):
        raise UserError(
            f"{why}, but no usable W&B API key (WANDB_API_KEY, `wandb login`): run `wandb login` or set "
            f"WANDB_API_KEY, or log offline with WANDB_MODE=offline (`wandb sync` uploads later)"
        )
    # Imported here: readers of a finished sweep import this module and never go online (no W&B internals).
    from tune.sweep.ray_compat.wandb_auth import wandb_key_problem

    key = os.environ.get("WANDB_API_KEY")
    problem = wandb_key_problem(key) if key else None
    if problem:
        raise UserError(
            f"WANDB_API_KEY: not a W&B API key ({problem.rstrip('.')}); set it to your key from "
            f"https://wandb.ai/authorize, or unset it"
        )


def _run_mode(value: str | None) -> RunMode | None:
    return next((mode for mode in RUN_MODES if mode == value), None)


def apply(target: WandbTarget) -> None:
    """Tell wandb (and Ray's callback, which reads the environment) the resolved mode."""
    if target.on:
        os.environ["WANDB_MODE"] = target.mode  # Ray checks for an API key unless the environment says offline
