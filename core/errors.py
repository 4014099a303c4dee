"""The one exception type for mistakes a user can fix (bad data, bad YAML, missing checkpoint).

Command-line entry points catch it with `cli_errors()` and print its message as one line, exit code 2;
the machine refusing a write (no permission, read-only, disk full, file too large) is reported the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator


class UserError(Exception):
    """A problem with the user's input; the message names the file or key and how to fix it."""


# Write failures a user fixes by choosing another place or freeing space; any other OSError is a bug to report.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit code 2, without a traceback."""
    try:
        yield
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if err.errno not in NOT_WRITABLE + NO_ROOM:
            raise
        fix = (
            "choose a location you can write (--out, --storage)"
            if err.errno in NOT_WRITABLE
            else "free some space, then run the command again (a sweep: with --resume)"
        )
        reason = (err.strerror or os.strerror(err.errno)).lower()
        print(f"error: {err.filename or 'a file'}: {reason}; {fix}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
