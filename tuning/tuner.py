"""What the phases' Tuners share: the trainable with the task and the data, the Tuner itself,
the trials' directory names, and a fit within the time budget."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from trainables.rundir import TRIAL_DIR_PREFIX
from trainables.task import Task
from tuning.cluster import start_trials_together
from tuning.settings import Settings


def trial_dirname(trial: Any) -> str:
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"


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


def new_tuner(trainable: Any, trials: Any, searcher: Any, scheduler: Any, callbacks: list[Any],
              verbose: bool = False) -> Any:
    """A phase's Tuner, kept in `trials` (tuning.storage.Trials): its searcher says when it has
    its trials (not Ray's counter), workers are reused, a trial that fails (a lost node, say) is
    retried once, and checkpoints are dropped as the run goes (tuning.checkpoints); Ray's own
    tables only where `verbose` (ours: tuning.progress)."""
    from ray import tune

    from tuning.checkpoints import DropCheckpoints

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(**trials.run_config(),
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  callbacks=[*callbacks, DropCheckpoints()],
                                  verbose=1 if verbose else 0))


def left(deadline: float | None) -> float | None:
    """Seconds to the deadline (time.monotonic's), None for none."""
    return None if deadline is None else deadline - time.monotonic()


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
