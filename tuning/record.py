"""The run directory's own record, run.json: what the run is, how far it got, what it cost."""

from __future__ import annotations

import datetime
import difflib
import json
from pathlib import Path
from typing import Any

from trainables.cli import UsageError
from trainables.rundir import RUN_FILE, SOURCES_DIR, STUDY_FILE, write_json, write_text
from search_spaces import Space
from trainables.task import Task, shown
from tuning import storage
from tuning.settings import CHANGEABLE, RECORDED, Settings, check_name
from tuning.storage import LOCAL_ROOT, Trials, is_uri


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / RUN_FILE).read_text())


def write(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(run_dir / RUN_FILE, record)


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


def space_of(record: dict[str, Any]) -> str:
    """What loads a run's space: its ref (runs recorded before spaces could be files: its name)."""
    return record.get("space_ref") or record["space"]


def resumable_run_dir(storage_path: str, space: Space, name: str | None) -> Path:
    """The run a resume continues: --name, else the newest run of the space."""
    check_name(name)
    storage = storage_dir(storage_path)
    ref = space.ref or space.name
    if name:
        run_dir = storage / name
    else:
        runs = sorted((p for p in storage.glob(f"{space.name}-*/{RUN_FILE}")
                       if space_of(json.loads(p.read_text())) == ref),
                      key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"no run of space {space.name!r} to resume under {storage}; pass "
                             "--name")
        run_dir = runs[-1].parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{run_dir} is not a tuning run that can be resumed")
    recorded = space_of(read(run_dir))
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


def new_record(s: Settings, run_dir: Path, space: Space, task: Task) -> dict[str, Any]:
    return {
        "name": run_dir.name, "space": space.name, "space_ref": space.ref or space.name,
        "description": space.description, "question": space.question, "compare": space.compare,
        "task": {"ref": task.ref, "name": task.name, "file": task.path, "sha256": task.sha256},
        "metric": f"val_{task.metric.name}", "mode": task.metric.mode,
        **{key: getattr(s, key) for key in (*RECORDED, *CHANGEABLE)},
        "time_budget": s.time_budget, "study_name": run_dir.name, "study_file": STUDY_FILE,
        "trials": s.storage_path if is_uri(s.storage_path) else None,  # tuning.storage
        "status": "running", "phase": "search", "started_at": now(), "finished_at": None,
    }


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
