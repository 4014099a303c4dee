"""A local Ray that listens on loopback only.

Ray 2.60 binds its GCS, raylet, object manager and workers to every interface, and `_node_ip_address=
"127.0.0.1"` cannot change that: ray.init replaces a loopback address by the node's routable one
(_private/worker.py:1844, services.resolve_ip_for_localhost, services.py:786-803). The node's address is
loopback only where services.get_node_ip_address finds ray_constants.ENABLE_RAY_CLUSTER false
(services.py:811-821: Ray's single-machine mode for Windows and macOS, the environment variable
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, ray_constants.py:657-661); with 127.0.0.1 as the node's address every Ray
process then listens on 127.0.0.1 (measured with `ss -ltnp`: tests/test_ray_compat.py). Only for a new local
Ray: it refuses `ray start`, and a cluster's nodes must reach each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While the block runs (ray.init to ray.shutdown), a local Ray started here listens on 127.0.0.1 only.
    The environment variable reaches the processes Ray starts (they read it when they import Ray); this process
    imported Ray already, so its constant is set too. Both are restored after: a later `ray start` or cluster
    in this process is unaffected."""
    from ray._private import ray_constants

    saved_env, saved_constant = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env
