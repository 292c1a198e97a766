"""--warm-start RUN_DIR: an earlier run's trials of the same space, to start TPE's proposals from
(Optuna's add_trials, in the sampler's study of each lane: tuning.proposals), where a new run
would start from random trials. They take no part in the race or the reports of the new run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from results.study import journal
from trainables.cli import UsageError
from trainables.rundir import RUN_FILE, STUDY_FILE


def _record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise UsageError(f"--warm-start {run_dir}: not a run directory (no readable "
                         f"{RUN_FILE})") from None
    if not isinstance(record, dict):
        raise UsageError(f"--warm-start {run_dir}: {RUN_FILE} is not a run's record")
    return record


def check_warm_start(run_dir: str, space_ref: str, metric: str, mode: str) -> None:
    """A one-line UsageError where RUN_DIR is no run, a run of another space, or one scored by
    another metric: its trials would mislead TPE."""
    record = _record(Path(run_dir))
    theirs = record.get("space_ref")
    if theirs != space_ref:
        raise UsageError(f"--warm-start {run_dir} is a run of space {theirs!r}, not {space_ref!r}; "
                         "warm-start from a run of the same space")
    if (record.get("metric"), record.get("mode")) != (metric, mode):
        raise UsageError(f"--warm-start {run_dir} was scored by {record.get('metric')} "
                         f"({record.get('mode')}), this run by {metric} ({mode})")
    if not (Path(run_dir) / STUDY_FILE).is_file():
        raise UsageError(f"--warm-start {run_dir} has no {STUDY_FILE} to start from")


def warm_trials(run_dir: str | None) -> list[FrozenTrial]:
    """The trials of RUN_DIR's study that ended with a score (none without RUN_DIR)."""
    if run_dir is None:
        return []
    record = _record(Path(run_dir))
    study = optuna.load_study(study_name=record["study_name"], storage=journal(Path(run_dir)))
    return [t for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.intermediate_values or t.value is not None]
