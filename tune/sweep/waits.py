"""The driver's waits on its own Ray tasks (the teacher, the cache warm-up, a CUDA latency measurement): none
without a bound on what may never come, and the common ways they fail worded as one line.

A task may rightly run for hours (a teacher on a large data set), so its running time is not bounded; its
caller prints what runs before the wait. What is bounded is the wait for a node that can take the task at all
(a GPU node an autoscaler may never add, a request larger than any node): after $POLYP_KD_TUNE_NODE_WAIT_S
seconds (default 15 min, a generous time for a cloud node to start) without one, it is a UserError. A task Ray
stopped because its node ran out of memory, or that ran out of (GPU) memory itself, is a UserError naming the
task and what to lower, instead of Ray's traceback. Ctrl-C interrupts every wait here (tune/sweep/signals.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import ray
import torch

from core.environment import positive_number
from core.errors import UserError

NODE_WAIT_ENV = "POLYP_KD_TUNE_NODE_WAIT_S"
DEFAULT_NODE_WAIT_S = 900.0
POLL_S = 2.0  # how often the driver looks again; a task's result is taken the moment it is ready
FETCH_TIMEOUT_S = 60.0  # a ready result is a small value (a path, a placement): fetching it is quick


def node_wait_s() -> float:
    """Seconds to wait for a node that fits a task: $POLYP_KD_TUNE_NODE_WAIT_S, default 900."""
    return positive_number(NODE_WAIT_ENV, DEFAULT_NODE_WAIT_S, "seconds")


def describe_resources(needs: Mapping[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(needs.items()) if v)


def node_fits(needs: Mapping[str, float]) -> bool:
    """Whether a live node of the cluster has (in total) every resource the task asks for."""
    return any(
        node["Alive"] and all(node["Resources"].get(k, 0) >= v for k, v in needs.items() if v) for node in ray.nodes()
    )


def task_result(ref: ray.ObjectRef, what: str, needs: Mapping[str, float], memory_hint: str) -> Any:
    """The result of the task behind `ref` (`what` it is, e.g. "the teacher training task"; `needs` the
    resources it asked for). Waits as long as it runs, at most node_wait_s() while no node fits it;
    `memory_hint` says what to lower when it runs out of memory."""
    limit = node_wait_s()
    last_fit = time.monotonic()
    announced = False
    try:
        while not ray.wait([ref], timeout=POLL_S)[0]:
            if node_fits(needs):
                last_fit = time.monotonic()
                continue
            if not announced:
                print(
                    f"waiting for a node with {describe_resources(needs)} for {what} (none yet; at most {limit:g} s)",
                    flush=True,
                )
                announced = True
            if time.monotonic() - last_fit > limit:
                raise UserError(
                    f"{what}: no node with {describe_resources(needs)} joined in {limit:g} s; add one to the "
                    f"cluster (`ray status` shows what the autoscaler does), ask for less (resources.gpu, "
                    f"resources.cpu, deploy.device), or wait longer with ${NODE_WAIT_ENV}"
                )
        return ray.get(ref, timeout=FETCH_TIMEOUT_S)
    except ray.exceptions.OutOfMemoryError:
        raise UserError(
            f"{what} ran out of memory: Ray stopped it as its node ran low; {memory_hint}, or use nodes with "
            f"more memory"
        ) from None
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, torch.cuda.OutOfMemoryError):
            raise UserError(f"{what} ran out of GPU memory; {memory_hint}, or use a GPU with more memory") from None
        if isinstance(err.cause, MemoryError):
            raise UserError(f"{what} ran out of memory; {memory_hint}, or use nodes with more memory") from None
        raise
