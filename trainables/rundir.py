"""The run directory: the names of the files in it, and writes that never leave half a file.

Shared by tuning/ (which writes a run), results/ (which reads and reports on it) and the trainable
(which writes a trial's checkpoints); it imports nothing of the project.

    RUN_DIR/
        run.json             RUN_FILE: the run's settings and status (tuning.record)
        sources/             SOURCES_DIR: copies of the task's (task.py) and the space's (space.py)
                             files as the run started, which a resume compares the files with
        optuna.journal       STUDY_FILE: the Optuna study (tuning.searcher)
        trial_<id>/          TRIAL_DIR_PREFIX and Ray's trial id: params.json, result.json, ...
        confirm/             CONFIRM_DIR: the confirmation runs, Ray trials of their own
                             (with the trials in a bucket, tuning.storage: their copied results)
        leaderboard.csv, history.csv, confirmation.csv, summary.md, report.html, figures/
        best_config.json     BEST_CONFIG_FILE: for python -m tuning.train --config
        final/               FINAL_DIR: the final training (final_metrics.json, model.pt, ...)
        mlflow.json          where the run logs to MLflow, with --mlflow (tuning.tracking)
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
SOURCES_DIR = "sources"
STUDY_FILE = "optuna.journal"
CONFIRM_DIR = "confirm"
LEADERBOARD_FILE = "leaderboard.csv"
HISTORY_FILE = "history.csv"
CONFIRMATION_FILE = "confirmation.csv"
BEST_CONFIG_FILE = "best_config.json"
SUMMARY_FILE = "summary.md"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
FINAL_DIR = "final"
FINAL_METRICS_FILE = "final_metrics.json"  # in FINAL_DIR, and in any tuning.train --output
TRIAL_DIR_PREFIX = "trial_"  # a trial's directory is named by it and Ray's trial id


class Status(str, enum.Enum):
    """How far a run got (run.json's "status"): written by tuning.record, read by the reports."""

    RUNNING = "running"  # its phases are under way, or it was killed before it could say
    FINISHED = "finished"  # every phase done
    INTERRUPTED = "interrupted"  # Ctrl-C, or its Ray lost: --resume goes on
    TIME_BUDGET = "stopped_at_time_budget"  # --time-budget ran out: --resume goes on


class Phase(str, enum.Enum):
    """Which phase a run is in or ended in (run.json's "phase")."""

    SEARCH = "search"
    CONFIRM = "confirm"


def read_answer(run_dir: Path) -> str | None:
    """The answer a run's summary.md opens with (its first paragraph); None before it is
    written."""
    path = Path(run_dir) / SUMMARY_FILE
    return path.read_text().strip().split("\n\n")[0] if path.is_file() else None


def read_json(path: Path | str) -> Any:
    """A JSON file of the run directory (run.json, ...), as written by write_json."""
    return json.loads(Path(path).read_text())


def write_atomic(path: Path | str, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp_path) on a temporary file in the target's directory, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the rest of the team
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path | str, text: str) -> Path:
    """Write text atomically; return the path."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path | str, data: Any) -> Path:
    """Write data as indented JSON atomically; return the path."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")
