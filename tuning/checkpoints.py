"""Which checkpoints a run keeps: only what a resume can still need.

Deleted during the run (DropCheckpoints), as soon as no snapshot of the experiment that Tune has
uploaded, or may be uploading, lists them:
- A running trial's checkpoints but its latest (a retry after a lost worker goes on from it) and
  those the last two snapshots list (a resume goes on from the last one uploaded): at most 3.
- An ended trial's, all: confirmation and final training train their configs again from scratch,
  and a resume never runs an ended trial on, except where a crash hit between its end and Tune's
  next snapshot (tuning.scheduler.RaceScheduler.choose_trial_to_run).
Where a crash still beats that, a search trial is stopped where Tune's snapshot has it, and a
confirmation run trains again from the start (trainables.trainable.restore). An errored trial
keeps its latest checkpoint: a resume retries it from there.

Tune's own CheckpointConfig(num_to_keep) is not used: it forces a snapshot, and waits for the
previous one's upload, whenever a trial has saved that many checkpoints since the last snapshot,
and each snapshot uploads every trial's files again (Ray 2.60's _ExperimentCheckpointManager), so
that a search's bookkeeping grows with trials squared, most of all with its trials in a bucket
(benchmarks/bucket_storage.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ray.tune import Callback

from trainables.rundir import TRIAL_DIR_PREFIX
from tuning.storage import Trials

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
    return sum(drop_dir(filesystem, entry.path) for entry in entries
               if entry.type == pyarrow.fs.FileType.Directory
               and entry.base_name.startswith(CHECKPOINT_PREFIX))


def drop_dir(filesystem: Any, path: str) -> bool:
    """Delete one checkpoint directory; False where it was gone already."""
    try:
        filesystem.delete_dir(path)
        return True
    except OSError:  # deleted meanwhile
        return False


def drop_ended(trials: Trials, trial_ids: Iterable[str] | None = None,
               keep: Iterable[str] = ()) -> int:
    """Delete the checkpoints of these ended trials of a run, wherever it keeps them (None: of
    every trial in it, but those in `keep`); how many."""
    import pyarrow.fs

    if trial_ids is None:
        selector = pyarrow.fs.FileSelector(trials.path, allow_not_found=True)
        kept = {f"{TRIAL_DIR_PREFIX}{trial_id}" for trial_id in keep}
        paths = [info.path for info in trials.filesystem.get_file_info(selector)
                 if info.base_name.startswith(TRIAL_DIR_PREFIX) and info.base_name not in kept]
    else:
        paths = [f"{trials.path}/{TRIAL_DIR_PREFIX}{trial_id}" for trial_id in trial_ids]
    return sum(drop_checkpoints(trials.filesystem, path) for path in paths)


class DropCheckpoints(Callback):
    """Deletes checkpoints during the run. At each snapshot of the experiment Tune writes the
    trials' statuses and latest checkpoints, then asks the callbacks for their state (get_state),
    then starts uploading the snapshot (or leaves it to a later one while an upload still runs).
    A live trial keeps its latest checkpoint (a retry after a lost worker goes on from it) and
    those the last two snapshots list (a resume goes on from the last uploaded one); any other is
    deleted as soon as a newer one is saved or a snapshot passes. An ended trial's are all deleted
    at the second snapshot after it ended. What ends after the last snapshot is deleted by the
    phase, once fit has returned (drop_ended)."""

    def __init__(self) -> None:
        self._saved: dict[str, list[tuple[Any, str]]] = {}  # a live trial's checkpoints, in order
        self._listed_at: list[dict[str, str]] = []  # live trials' latest, at the last 2 snapshots
        self._ended: list[tuple[Any, str]] = []  # (pyarrow filesystem, trial path), ended since
        self._listed: list[tuple[Any, str]] = []  # ended before the last snapshot

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a restored run starts afresh: the phase sweeps what a crash left behind

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any,
                      **info: Any) -> None:
        self._saved.setdefault(trial.trial_id, []).append((checkpoint.filesystem,
                                                           checkpoint.path))
        self._prune(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._saved.pop(trial.trial_id, None)
        storage = trial.storage
        self._ended.append((storage.storage_filesystem, storage.trial_fs_path))

    def get_state(self) -> None:
        latest = {trial_id: saved[-1][1] for trial_id, saved in self._saved.items() if saved}
        self._listed_at = [*self._listed_at[-1:], latest]
        for trial_id in self._saved:
            self._prune(trial_id)
        for filesystem, path in self._listed:
            drop_checkpoints(filesystem, path)
        self._listed, self._ended = self._ended, []
        return None

    def _prune(self, trial_id: str) -> None:
        """Delete a live trial's checkpoints but its latest and those a snapshot may still list."""
        saved = self._saved[trial_id]
        keep = {saved[-1][1], *(listed.get(trial_id) for listed in self._listed_at)}
        for filesystem, path in [entry for entry in saved if entry[1] not in keep]:
            drop_dir(filesystem, path)
        saved[:] = [entry for entry in saved if entry[1] in keep]


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
