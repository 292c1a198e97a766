"""Ray, started or joined, for a run of ours: the environment it is started with, the cluster's
checks (a trial fits on some node, every node sees the storage), and how many trials run at
once."""

from __future__ import annotations

import os
from pathlib import Path

from trainables.cli import UsageError, first_line
from tuning.record import storage_dir
from tuning.settings import Settings
from tuning.storage import is_uri

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds 127.0.0.1, as on a laptop
THREAD_TIMEOUT = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # a reused worker's wait for its last trial
MAX_PENDING = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune queues at once
USER_PENDING = os.environ.get(MAX_PENDING)  # as the user set it, before we did


def quiet(address: str | None, verbose: bool = False) -> None:
    """Optuna's and Ray's settings for a run of ours, before either starts."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray Tune's console (a box of the experiment's settings, its status tables) only with
    # --verbose: its older output engine prints nothing at verbose=0, the newer one that box
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    if not (address or os.environ.get("RAY_ADDRESS")):
        # a Ray of our own listens on the loopback address only; read when ray is first imported
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    # Ray's warning that the snapshot after each epoch's checkpoint is slow is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # seconds a reused worker waits for its last trial's thread to end (Ray's default 2 s fails
    # trials on a busy machine); read in the workers, which a Ray of our own starts with this
    # environment, and which join_or_start hands to a cluster's
    os.environ.setdefault(THREAD_TIMEOUT, "60")


def join_or_start(address: str | None, verbose: bool = False) -> None:
    """Join the Ray cluster at `address`, or start a Ray of our own; Ray's own lines (start-up,
    the experiment's state written) only where `verbose`."""
    import logging

    import ray

    level = logging.INFO if verbose else logging.ERROR
    logging.getLogger("ray.tune").setLevel(logging.INFO if verbose else logging.WARNING)
    if address:
        try:
            ray.init(address=address, log_to_driver=True, logging_level=level,
                     runtime_env={"env_vars": {
                THREAD_TIMEOUT: os.environ.get(THREAD_TIMEOUT, "60")}})
        except Exception as err:  # ray raises ConnectionError, RuntimeError, ValueError here
            raise UsageError(f"cannot join the Ray cluster at {address}: "
                             f"{first_line(err)}") from None
    else:
        # "local": always a fresh instance, never a cluster some other process left running
        ray.init(address="local", include_dashboard=False, logging_level=level)


def start_ray(s: Settings) -> float:
    """Join --address (or start a Ray of our own) and check that a trial fits on some node;
    the GPUs per trial, resolved."""
    import ray

    if not ray.is_initialized():  # tuning.tune() again in one process: the Ray it started
        join_or_start(s.address, s.verbose)
    gpus_available = ray.cluster_resources().get("GPU", 0)
    gpus = s.gpus_per_trial if s.gpus_per_trial is not None else float(bool(gpus_available))
    if gpus > 0 and not gpus_available:
        ray.shutdown()
        raise UsageError(f"--gpus-per-trial {gpus:g} asked for, but the Ray cluster has no GPUs; "
                         "pass --gpus-per-trial 0")
    # a trial no node can hold would wait for ever on Ray's insufficient-resources warning
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for flag, key, want in (("--cpus-per-trial", "CPU", s.cpus_per_trial),
                            ("--gpus-per-trial", "GPU", gpus)):
        most = max((n.get(key, 0) for n in nodes), default=0)
        if want > most:
            ray.shutdown()
            raise UsageError(f"{flag} {want:g} is more than any node of the Ray cluster has "
                             f"({most:g} {key}s)")
    if s.address and len(nodes) > 1 and not is_uri(s.storage_path):  # a bucket: tuning.storage
        check_shared_storage(storage_dir(s.storage_path))
    return gpus


def check_shared_storage(storage: Path) -> None:
    """Every node of the cluster sees --storage-path: trials on a node that does not would each
    fail to set up their storage, one by one, long after the run started."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f".shared-{uuid.uuid4().hex}"
    marker.touch()
    sees = ray.remote(num_cpus=0)(os.path.exists)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    try:
        seen = ray.get([sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(str(marker)) for node in nodes], timeout=120)
    finally:
        marker.unlink()
    blind = sum(not ok for ok in seen)
    if blind:
        ray.shutdown()
        raise UsageError(f"--storage-path {storage} is not shared: {blind} of {len(nodes)} nodes "
                         "of the Ray cluster do not see it; give a folder every node mounts at "
                         "the same path")


def trial_slots(s: Settings) -> int:
    """How many trials the Ray cluster runs at once: its CPUs (and GPUs) over a trial's, at most
    --max-concurrent."""
    import ray

    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // s.cpus_per_trial)
    if s.gpus_per_trial:
        slots = min(slots, int(resources.get("GPU", 0) // s.gpus_per_trial))
    return max(1, min(slots, s.max_concurrent or slots))


def start_trials_together(s: Settings) -> None:
    """Let Tune queue a trial for every slot of the cluster. With a searcher other than its own,
    Tune keeps one trial pending at a time unless TUNE_MAX_PENDING_TRIALS_PG says otherwise (Ray
    2.60's _get_max_pending_trials), so that on a large cluster the trials start one after
    another. A value the user set is kept."""
    if USER_PENDING is None:
        os.environ[MAX_PENDING] = str(trial_slots(s))
