"""What every command shares: one-line errors with argparse's exit code, and help that states each
default once.

It lives in results/ so that results.report can use it without importing tuning/.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2  # argparse's code for a user's mistake


class UsageError(Exception):
    """A mistake the user can fix; main() prints it as one line and exits with code 2."""


def fail(prog: str, message: str) -> NoReturn:
    """Print `prog: error: message` on stderr, as argparse does, and exit with code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to an option's help unless the help already says its default, or the
    default is None or False (an option that is off, or whose default the help explains)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        off = action.default is None or action.default is False  # `is`: 0 is a default to say
        if "default" in help or off or action.default == argparse.SUPPRESS:
            return help
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return help + " (default: %(default)s)"
        return help
