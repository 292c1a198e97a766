"""The run's Optuna study, read in one place: the attributes the search writes on it
(tuning.searcher) and what they say of each Ray trial.

A Ray trial is one study trial, or more where --resume retried an errored one (the retry is a new
study trial with the same Ray id, RETRY_OF the one it retries): its last study trial tells.
A study trial handed out that Ray never ran (its run was killed first) ends FAIL as LOST and is
left out of everything here.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from trainables.cli import first_line
from trainables.rundir import STUDY_FILE

# a study trial's user attributes: the Ray trial it is, why it ended, the study trial it retries,
# the space's starting config it tries (its index in STARTS); trainables.config.BASELINE marks
# the baseline
RAY_TRIAL_ID, REASON, RETRY_OF, START = "ray_trial_id", "reason", "retry_of", "start"
# why a study trial ended (REASON): it ran its planned epochs; a rung stopped it; its loss was
# not finite; it raised; it ended before its planned epochs otherwise (a --max-epochs below
# them); it was handed out and never run; it was running (or waiting to) when the search settled
COMPLETED, STOPPED, DIVERGED, ERRORED, STOPPED_EARLY, LOST, SETTLED_STOP = (
    "completed", "stopped_by_asha", "diverged", "errored", "stopped_early", "lost_in_crash",
    "stopped_settled")
# the study's user attributes: the lanes the race dropped, when the search settled, the trials
# of the run it started warm from, the space's starting configs tried
DROPPED, SETTLED, WARM_START, STARTED = "dropped", "settled", "warm_start", "starts"


def journal(run_dir: Path) -> Any:
    """The study's journal file in the run directory, which optuna-dashboard opens as it is."""
    import optuna

    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(Path(run_dir) / STUDY_FILE)))


def by_ray_trial(study: Any) -> dict[str, Any]:
    """Each Ray trial's last study trial (FrozenTrial), by Ray trial id; the lost ones, and one
    enqueued that a kill left waiting (never handed out), left out; {} without a study."""
    last = {}
    for trial in study.get_trials(deepcopy=False) if study is not None else ():
        if RAY_TRIAL_ID in trial.user_attrs and trial.user_attrs.get(REASON) != LOST \
                and trial.state.name != "WAITING":
            last[trial.user_attrs[RAY_TRIAL_ID]] = trial
    return last


def params_of(study: Any) -> dict[str, dict[str, Any]]:
    """The hyperparameters the study suggested for each Ray trial: what a trial that failed
    before it started (Tune wrote no params.json for it) is reported with."""
    return {ray_id: dict(t.params) for ray_id, t in by_ray_trial(study).items()}


def epochs_of(study: Any) -> dict[str, dict[int, float]]:
    """The score of each epoch the study heard, for each Ray trial."""
    return {ray_id: dict(t.intermediate_values) for ray_id, t in by_ray_trial(study).items()}


def reasons_of(study: Any) -> dict[str, str]:
    """Why each Ray trial ended (REASON), for the trials the study holds as ended."""
    from optuna.trial import TrialState

    return {ray_id: t.user_attrs.get(REASON) for ray_id, t in by_ray_trial(study).items()
            if t.state != TrialState.RUNNING}


def load_copy(run_dir: Path, run: dict[str, Any]) -> tuple[Any, str]:
    """The run's study, its ended trials and attributes copied into memory, or (None, a note
    saying why there is none). The journal is read from a copy of its file: RUN_DIR may be
    read-only or still written by a running search."""
    path = run_dir / str(run.get("study_file") or STUDY_FILE)
    if not path.is_file():
        return None, f"no Optuna study ({path.name} is missing)"
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="report-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copy = Path(tmp) / path.name
            shutil.copyfile(path, copy)
            source = optuna.load_study(study_name=run.get("study_name"),
                                       storage=JournalStorage(JournalFileBackend(str(copy))))
            study = optuna.create_study(study_name=source.study_name,
                                        directions=source.directions)
            done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            study.add_trials(source.get_trials(deepcopy=False, states=done))
            for key, value in source.user_attrs.items():
                study.set_user_attr(key, value)
    except Exception as err:  # a broken or foreign journal costs the study figures, not the report
        return None, f"cannot load the Optuna study from {path.name}: {first_line(err)}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study, ""
