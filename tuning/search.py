"""The search phase: StudySearch proposing (tuning.searcher), RaceScheduler stopping, one Ray
trial per study trial; restored where Ray saved it, and recorded in run.json as it ends, so that
--resume knows where to go on."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from results.study import SETTLED, by_ray_trial, journal
from trainables.rundir import Phase, Status
from tuning import storage
from tuning.dry_run import Checked
from tuning.record import Run
from tuning.tuner import left, make_trainable, new_tuner, time_limit


def ended_trials(run_dir: Path, study_name: str) -> tuple[set[str], int, set[str]]:
    """The Ray trials the study saw end, how many of its trials are still running, and the Ray
    trials that ended errored (not run again since). After a Ctrl-C or the time budget, Tune lists
    the trials it interrupted as terminated; the study knows better."""
    study = optuna.load_study(study_name=study_name, storage=journal(run_dir))
    last = by_ray_trial(study)
    running = sum(t.state == TrialState.RUNNING for t in last.values())
    ended = {rid for rid, t in last.items() if t.state != TrialState.RUNNING}
    return ended, running, {rid for rid, t in last.items() if t.state == TrialState.FAIL}


def search_done(run_dir: Path, study_name: str, num_samples: int) -> bool:
    """Every trial the search planned has ended, or it settled before its budget and every
    trial it started has ended."""
    study = optuna.load_study(study_name=study_name, storage=journal(run_dir))
    last = by_ray_trial(study)
    if any(t.state == TrialState.RUNNING for t in last.values()):
        return False
    return len(last) >= num_samples or SETTLED in study.user_attrs


def search_tuner(run: Run, checked: Checked, data: Any, restore: bool) -> Any:
    """The search's Tuner: StudySearch proposing (its study in the run directory), RaceScheduler
    stopping, one Ray trial per study trial, kept where the run keeps its trials
    (tuning.storage); restored from there, also from a run directory moved since. `checked`:
    what tuning.dry_run found (the task, the compared values, trial 0, the starts)."""
    from ray import tune

    from tuning import tracking
    from tuning.cluster import trial_slots
    from tuning.progress import Progress, asha_epochs
    from tuning.scheduler import RaceScheduler
    from tuning.searcher import SearchPlan, StudySearch, restoring_at
    from tuning.warm import warm_trials

    s, trials = run.settings, run.trials
    trainable = make_trainable(s, checked.task, data)
    if restore:
        with restoring_at(run.dir):
            return tune.Tuner.restore(**trials.restore_args(), trainable=trainable,
                                      resume_unfinished=True, resume_errored=True)
    plan = SearchPlan(s.space, s.max_epochs, run.metric, run.mode, s.seed, s.num_samples,
                      s.grace_period, s.reduction_factor, compare=checked.compare,
                      choices=tuple(checked.choices) if checked.compare else None,
                      baseline=checked.baseline, starts=checked.starts,
                      adaptive=not s.equal_shares, settle=not s.full_budget)
    study = StudySearch(plan, run.dir, run.study_name, warm=warm_trials(s.warm_start))
    study.set_slots(functools.partial(trial_slots, s))  # each trial proposed as a slot frees
    progress = Progress("search", s.num_samples, run.score, asha_epochs(
        s.max_epochs, s.grace_period, s.reduction_factor), live=not s.verbose)
    # each compared value races in its own rungs, and the study hears every rung's stop
    return new_tuner(trainable, trials, study, RaceScheduler(study),
                     [progress, *tracking.callbacks(run.dir, "search")], s.verbose)


def search(run: Run, checked: Checked, data: Any, deadline: float | None, restore: bool
           ) -> None:
    """The search phase, restored where Ray saved it; on to confirmation (Phase.CONFIRM) once
    every trial has ended."""
    from tuning.checkpoints import drop_ended

    started = time.perf_counter()
    with time_limit(left(deadline)) as ran_out:
        search_tuner(run, checked, data, restore).fit()
    storage.pull(run.dir, run.trials)
    ended, running, errored = ended_trials(run.dir, run.study_name)
    done = search_done(run.dir, run.study_name, run.settings.num_samples)
    # Tune's last snapshot lists them as ended: no resume runs them on (tuning.checkpoints); once
    # the search is done, neither does one run a trial that a crash lost after its first
    # checkpoint, before Tune's snapshot listed it: only an errored trial is retried
    drop_ended(run.trials, None if done else ended - errored, keep=errored)
    phase = None
    if done:
        status, advice = Status.FINISHED, ""
        if run.settings.confirm_seeds:
            status, phase = Status.RUNNING, Phase.CONFIRM
    elif ran_out.is_set():
        status, advice = Status.TIME_BUDGET, "; the time budget ran out: --resume continues"
    else:
        status, advice = Status.INTERRUPTED, "; interrupted: continue with --resume"
    run.end(status, "search_seconds", time.perf_counter() - started, phase)
    print(f"{len(ended)} of {run.settings.num_samples} trials ended ({len(errored)} errored), "
          f"{running} cut short{advice}.")
