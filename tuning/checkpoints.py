"""Which checkpoints a run keeps: only what a resume can still need.

A running trial keeps its last two checkpoints (Tune's CheckpointConfig(num_to_keep=2); with 1,
Tune forces a snapshot of the whole experiment after every epoch of every trial). A trial that
has ended keeps none: confirmation and final training train their configs again from scratch,
and a resume never runs an ended trial on, except where a crash hit between its end and Tune's
next snapshot of the experiment (tuning.race.RaceScheduler.choose_trial_to_run). So an ended
trial's checkpoints are deleted at the second snapshot after it ended, by when Tune has written a
snapshot that lists it as ended (and has uploaded it, or is uploading a newer one). Where a crash
still beats that, a search trial is stopped where Tune's snapshot has it, and a confirmation run
trains again from the start (trainables.trainable.restore). An errored trial keeps its
checkpoint: a resume retries it from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from results.rundir import TRIAL_DIR_PREFIX

CHECKPOINT_PREFIX = "checkpoint_"  # Tune's name for a trial's checkpoint directories


def drop_checkpoints(filesystem: Any, trial_path: str) -> int:
    """Delete the checkpoint directories in one trial's directory (on `filesystem`, a pyarrow
    filesystem); how many. A directory gone already is no error."""
    import pyarrow.fs

    try:
        entries = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path,
                                                                   allow_not_found=True))
    except OSError:
        return 0
    dropped = 0
    for entry in entries:
        if entry.type == pyarrow.fs.FileType.Directory and entry.base_name.startswith(
                CHECKPOINT_PREFIX):
            try:
                filesystem.delete_dir(entry.path)
                dropped += 1
            except OSError:  # deleted meanwhile
                pass
    return dropped


def drop_ended(run_dir: Path, trial_ids: Iterable[str] | None = None) -> int:
    """Delete the checkpoints of these ended trials of a run directory on this machine (None:
    of every trial in it); how many."""
    import pyarrow.fs

    local = pyarrow.fs.LocalFileSystem()
    dirs = (run_dir.glob(f"{TRIAL_DIR_PREFIX}*/") if trial_ids is None else
            (run_dir / f"{TRIAL_DIR_PREFIX}{trial_id}" for trial_id in trial_ids))
    return sum(drop_checkpoints(local, str(path)) for path in dirs)


class DropEndedCheckpoints(Callback):
    """Deletes an ended trial's checkpoints during the run, at the second snapshot of the
    experiment after it ended: at each snapshot Tune writes the trials' statuses, then asks the
    callbacks for their state (get_state), then starts uploading the snapshot (or leaves it to a
    later one while an upload still runs). So one snapshot that lists the trial as ended has been
    written; where a crash beats its upload, see the module's docstring. What ends after the last
    snapshot is deleted by the phase, once fit has returned (drop_ended)."""

    def __init__(self) -> None:
        self._ended: list[tuple[Any, str]] = []  # (pyarrow filesystem, trial path), ended since
        self._listed: list[tuple[Any, str]] = []  # ended before the last snapshot

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a restored run starts afresh: the phase sweeps what a crash left behind

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        storage = trial.storage
        self._ended.append((storage.storage_filesystem, storage.trial_fs_path))

    def get_state(self) -> None:
        for filesystem, path in self._listed:
            drop_checkpoints(filesystem, path)
        self._listed, self._ended = self._ended, []
        return None


def checkpoint_gone(trial: Any) -> bool:
    """Whether the checkpoint Tune would resume this trial from was deleted (a trial without one
    trains from the start, as Tune does)."""
    import pyarrow.fs

    checkpoint = trial.checkpoint
    if checkpoint is None:
        return False
    try:
        info = checkpoint.filesystem.get_file_info(checkpoint.path)
    except OSError:
        return True
    return info.type == pyarrow.fs.FileType.NotFound
