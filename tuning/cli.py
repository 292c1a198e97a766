"""Kept for tuning/run.py until it imports results.cli, where the shared command helpers live."""

from results.cli import EXIT_USAGE, UsageError, fail  # noqa: F401
