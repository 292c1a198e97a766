"""What every command shares: one-line errors with argparse's exit code."""

from __future__ import annotations

import sys
from typing import NoReturn

EXIT_USAGE = 2  # argparse's code for a user's mistake


class UsageError(Exception):
    """A mistake the user can fix; main() prints it as one line and exits with code 2."""


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)
