"""Settings read from environment variables ($POLYP_KD_TUNE_...): one rule for each, a positive number with
a default, and a value that is not one is a UserError naming the variable (docs/configuration.md lists them)."""

from __future__ import annotations

import math
import os

from core.errors import UserError


def positive_number(name: str, default: float, unit: str) -> float:
    """$`name` as a number > 0 (of `unit`, for the message), or `default` when it is unset or empty."""
    value = os.environ.get(name, "")
    try:
        number = float(value) if value else default
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise UserError(f"${name}={value!r}: must be a number of {unit} > 0 (default {default:g})")
    return number
