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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from results.metric import Score
from results.study import (COMPLETED, DIVERGED, ERRORED, SETTLED_STOP, STOPPED, epochs_of,
                           load_copy, params_of, reasons_of)
from trainables.config import BASELINE, KEYS
from trainables.rundir import RUN_FILE, TRIAL_DIR_PREFIX, Status

STATUSES = ("completed", "stopped_by_asha", "stopped_settled", "diverged", "errored",
            "unfinished")
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
    # (tuning.searcher: the values dropped, when the search settled, the trials it started from)

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


# why a trial ended, as the study records it (results.study), and its status here
STUDY_REASONS = {COMPLETED: "completed", STOPPED: "stopped_by_asha",
                 SETTLED_STOP: "stopped_settled", DIVERGED: "diverged", ERRORED: "errored"}


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
    return "stopped_by_asha" if run_status == Status.FINISHED else "unfinished"


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
    study, study_note = load_copy(run_dir, run)
    reasons = reasons_of(study)
    if not run and not trial_dirs:
        raise ReportError(f"{run_dir} is not an experiment directory: it has no run.json and no "
                          "trial directories (subdirectories with a params.json)")
    trials, history, params_by_id, skipped = [], [], {}, []
    suggested = params_of(study)
    heard = epochs_of(study)
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


def _unsynced(epochs: list[dict[str, Any]], heard: dict[int, float], trial_id: str, score: str
              ) -> list[dict[str, Any]]:
    """The epochs after the last in result.json that the study heard: rows with the score only."""
    last = epochs[-1]["epoch"] if epochs else 0
    return _epochs([{"epoch": e, score: v} for e, v in heard.items() if e > last], trial_id, score)


def failures(trial_dir: Path) -> tuple[int, str]:
    """How often Ray saw the trial fail (error.txt gains a "Failure # N" header each time, also
    for a failure the trial recovered from), and the last line of the last failure."""
    path = trial_dir / "error.txt"
    if not path.is_file():
        return 0, ""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    count = sum(ln.startswith("Failure # ") for ln in lines)
    return max(count, 1), lines[-1] if lines else "error.txt is empty"
