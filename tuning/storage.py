"""Where a run's Ray trials live: in the run directory itself (a folder of this machine, or one
every node of a cluster mounts), or in a bucket, given as a URI of a filesystem pyarrow reaches:

    s3://BUCKET/PREFIX                                            AWS S3
    s3://BUCKET/PREFIX?endpoint_override=HOST:PORT&scheme=http    an S3-compatible server
    gs://BUCKET/PREFIX                                            Google Cloud Storage

With a bucket, every node writes its trials' results and checkpoints there (RUN_URI/NAME/trial_*,
RUN_URI/NAME/confirm/), and Tune keeps its experiment state there. The study, run.json and the
reports stay in the run directory on the machine that runs the command (LOCAL_ROOT/NAME): the
driver is the study's only writer, and a journal file needs no server. After each phase the
trials' small files (params.json, result.json, error.txt; never a checkpoint) are copied down
into the run directory (`pull`), so that the reports read one folder either way. Credentials come
from where pyarrow looks for them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, say), on every
node: they are never part of the URI, which run.json records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trainables.cli import UsageError, first_line
from trainables.rundir import TRIAL_DIR_PREFIX, write_atomic

LOCAL_ROOT = "runs"  # where a run whose trials are in a bucket keeps its study and reports
PULLED = ("params.json", "result.json", "error.txt")  # what the reports read of a trial
SECRETS = ("access_key", "secret_key", "session_token")
TUNE_STATE = ("tuner.pkl", "experiment_state-", "-state-")  # Tune's own files, by name or part


def is_uri(storage_path: str | None) -> bool:
    return bool(storage_path) and "://" in storage_path


@dataclass(frozen=True)
class Trials:
    """A run's Ray experiment: the folder `path` on the pyarrow `filesystem`. `uri`: the bucket
    it lies under, as given (None: the run directory itself)."""

    filesystem: Any
    path: str
    uri: str | None = None

    @property
    def remote(self) -> bool:
        return self.uri is not None

    def sub(self, name: str) -> Trials:
        return Trials(self.filesystem, f"{self.path}/{name}", self.uri)

    def run_config(self) -> dict[str, Any]:
        """Where a Tuner keeps it: tune.RunConfig's name, storage_path (and storage_filesystem)."""
        parent, _, name = self.path.rpartition("/")
        return {"name": name, "storage_path": parent, **self._filesystem()}

    def restore_args(self) -> dict[str, Any]:
        """Tuner.restore's and Tuner.can_restore's path (and storage_filesystem)."""
        return {"path": self.path, **self._filesystem()}

    def _filesystem(self) -> dict[str, Any]:
        # a local folder as Tune resolves it itself
        return {"storage_filesystem": self.filesystem} if self.remote else {}

    def exists(self) -> bool:
        import pyarrow.fs

        return self.filesystem.get_file_info(self.path).type != pyarrow.fs.FileType.NotFound


def local(run_dir: Path) -> Trials:
    import pyarrow.fs

    return Trials(pyarrow.fs.LocalFileSystem(), str(Path(run_dir).resolve()))


def open_uri(uri: str) -> tuple[Any, str]:
    """The pyarrow filesystem and the path within it of a --storage-path URI, checked by writing
    and deleting a file there: a bucket that does not exist, a server that does not answer or
    credentials it refuses are one line now, not a failure of every trial later."""
    import pyarrow.fs

    query = parse_qs(urlsplit(uri).query)
    if any(key in query for key in SECRETS):
        raise UsageError("--storage-path: no credentials in the URI (run.json records it); set "
                         "them where pyarrow reads them, e.g. AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, on every node")
    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    except (ValueError, OSError, ImportError) as err:
        raise UsageError(f"--storage-path {uri}: {first_line(err)}") from None
    if isinstance(filesystem, pyarrow.fs.LocalFileSystem):
        raise UsageError(f"--storage-path {uri}: give a local folder as a path, not a URI")
    path = path.rstrip("/")
    marker = f"{path}/.writable-{uuid.uuid4().hex}"
    try:
        with filesystem.open_output_stream(marker) as out:
            out.write(b"")
        filesystem.delete_file(marker)
    except OSError as err:
        raise UsageError(f"cannot write to --storage-path {shown(uri)}: "
                         f"{first_line(err)}") from None
    return filesystem, path


def shown(uri: str) -> str:
    """The URI without its query (endpoint and scheme), for messages."""
    return uri.split("?", 1)[0]


def at(run_dir: Path, uri: str | None) -> Trials:
    """Where the run in run_dir keeps its trials: under the bucket `uri` (run.json's "trials"),
    None: in run_dir."""
    if not uri:
        return local(run_dir)
    filesystem, path = open_uri(uri)
    return Trials(filesystem, f"{path}/{run_dir.name}", uri)


def pull(run_dir: Path, trials: Trials) -> int:
    """Copy the trials' small files (PULLED) from the bucket into run_dir, where the reports read
    them; how many. Checkpoints stay where they are. Nothing to do where the trials are in
    run_dir."""
    import pyarrow.fs

    if not trials.remote:
        return 0
    selector = pyarrow.fs.FileSelector(trials.path, recursive=True, allow_not_found=True)
    wanted = [info for info in trials.filesystem.get_file_info(selector)
              if info.type == pyarrow.fs.FileType.File and info.base_name in PULLED]
    for info in wanted:
        target = Path(run_dir) / info.path[len(trials.path) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with trials.filesystem.open_input_stream(info.path) as source:
            data = source.read()
        write_atomic(target, lambda tmp: tmp.write_bytes(data))
    return len(wanted)


def restorable(trials: Trials) -> bool:
    """Tune saved the search's state: tuner.pkl is written when the Tuner is built, the experiment
    state only once the search has run a while."""
    import pyarrow.fs
    from ray.tune import Tuner

    if not Tuner.can_restore(**trials.restore_args()):
        return False
    selector = pyarrow.fs.FileSelector(trials.path, allow_not_found=True)
    return any(info.base_name.startswith("experiment_state-")
               for info in trials.filesystem.get_file_info(selector))


def clear(trials: Trials) -> None:
    """Delete Tune's state and the trial directories of a search stopped before Tune saved its
    state (none of it restorable: Tune never listed those trials)."""
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(trials.path, allow_not_found=True)
    for info in trials.filesystem.get_file_info(selector):
        name = info.base_name
        if name.startswith(TRIAL_DIR_PREFIX) or name == TUNE_STATE[0] or any(
                part in name for part in TUNE_STATE[1:]):
            if info.type == pyarrow.fs.FileType.Directory:
                trials.filesystem.delete_dir(info.path)
            else:
                trials.filesystem.delete_file(info.path)

