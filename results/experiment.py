"""Read an experiment directory (RUN_DIR) from disk into DataFrames: no Ray session needed.

RUN_DIR holds run.json (ours), optionally the Optuna journal named by run.json["study_file"], and
one Ray trial directory per trial: any subdirectory with a params.json, beside result.json (one
JSON line per reported epoch) and error.txt when the trial errored; a trial directory with only
an error.txt (it failed before it started) is read with the params the study suggested.

The study is written as each epoch is heard; Ray copies result.json to RUN_DIR at its next
snapshot. Where a run was killed between the two, an ended trial's last epochs are in the study
only: they are read from it (the score alone, the other metrics NaN), so that the leaderboard
ranks the trial on the epochs the search acted on.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from results.metric import Score
from results.rundir import RUN_FILE, STUDY_FILE, TRIAL_DIR_PREFIX
from trainables.config import BASELINE, KEYS

STATUSES = ("completed", "stopped_by_asha", "diverged", "errored", "unfinished")
METRICS = ("val_loss", "train_loss", "lr", "seconds", "diverged")  # beside the run's score
# what Ray adds to every result line; anything else a trainable reports is a metric of ours
RAY_KEYS = frozenset({
    "trial_id", "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore",
    "iterations_since_restore", "timesteps_total", "timesteps_since_restore", "episodes_total",
    "done", "timestamp", "date", "pid", "hostname", "node_ip", "config", "experiment_tag",
    "checkpoint_dir_name", "should_checkpoint", "experiment_id", "warmup_time",
})
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(?:_|$)")  # in Ray's <trainable>_<id>_<n>_... names


class ReportError(ValueError):
    """RUN_DIR cannot be reported on; the message is one line saying why."""


@dataclass
class Experiment:
    run_dir: Path
    run: dict[str, Any]  # run.json, or {} when it is missing
    trials: pd.DataFrame  # one row per trial: trial_id, trial_dir, status, error, then params
    history: pd.DataFrame  # one row per trial per reported epoch: trial_id, epoch, METRICS, ...
    params: dict[str, dict[str, Any]]  # each trial's params.json as written, by trial_id
    hyperparameters: list[str]  # the params columns of `trials`, TrainConfig keys first
    skipped: list[str]  # trial directories left out, each with why
    study: Any = None  # the run's Optuna study, in memory (finished trials), or None
    study_note: str = ""  # why there is no study
    search: dict[str, Any] = field(default_factory=dict)  # the study's record of the race
    # (tuning.search: the values dropped, when the search settled, the trials it started from)

    @property
    def score(self) -> Score:
        """The run's metric: the trials' score column and which way is better."""
        return Score.of(self.run)

    @property
    def compare(self) -> str | None:
        """The categorical hyperparameter the run's question is about, when the trials have it."""
        compare = self.run.get("compare")
        return compare if compare in self.hyperparameters else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {err}") from None


def read_results(path: Path) -> list[dict[str, Any]]:
    """The result lines of one trial; a line cut short by an interrupted write is skipped."""
    try:
        lines = path.read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _epochs(results: list[dict[str, Any]], trial_id: str, score: str = "val_accuracy"
            ) -> list[dict[str, Any]]:
    """One row per epoch, the last report winning: a trial restored from a checkpoint repeats
    epochs. `score`: the run's metric column, NaN where an epoch lacks it."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for result in results:
        epoch = result.get("epoch", result.get("training_iteration"))
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or epoch < 1:
            continue
        row: dict[str, Any] = {"trial_id": trial_id, "epoch": int(epoch),
                               score: _number(result.get(score))}
        row.update({k: _number(result.get(k)) for k in METRICS if k not in ("diverged", score)})
        row["diverged"] = bool(result.get("diverged", False))
        if row["diverged"]:  # the outputs of a model whose loss is NaN score nothing
            row[score] = math.nan
        row["time_total_s"] = _number(result.get("time_total_s"))
        row["timestamp"] = _number(result.get("timestamp"))  # when the epoch was reported
        row.update({k: v for k, v in result.items() if k not in row and k not in RAY_KEYS
                    and k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)})
        by_epoch[int(epoch)] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def epochs_planned(params: dict[str, Any], run: dict[str, Any]) -> float:
    """The epochs a trial would run without early stopping: its own, or the run's cap if smaller."""
    planned = [_number(params.get("epochs")), _number(run.get("max_epochs"))]
    planned = [p for p in planned if math.isfinite(p)]
    return min(planned) if planned else math.nan


# why a trial ended, as the study records it (tuning.search), and its status here; a trial the
# study holds as running (cut short, or a retry of an errored one) is unfinished
STUDY_REASONS = {"completed": "completed", "stopped_by_asha": "stopped_by_asha",
                 "diverged": "diverged", "errored": "errored", "running": "unfinished"}


def trial_status(errored: bool, epochs: list[dict[str, Any]], planned: float,
                 run_status: Any, reason: str | None = None) -> str:
    """Why a trial ended: as the study recorded it where it did (ASHA may stop a trial at a rung
    that is also its last planned epoch; a trial that errored once and recovered completed),
    else from what is on disk (see STATUSES)."""
    if reason in STUDY_REASONS:
        return STUDY_REASONS[reason]
    if errored:
        return "errored"
    if not epochs:
        return "unfinished"  # nothing reported yet: ASHA cannot have stopped it
    last = epochs[-1]
    if last["diverged"] or not all(math.isfinite(last[k]) for k in ("val_loss", "train_loss")):
        return "diverged"
    if math.isfinite(planned) and last["epoch"] >= planned:
        return "completed"
    return "stopped_by_asha" if run_status == "finished" else "unfinished"


def _trial_id(trial_dir: Path, results: list[dict[str, Any]]) -> str:
    for result in results:
        if isinstance(result.get("trial_id"), str):
            return result["trial_id"]
    if trial_dir.name.startswith(TRIAL_DIR_PREFIX):  # a trial that had reported nothing yet
        return trial_dir.name.removeprefix(TRIAL_DIR_PREFIX)
    match = _TRIAL_ID.search(trial_dir.name)
    return match.group(1) if match else trial_dir.name


def _cell(value: Any) -> Any:
    """A params value as one table cell: lists and dicts as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _param_columns(params: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Column order (TrainConfig keys first, the rest sorted) and a nullable dtype where one fits,
    so that an integer hyperparameter absent from some trials is written 64, not 64.0."""
    names = {k for p in params for k in p}
    order = [k for k in KEYS if k in names] + sorted(names - set(KEYS))
    dtypes = {}
    for name in order:
        values = [p[name] for p in params if p.get(name) is not None]
        if values and all(isinstance(v, bool) for v in values):
            dtypes[name] = "boolean"
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            dtypes[name] = "Int64"
    return order, dtypes


def _read_params(trial_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """A trial's params.json, or (None, why it is skipped): a trial starting as the run was
    interrupted may have left it half-written."""
    try:
        params = _read_json(trial_dir / "params.json")
    except ReportError as err:
        return None, f"trial directory {trial_dir.name} skipped: {err}"
    if not isinstance(params, dict):
        return None, f"trial directory {trial_dir.name} skipped: params.json is not an object"
    return params, ""


def _trial_row(trial_dir: Path, trial_id: str, params: dict[str, Any], epochs: list[dict],
               run: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """A trial's row of Experiment.trials (params are popped of the baseline marker)."""
    failed, error = failures(trial_dir)
    planned = epochs_planned(params, run)
    status = trial_status(failed > 0, epochs, planned, run.get("status"), reason)
    return {"trial_id": trial_id, "trial_dir": trial_dir.name, "status": status,
            "baseline": bool(params.pop(BASELINE, False)), "epochs_planned": planned,
            "retries": failed - (status == "errored"),
            "error": error if status == "errored" else ""}


def _tables(trials: list[dict], history: list[dict], params_by_id: dict[str, dict], score: str
            ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The trials table (params as columns) and the history, from the rows read."""
    order, dtypes = _param_columns(list(params_by_id.values()))
    table = pd.DataFrame(trials, columns=["trial_id", "trial_dir", "status", "baseline",
                                          "epochs_planned", "retries", "error"])
    table["epochs_planned"] = table["epochs_planned"].astype("Float64").round().astype("Int64")
    values = pd.DataFrame([{k: _cell(p.get(k)) for k in order} for p in params_by_id.values()],
                          columns=order)
    table = pd.concat([table, values.astype(dtypes)], axis=1)
    columns = ["trial_id", "epoch", score, *(m for m in METRICS if m != score), "time_total_s",
               "timestamp"]
    frame = pd.DataFrame(history)
    extra = sorted(set(frame.columns) - set(columns)) if len(frame) else []
    return table, frame.reindex(columns=columns + extra), order


def load_experiment(run_dir: Path) -> Experiment:
    """Read run.json and every trial directory; ReportError when RUN_DIR is not an experiment."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory; pass an experiment directory (RUN_DIR)")
    run = _read_json(run_dir / RUN_FILE) if (run_dir / RUN_FILE).is_file() else {}
    if not isinstance(run, dict):
        raise ReportError(f"{run_dir / RUN_FILE} is not a JSON object")
    trial_dirs = sorted(p.parent for p in run_dir.glob("*/params.json"))
    study, study_note = load_study(run_dir, run)
    reasons = study_reasons(study)
    if not run and not trial_dirs:
        raise ReportError(f"{run_dir} is not an experiment directory: it has no run.json and no "
                          "trial directories (subdirectories with a params.json)")
    trials, history, params_by_id, skipped = [], [], {}, []
    suggested = study_params(study)
    heard = study_epochs(study)
    unstarted = sorted(p.parent for p in run_dir.glob(f"{TRIAL_DIR_PREFIX}*/error.txt")
                       if not (p.parent / "params.json").exists())
    for trial_dir in trial_dirs + unstarted:
        if trial_dir in unstarted:  # failed before it started: the study has its params
            params = suggested.get(trial_dir.name.removeprefix(TRIAL_DIR_PREFIX))
            if params is None:
                skipped.append(f"trial directory {trial_dir.name} skipped: it failed before it "
                               "started, and the study does not know it")
                continue
        else:
            params, why = _read_params(trial_dir)
            if params is None:
                skipped.append(why)
                continue
        results = read_results(trial_dir / "result.json")
        trial_id = _trial_id(trial_dir, results)
        if trial_id in params_by_id:  # ids must be unique to join trials with their history
            trial_id = trial_dir.name
        epochs = _epochs(results, trial_id, Score.of(run).column)
        epochs += _unsynced(epochs, heard.get(trial_id, {}), trial_id, Score.of(run).column)
        trials.append(_trial_row(trial_dir, trial_id, params, epochs, run, reasons.get(trial_id)))
        history.extend(epochs)
        params_by_id[trial_id] = params
    table, frame, order = _tables(trials, history, params_by_id, Score.of(run).column)
    return Experiment(run_dir, run, table, frame, params_by_id, order, skipped, study, study_note,
                      dict(study.user_attrs) if study is not None else {})


def study_params(study: Any) -> dict[str, dict[str, Any]]:
    """The hyperparameters the study suggested for each Ray trial, by trial id ({} without a
    study): what a trial that failed before it started (Tune wrote no params.json for it, as when
    the worker it was to reuse could not be reset) is reported with."""
    if study is None:
        return {}
    return {t.user_attrs["ray_trial_id"]: dict(t.params) for t in study.get_trials(deepcopy=False)
            if "ray_trial_id" in t.user_attrs}


def study_epochs(study: Any) -> dict[str, dict[int, float]]:
    """The score of each epoch the study heard, by Ray trial id, of the trials that ended ({}
    without a study); the last study trial of a Ray trial (a retry continues it) tells."""
    if study is None:
        return {}
    return {t.user_attrs["ray_trial_id"]: dict(t.intermediate_values)
            for t in study.get_trials(deepcopy=False)
            if "ray_trial_id" in t.user_attrs and t.user_attrs.get("reason") != "lost_in_crash"}


def _unsynced(epochs: list[dict[str, Any]], heard: dict[int, float], trial_id: str, score: str
              ) -> list[dict[str, Any]]:
    """The epochs after the last in result.json that the study heard: rows with the score only."""
    last = epochs[-1]["epoch"] if epochs else 0
    return _epochs([{"epoch": e, score: v} for e, v in heard.items() if e > last], trial_id, score)


def study_reasons(study: Any) -> dict[str, str]:
    """Why each Ray trial ended, by trial id, as the run's study recorded it, "running" where it
    has not ended ({} without a study). The last study trial of a Ray trial tells: a retry of an
    errored trial continues it. Trials the study handed out that Ray never ran are left out."""
    if study is None:
        return {}
    from optuna.trial import TrialState

    reasons = {}
    for trial in study.get_trials(deepcopy=False):
        reason = trial.user_attrs.get("reason")
        if "ray_trial_id" in trial.user_attrs and reason != "lost_in_crash":
            running = trial.state == TrialState.RUNNING
            reasons[trial.user_attrs["ray_trial_id"]] = "running" if running else reason
    return reasons


def failures(trial_dir: Path) -> tuple[int, str]:
    """How often Ray saw the trial fail (error.txt gains a "Failure # N" header each time, also
    for a failure the trial recovered from), and the last line of the last failure."""
    path = trial_dir / "error.txt"
    if not path.is_file():
        return 0, ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    count = sum(ln.startswith("Failure # ") for ln in lines)
    return max(count, 1), lines[-1] if lines else "error.txt is empty"


def load_study(run_dir: Path, run: dict[str, Any]) -> tuple[Any, str]:
    """The run's Optuna study copied into memory, or (None, a note saying why there is none).

    The journal is read from a copy: RUN_DIR may be read-only or still written by a running tune.
    """
    # "storage": the key's name in runs made before it was called study_file
    path = run_dir / str(run.get("study_file") or run.get("storage") or STUDY_FILE)
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
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"cannot load the Optuna study from {path.name}: {first}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study, ""
