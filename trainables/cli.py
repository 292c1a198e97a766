"""What every command shares: a user's mistake as one line with argparse's exit code, and help
that states each default once. The errors of what a user writes (ConfigError, DataError,
TaskError) are trainables'; this module, which imports nothing of the project, is below every
package, so that each command uses it.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2  # argparse's code for a user's mistake


class UsageError(Exception):
    """A mistake the user can fix; main() prints it as one line and exits with code 2."""


class ConfigError(ValueError):
    """A configuration a user wrote that cannot be trained; the message is one line."""


def first_line(err: BaseException) -> str:
    """An exception as one line of a message: the first line of its text, else its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


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
