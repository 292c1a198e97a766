"""A run and its record in the run directory, run.json: what the run is, how far it got, what it
cost. Loaded and saved here only (Run)."""

from __future__ import annotations

import datetime
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from results.metric import Score
from search_spaces import Space
from trainables.cli import UsageError
from trainables.rundir import (RUN_FILE, SOURCES_DIR, STUDY_FILE, Phase, Status, read_json,
                               write_json, write_text)
from trainables.task import Task, shown
from tuning import storage
from tuning.settings import CHANGEABLE, RECORDED, Settings, check_name
from tuning.storage import LOCAL_ROOT, Trials, is_uri

# run.json's keys that Run holds as fields; the rest is Run.record
FIELDS = ("status", "phase", "study_name", "metric", "mode", "trials")


@dataclass
class Run:
    """One run: its directory; this command's settings (a resume's from run.json and the flags
    it may change: they are this command's, never written back); how far it got; the study's
    name; the metric's column and mode; where its trials live; and `record`, the rest of run.json
    (what the run is, the settings it started with, when, what it cost)."""

    dir: Path
    settings: Settings
    status: Status
    phase: Phase
    study_name: str
    metric: str  # the score's column, val_<the task's metric>
    mode: str  # "max": higher is better
    trials: Trials
    record: dict[str, Any]

    @property
    def score(self) -> Score:
        return Score(self.metric, self.mode)

    def save(self) -> None:
        write_json(self.dir / RUN_FILE, {
            **self.record, "status": self.status.value, "phase": self.phase.value,
            "study_name": self.study_name, "metric": self.metric, "mode": self.mode,
            "trials": self.trials.uri})

    def end(self, status: Status, spent_on: str, seconds: float, phase: Phase | None = None
            ) -> None:
        """A phase ended as `status` after `seconds` (recorded as `spent_on`), the run going on
        to `phase` where given."""
        self.status, self.phase = status, phase or self.phase
        self.record["finished_at"] = now()
        spent(self.record, spent_on, seconds)
        self.save()


def new_run(s: Settings, run_dir: Path, space: Space, task: Task, trials: Trials) -> Run:
    """A run about to start its search."""
    record = {
        "name": run_dir.name, "space": space.name, "space_ref": space.ref or space.name,
        "description": space.description, "question": space.question, "compare": space.compare,
        "task": {"ref": task.ref, "name": task.name, "file": task.path, "sha256": task.sha256},
        **{key: getattr(s, key) for key in (*RECORDED, *CHANGEABLE)},
        "time_budget": s.time_budget, "study_file": STUDY_FILE, "started_at": now(),
        "finished_at": None}
    return Run(run_dir, s, Status.RUNNING, Phase.SEARCH, run_dir.name,
               f"val_{task.metric.name}", task.metric.mode, trials, record)


def load(run_dir: Path, s: Settings, trials: Trials | None = None) -> Run:
    """The run in run_dir, as this command continues it (its trials where `trials` says, else
    where it recorded them)."""
    record = read(run_dir)
    fields = {key: record.pop(key, None) for key in FIELDS}
    return Run(run_dir, s, Status(fields["status"]), Phase(fields["phase"] or Phase.SEARCH),
               fields["study_name"] or run_dir.name, fields["metric"] or "val_accuracy",
               fields["mode"] or "max", trials or storage.at(run_dir, fields["trials"]), record)


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read(run_dir: Path) -> dict[str, Any]:
    """run.json as it is on disk."""
    return read_json(run_dir / RUN_FILE)


def storage_dir(storage_path: str) -> Path:
    """Where run directories are, absolute (trials run in directories of their own): the folder
    --storage-path, or where a run whose trials are in a bucket keeps the rest (tuning.storage)."""
    if is_uri(storage_path):
        return Path(LOCAL_ROOT).resolve()
    return Path(storage_path).expanduser().resolve()


def new_run_dir(s: Settings, space: Space) -> Path:
    """SPACE-DATE-TIME (or --name) under --storage-path."""
    storage = storage_dir(s.storage_path)
    run_dir = storage / (s.name or f"{space.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it, "
                         "or another --name")
    return run_dir


def resumable_run_dir(storage_path: str, space: Space, name: str | None) -> Path:
    """The run a resume continues: --name, else the newest run of the space."""
    check_name(name)
    storage = storage_dir(storage_path)
    ref = space.ref or space.name
    if name:
        run_dir = storage / name
    else:
        runs = sorted((p for p in storage.glob(f"{space.name}-*/{RUN_FILE}")
                       if json.loads(p.read_text()).get("space_ref") == ref),
                      key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"no run of space {space.name!r} to resume under {storage}; pass "
                             "--name")
        run_dir = runs[-1].parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{run_dir} is not a tuning run that can be resumed")
    recorded = read(run_dir).get("space_ref")
    if recorded != ref:
        raise UsageError(f"{run_dir} is a run of space {recorded!r}, not {ref!r}")
    return run_dir


def clear_search(run_dir: Path, trials: Trials) -> None:
    """What a search stopped before Ray saved its state left behind, none of it restorable (Ray
    never listed its trials), so that the search starts over in run_dir."""
    (run_dir / STUDY_FILE).unlink(missing_ok=True)
    storage.clear(storage.local(run_dir))  # the trials' files, where they are or were pulled to
    if trials.remote:
        storage.clear(trials)


def sources(space: Space, task: Task) -> dict[str, Path]:
    """The files that define the run, by the name their copy has in RUN_DIR/sources/."""
    files = {"task.py": Path(task.path)}
    if space.path and Path(space.path) != Path(task.path):
        files["space.py"] = Path(space.path)
    return files


def keep_sources(run_dir: Path, space: Space, task: Task) -> None:
    """A copy of the task's and the space's files in the run directory: what the run trained, and
    what a resume compares the files with."""
    for name, path in sources(space, task).items():
        write_text(run_dir / SOURCES_DIR / name, path.read_text())


def _first_change(old: str, new: str) -> str:
    """Where two versions of a file first differ, as a line number and the two lines."""
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old.splitlines(),
                                                        new.splitlines()).get_opcodes():
        if tag != "equal":
            was = old.splitlines()[i1].strip() if i1 < i2 else "(nothing)"
            now_ = new.splitlines()[j1].strip() if j1 < j2 else "(nothing)"
            return f"line {j1 + 1} reads `{now_}`, was `{was}`"
    return "its content differs"


def check_sources(run_dir: Path, space: Space, task: Task) -> None:
    """Refuse to resume a run whose task or space file changed since it started: one study would
    hold trials of two different experiments."""
    for name, path in sources(space, task).items():
        kept = run_dir / SOURCES_DIR / name
        if kept.is_file() and kept.read_text() != path.read_text():
            raise UsageError(f"{shown(path)} changed since the run started "
                             f"({_first_change(kept.read_text(), path.read_text())}); a resume "
                             "needs the files the run started with (start another with a new "
                             "--name)")


def check_data(record: dict[str, Any], found: dict[str, Any]) -> None:
    """Record the data's fingerprint (trainables.data.fingerprint), or refuse data other than the
    recorded."""
    recorded = record.setdefault("data", found)
    if recorded != found:
        raise UsageError(f"the data differ from the run's ({found.get('train')} training and "
                         f"{found.get('val')} validation samples, sha256 {found['sha256'][:12]}, "
                         f"against {recorded.get('train')} and {recorded.get('val')}, "
                         f"{recorded['sha256'][:12]}); a resume needs the data the run started on")


def spent(record: dict[str, Any], key: str, seconds: float) -> None:
    record[key] = round(record.get(key, 0) + seconds, 1)
    record["wall_seconds"] = round(record.get("wall_seconds", 0) + seconds, 1)
