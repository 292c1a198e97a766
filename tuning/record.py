"""The run directory's own record, run.json: what the run is, how far it got, what it cost."""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import search_spaces
from results.cli import UsageError
from results.rundir import RUN_FILE, STUDY_FILE, TRIAL_DIR_PREFIX, write_json
from trainables.config import TrainConfig
from tuning.settings import CHANGEABLE, RECORDED, Settings

METRIC, MODE = "val_accuracy", "max"


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def read(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / RUN_FILE).read_text())


def write(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(run_dir / RUN_FILE, record)


def storage_dir(storage_path: str) -> Path:
    """--storage-path, absolute: trials run in directories of their own."""
    if "://" in storage_path:
        raise UsageError(f"--storage-path {storage_path}: URIs are not supported; give a folder "
                         "(on a cluster, one that every node mounts at the same path)")
    return Path(storage_path).expanduser().resolve()


def new_run_dir(s: Settings) -> Path:
    """SPACE-DATE-TIME (or --name) under --storage-path."""
    storage = storage_dir(s.storage_path)
    run_dir = storage / (s.name or f"{s.space}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it, "
                         "or another --name")
    return run_dir


def resumable_run_dir(storage_path: str, space: str, name: str | None) -> Path:
    """The run a resume continues: --name, else the newest run of the space."""
    storage = storage_dir(storage_path)
    if name:
        run_dir = storage / name
    else:
        runs = sorted(storage.glob(f"{space}-*/{RUN_FILE}"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"no run of space {space!r} to resume under {storage}; pass --name")
        run_dir = runs[-1].parent
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{run_dir} is not a tuning run that can be resumed")
    recorded = read(run_dir)["space"]
    if recorded != space:
        raise UsageError(f"{run_dir} is a run of space {recorded!r}, not {space!r}")
    return run_dir


def restorable(run_dir: Path) -> bool:
    """Ray saved the search's state: tuner.pkl is written when the Tuner is built, the experiment
    state only once the search has run a while."""
    from ray.tune import Tuner

    return Tuner.can_restore(str(run_dir)) and any(run_dir.glob("experiment_state-*.json"))


def clear_search(run_dir: Path) -> None:
    """What a search stopped before Ray saved its state left behind, none of it restorable (Ray
    never listed its trials), so that the search starts over in run_dir."""
    for path in [run_dir / STUDY_FILE, run_dir / "tuner.pkl", *run_dir.glob(f"{TRIAL_DIR_PREFIX}*"),
                 *run_dir.glob("*-state-*"), *run_dir.glob("experiment_state-*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def new_record(s: Settings, run_dir: Path) -> dict[str, Any]:
    space = search_spaces.get_space(s.space)
    return {
        "name": run_dir.name, "space": s.space, "description": space.description,
        "question": space.question, "compare": space.compare, "metric": METRIC, "mode": MODE,
        **{key: getattr(s, key) for key in (*RECORDED, *CHANGEABLE)},
        "model": s.model or TrainConfig.model, "time_budget": s.time_budget,
        "study_name": run_dir.name, "study_file": STUDY_FILE,
        "status": "running", "phase": "search", "started_at": now(), "finished_at": None,
    }


def fingerprint(data: dict[str, Any]) -> dict[str, Any]:
    """The images and labels a run trains and validates on, hashed: a resume on other data (the
    files changed, another split) would mix two experiments in one study."""
    digest = hashlib.sha256()
    sizes = {}
    for name in ("train", "val"):
        split = data[name]
        digest.update(split.images.contiguous().numpy().tobytes())
        digest.update(split.labels.contiguous().numpy().tobytes())
        sizes[f"{name}_images"] = len(split.labels)
    return {**sizes, "sha256": digest.hexdigest()}


def check_data(record: dict[str, Any], data: dict[str, Any]) -> None:
    """Record the data's fingerprint, or refuse data other than the recorded."""
    found = fingerprint(data)
    recorded = record.setdefault("data", found)
    if recorded != found:
        raise UsageError(f"the data differ from the run's ({found['train_images']} training and "
                         f"{found['val_images']} validation images, sha256 {found['sha256'][:12]}, "
                         f"against {recorded['train_images']} and {recorded['val_images']}, "
                         f"{recorded['sha256'][:12]}); a resume needs the data the run started on")


def spent(record: dict[str, Any], key: str, seconds: float) -> None:
    record[key] = round(record.get(key, 0) + seconds, 1)
    record["wall_seconds"] = round(record.get("wall_seconds", 0) + seconds, 1)
