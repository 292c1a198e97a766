"""The experiment tracker, MLflow (--mlflow): one MLflow experiment a run, named for the run
directory; in it the run's parent MLflow run, which holds the answer (the first paragraph of
summary.md) and the report files, and under it an MLflow run for each trial of the search and the
confirmation (tag "phase"): its config as params, its metrics per epoch, its status.

    RUN_DIR/mlflow.json   TRACKING_FILE: the tracking URI, the experiment and the parent run's id

A run logs to MLflow where it started, from its start on: a resume logs into the same parent run
and the same trials' runs (Ray restores the search's callbacks as they were), and refuses an
--mlflow that differs. The parent run ends FINISHED with a finished run, else KILLED, which the
next resume sets RUNNING again. mlflow is imported only where a run logs to it.

    tracking_uri(args.mlflow)                 as the command line is parsed
    start(uri, run_dir, resume)               once the run directory is there, before the phases
    callbacks(run_dir, "search")              a new Tuner's callbacks (search, confirmation)
    finish(run_dir)                           once the reports are written
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ray.tune.logger import LoggerCallback

from trainables.cli import UsageError, first_line
from trainables.rundir import (FIGURES_DIR, LEADERBOARD_FILE, RUN_FILE, SUMMARY_FILE, Status,
                               read_answer, read_json, write_json)

TRACKING_FILE = "mlflow.json"
# --mlflow without a URI: MLflow's own default store, ./mlflow.db, its artifacts in ./mlruns (MLflow
# 3.17 refuses its older default, the file store ./mlruns, unless MLFLOW_ALLOW_FILE_STORE=true)
DEFAULT_URI = "mlflow.db"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's tag that nests a run under another


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise UsageError("--mlflow needs mlflow: pip install mlflow") from None
    # MLflow prints two links to a server's UI as each run ends, trial by trial, and a line as it
    # makes a database's tables: none of it the run's console
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return mlflow


def tracking_uri(value: str) -> str:
    """--mlflow's value as the URI MLflow is given, a local one absolute (a resume may run
    elsewhere): a server's (http://HOST:PORT) as it is, once it is reached; a SQLite database's
    (sqlite:///PATH), or a path ending .db, as that database; any other path a folder of MLflow's
    file store (which MLflow 3.17 refuses unless MLFLOW_ALLOW_FILE_STORE=true)."""
    _mlflow()  # the one-line error, before Ray starts
    scheme = urlparse(value).scheme
    if scheme in ("http", "https"):
        check_server(value)
    if scheme not in ("", "file", "sqlite") or value == "databricks":
        return value
    path = value.removeprefix("sqlite:///") if scheme == "sqlite" else urlparse(value).path or value
    path = Path(path).expanduser().resolve()
    return f"sqlite:///{path}" if scheme == "sqlite" or path.suffix == ".db" else path.as_uri()


def check_server(uri: str) -> None:
    """Fail fast, in one line, on a server nothing listens on (MLflow would retry for minutes)."""
    parsed = urlparse(uri)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        socket.create_connection((parsed.hostname or "", port), timeout=5).close()
    except (OSError, ValueError) as err:  # ValueError: a port that is no number
        raise UsageError(f"cannot reach an MLflow server at {uri}: "
                         f"{getattr(err, 'strerror', None) or err}") from None


def recorded(run_dir: Path) -> dict[str, str] | None:
    """What RUN_DIR/mlflow.json says; None for a run that does not log to MLflow."""
    path = run_dir / TRACKING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def start(uri: str | None, run_dir: Path, resume: bool) -> None:
    """Open the run's parent MLflow run (`uri`: --mlflow, resolved by tracking_uri): a new run's
    (new_parent), recorded in RUN_DIR/mlflow.json; a resume's as recorded, RUNNING again. An
    --mlflow that differs from the run's is refused, as is a store MLflow cannot open."""
    tracked = recorded(run_dir)
    if uri and (resume or tracked) and uri != (tracked or {}).get("uri"):
        was = f"the run's {tracked['uri']}" if tracked else "the run, started without it"
        raise UsageError(f"--mlflow {uri} differs from {was}; a resume continues the run as it "
                         "was started (start another with a new --name)")
    if tracked is None and uri is None:
        return
    mlflow = _mlflow()
    try:
        client = mlflow.MlflowClient(uri or tracked["uri"])
        if tracked is not None:
            client.update_run(tracked["parent_run_id"], status="RUNNING")
        else:
            write_json(run_dir / TRACKING_FILE, new_parent(client, uri, run_dir))
    except mlflow.MlflowException as err:
        raise UsageError(f"--mlflow {uri or tracked['uri']}: {first_line(err)}") from None


def new_parent(client: Any, uri: str, run_dir: Path) -> dict[str, str]:
    """A new parent MLflow run, in the experiment named for the run directory (made, or restored
    where it was deleted); what RUN_DIR/mlflow.json records of it."""
    found = client.get_experiment_by_name(run_dir.name)
    if found is not None and found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    experiment_id = found.experiment_id if found else client.create_experiment(run_dir.name)
    parent = client.create_run(experiment_id, run_name=run_dir.name,
                               tags={"run_dir": str(run_dir)})
    return {"uri": uri, "experiment": run_dir.name, "experiment_id": experiment_id,
            "parent_run_id": parent.info.run_id}


def callbacks(run_dir: Path, phase: str) -> list[Any]:
    """The Tuner's callbacks that log each trial of `phase` ("search", "confirmation") as an
    MLflow run nested under the run's parent; none for a run that does not log to MLflow."""
    tracked = recorded(run_dir)
    return [TrialRuns(tracked, phase)] if tracked else []


class TrialRuns(LoggerCallback):
    """Logs each trial of `phase` as an MLflow run nested under the run's parent: its config as
    params as it starts, its numeric results at each report (step: its training_iteration, one a
    report, one an epoch), FINISHED or FAILED as it ends. A trial a resume goes on with logs on
    into the MLflow run it started, RUNNING again. (Ray's MLflowLoggerCallback starts a second
    MLflow run for such a trial, imports mlflow as Ray's module is imported, 1 s on every run, and
    sends a request for each metric of each report.)"""

    def __init__(self, tracked: dict[str, str], phase: str) -> None:
        self.tracked, self.phase = tracked, phase
        self._runs: dict[str, str] = {}  # a trial's id: its MLflow run's

    def __getstate__(self) -> dict[str, Any]:
        return {"tracked": self.tracked, "phase": self.phase}  # a restored Tuner finds its runs

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def setup(self, *args: Any, **info: Any) -> None:
        self._client = _mlflow().MlflowClient(self.tracked["uri"])

    def log_trial_start(self, trial: Any) -> None:
        if trial.trial_id not in self._runs:
            self._runs[trial.trial_id] = self._run_of(trial)

    def _run_of(self, trial: Any) -> str:
        """The trial's MLflow run: the one it started before a resume, else a new one with its
        config."""
        from mlflow.entities import Param

        experiment = self.tracked["experiment_id"]
        found = self._client.search_runs([experiment], max_results=1, filter_string=(
            f"tags.trial_id = '{trial.trial_id}' and tags.phase = '{self.phase}'"))
        if found:
            self._client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        run = self._client.create_run(experiment, run_name=str(trial), tags={
            PARENT_TAG: self.tracked["parent_run_id"], "phase": self.phase,
            "trial_id": trial.trial_id})
        self._client.log_batch(run.info.run_id, params=[
            Param(key, str(value)) for key, value in trial.config.items()])
        return run.info.run_id

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        from mlflow.entities import Metric

        step, now = result["training_iteration"], int(time.time() * 1000)
        self._client.log_batch(self._runs[trial.trial_id], metrics=[
            Metric(key, float(value), now, step) for key, value in result.items()
            if isinstance(value, numbers.Real)])

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._client.set_terminated(self._runs[trial.trial_id], "FAILED" if failed else "FINISHED")


def finish(run_dir: Path) -> None:
    """Log the answer (the first paragraph of summary.md, as the tag "answer" and as the run's
    description) and the report files (summary.md, leaderboard.csv, figures/*.png) to the parent
    run, and end it (end_runs). Nothing for a run that does not log to MLflow."""
    tracked = recorded(run_dir)
    if tracked is None:
        return
    client, parent = _mlflow().MlflowClient(tracked["uri"]), tracked["parent_run_id"]
    summary, answer = run_dir / SUMMARY_FILE, read_answer(run_dir)
    if answer is not None:
        client.set_tag(parent, "answer", answer)
        client.set_tag(parent, "mlflow.note.content", answer)  # the MLflow UI's description
    for path in (summary, run_dir / LEADERBOARD_FILE):
        if path.is_file():
            client.log_artifact(parent, str(path))
    for path in sorted((run_dir / FIGURES_DIR).glob("*.png")):
        client.log_artifact(parent, str(path), FIGURES_DIR)
    end_runs(client, tracked, read_json(run_dir / RUN_FILE)["status"] == Status.FINISHED)


def end_runs(client: Any, tracked: dict[str, str], finished: bool) -> None:
    """End the parent run FINISHED with a finished run; else KILLED, and with it the trials' runs
    that a cut (a time budget, Ctrl-C) left RUNNING: a resume sets them RUNNING again."""
    parent = tracked["parent_run_id"]
    if not finished:
        for run in client.search_runs([tracked["experiment_id"]], filter_string=(
                f"tags.`{PARENT_TAG}` = '{parent}' and attributes.status = 'RUNNING'")):
            client.set_terminated(run.info.run_id, "KILLED")
    client.set_terminated(parent, "FINISHED" if finished else "KILLED")
