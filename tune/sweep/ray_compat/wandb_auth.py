"""W&B's check of an API key's format (wandb.sdk.lib.wbauth.validation.check_api_key, not part of wandb's
public API; read in wandb 0.31.0): the key formats W&B accepts (40+ characters, a host prefix, a JWT) stay its
business. No Ray import: tune/tracking/mode.py asks it before a sweep starts.
"""

from __future__ import annotations


def wandb_key_problem(key: str) -> str | None:
    """What is wrong with an API key's format, as W&B words it ("API key must have 40+ characters, has 9."),
    or None. No network; the text never holds the key."""
    from wandb.sdk.lib.wbauth.validation import check_api_key

    return check_api_key(key)
