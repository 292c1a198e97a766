"""Ray and the Tuner: start or join Ray, build the search's Tuner (or restore it), fit it within
the time budget."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search_spaces import Space
from results.metric import Score
from trainables.cli import UsageError, first_line
from trainables.rundir import TRIAL_DIR_PREFIX
from trainables.task import Task
from tuning.record import storage_dir
from tuning.settings import Settings
from tuning.storage import Trials, is_uri

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds 127.0.0.1, as on a laptop
THREAD_TIMEOUT = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # a reused worker's wait for its last trial
MAX_PENDING = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune queues at once
USER_PENDING = os.environ.get(MAX_PENDING)  # as the user set it, before we did


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


def trial_dirname(trial: Any) -> str:
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"


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


def make_trainable(s: Settings, task: Task, data: Any) -> Any:
    """The trainable with the task and the data (trainables.trainable.TrialData) in Ray's object
    store, once per experiment; a task from a file travels by value. Built right before a Tuner,
    it lets that Tuner start a trial in every slot at once (start_trials_together)."""
    from ray import tune

    from trainables.trainable import train_trial

    task.picklable()
    start_trials_together(s)
    return tune.with_resources(tune.with_parameters(train_trial, task=task, data=data),
                               {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})


def search_tuner(s: Settings, space: Space, run_dir: Path, trials: Trials, checked: Any,
                 data: Any, restore: bool) -> Any:
    """The search's Tuner: StudySearch proposing (its study in run_dir), RaceScheduler stopping,
    one Ray trial per study trial, kept in `trials` (tuning.storage); restored from there, also
    from a run directory moved since. `checked`: what tuning.check found (the task, the compared
    values, trial 0)."""
    from ray import tune

    from tuning.checkpoints import DropCheckpoints
    from tuning.progress import Progress, asha_epochs
    from tuning.scheduler import RaceScheduler
    from tuning.search import SearchPlan, StudySearch, restoring_at
    from tuning.warm import warm_trials

    trainable = make_trainable(s, checked.task, data)
    if restore:
        with restoring_at(run_dir):
            return tune.Tuner.restore(**trials.restore_args(), trainable=trainable,
                                      resume_unfinished=True, resume_errored=True)
    metric = checked.task.metric
    score = Score(f"val_{metric.name}", metric.mode)
    compare = space.compare if checked.choices else None
    plan = SearchPlan(s.space, s.max_epochs, score.column, score.mode, s.seed, s.num_samples,
                      s.grace_period, s.reduction_factor, compare=compare,
                      choices=tuple(checked.choices) if compare else None,
                      baseline=checked.baseline, starts=checked.starts,
                      adaptive=not s.equal_shares,
                      settle=not s.full_budget)
    study = StudySearch(plan, run_dir, run_dir.name, warm=warm_trials(s.warm_start))
    if s.max_concurrent:
        study.set_max_concurrency(s.max_concurrent)
    # each compared value races in its own rungs; the study hears every rung's stop
    scheduler = RaceScheduler(study)
    return tune.Tuner(
        trainable,
        # the study says when it has its samples (StudySearch.suggest), not Ray's counter
        tune_config=tune.TuneConfig(search_alg=study, scheduler=scheduler, num_samples=-1,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            **trials.run_config(),
            failure_config=tune.FailureConfig(max_failures=1),  # e.g. a lost node: retry once
            callbacks=[Progress("search", s.num_samples, score, asha_epochs(
                s.max_epochs, s.grace_period, s.reduction_factor), live=not s.verbose),
                # a trial's older checkpoints, an ended trial's all: tuning.checkpoints
                DropCheckpoints()],
            verbose=1 if s.verbose else 0,  # Ray's tables: --verbose; ours: Progress
        ),
    )


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[threading.Event]:
    """Within it, a Tuner.fit ends after `seconds` as after Ctrl-C: Tune takes SIGUSR1 as it takes
    SIGINT, saves its state and stops the trials where their checkpoints are, so that --resume
    continues them. (Tune's own time_budget_s ends them as finished, and its searcher too, which
    leaves nothing to resume.) The event is set once the time ran out."""
    ran_out = threading.Event()
    if seconds is None:
        yield ran_out
        return
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # outside a fit: nothing to stop

    def stop() -> None:
        ran_out.set()
        os.kill(os.getpid(), signal.SIGUSR1)

    timer = threading.Timer(max(seconds, 0.0), stop)
    timer.daemon = True
    timer.start()
    try:
        yield ran_out
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
