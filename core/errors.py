"""The one exception type for mistakes a user can fix (bad data, bad YAML, missing checkpoint).

Command-line entry points catch it with `cli_errors()` and print its message as one line, exit code 2.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class UserError(Exception):
    """A problem with the user's input; the message names the file or key and how to fix it."""


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit code 2, without a traceback."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
