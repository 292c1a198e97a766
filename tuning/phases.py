"""A run's two phases: the search, then the confirmation over seeds. Each records in run.json how
it ended, so that --resume knows where to go on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from results.metric import Score
from search_spaces import Space
from tuning import record, storage
from tuning.settings import Settings
from tuning.storage import Trials
from tuning.tuner import make_trainable, search_tuner, time_limit, trial_dirname


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def search(s: Settings, space: Space, run_dir: Path, trials: Trials, run: dict, checked: Any,
           data: Any, deadline: float | None, restore: bool) -> None:
    """The search phase, restored where Ray saved it; on to confirmation (run["phase"]) once
    every trial has ended."""
    from tuning.checkpoints import drop_ended
    from tuning.search import ended_trials, search_done

    started = time.perf_counter()
    with time_limit(_left(deadline)) as ran_out:
        search_tuner(s, space, run_dir, trials, checked, data, restore).fit()
    storage.pull(run_dir, trials)
    ended, running, errored = ended_trials(run_dir, run["study_name"])
    # Tune's last snapshot lists them as ended: no resume runs them on (tuning.checkpoints)
    drop_ended(trials, ended - errored)
    if search_done(run_dir, run["study_name"], run["num_samples"]):
        status, advice = "finished", ""
    elif ran_out.is_set():
        status, advice = "stopped_at_time_budget", "; the time budget ran out: --resume continues"
    else:
        status, advice = "interrupted", "; interrupted: continue with --resume"
    if status == "finished" and run.get("confirm_seeds"):
        status, run["phase"] = "running", "confirm"
    run.update(status=status, finished_at=record.now())
    record.spent(run, "search_seconds", time.perf_counter() - started)
    record.write(run_dir, run)
    print(f"\n{len(ended)} of {run['num_samples']} trials ended ({len(errored)} errored), "
          f"{running} cut short{advice}.")


def confirm(s: Settings, run_dir: Path, trials: Trials, run: dict, checked: Any, data: Any,
            deadline: float | None) -> None:
    """Train the best config of each compared choice again with more seeds, a look at a time
    (tuning.confirm)."""
    from results.confirmation import looks_of
    from trainables.rundir import CONFIRM_DIR
    from tuning.checkpoints import drop_ended
    from tuning.confirm import Looks, build_confirmation, candidates_of, finished
    from tuning.progress import Progress

    configs, rows, recorded = candidates_of(run_dir)
    searcher = Looks(configs, rows, recorded)
    looks = looks_of(run)
    more = f", up to {looks[-1]} while a verdict is open" if len(looks) > 1 else ""
    print(f"\nConfirmation: {len(configs)} configs, {looks[0]} runs each counting the search's "
          f"own{more}")
    started = time.perf_counter()
    left = _left(deadline)
    if configs and (left is None or left > 0) and searcher.left():
        planned = max(1, searcher.queued())
        callbacks = [Progress("confirmation", planned, Score.of(run), s.max_epochs,
                                live=not s.verbose)]
        runs = trials.sub(CONFIRM_DIR)
        tuner = build_confirmation(runs, make_trainable(s, checked.task, data), searcher,
                                   s.resume and runs.exists(), callbacks, trial_dirname)
        with time_limit(left):
            tuner.fit()
        storage.pull(run_dir / CONFIRM_DIR, runs)
    done = finished(run_dir)
    if done:  # nothing resumes them any more (tuning.checkpoints)
        drop_ended(trials.sub(CONFIRM_DIR))
    status = "finished" if done else (
        "stopped_at_time_budget" if deadline is not None and _left(deadline) <= 0 else "interrupted")
    run.update(status=status, finished_at=record.now())
    record.spent(run, "confirm_seconds", time.perf_counter() - started)
    record.write(run_dir, run)
    if not done:
        print(f"Confirmation {status.replace('_', ' ')}: continue with --resume.")
