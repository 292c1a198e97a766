"""Kept for tuning/run.py until it imports results.rundir; the writes live there now."""

from results.rundir import write_atomic, write_json, write_text  # noqa: F401
