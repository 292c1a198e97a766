"""The search phase: StudySearch proposing (tuning.searcher), RaceScheduler stopping, one Ray
trial per study trial; restored where Ray saved it, and recorded in run.json as it ends, so that
--resume knows where to go on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from results.metric import Score
from results.study import SETTLED, by_ray_trial, journal
from search_spaces import Space
from tuning import record, storage
from tuning.settings import Settings
from tuning.storage import Trials
from tuning.tuner import left, make_trainable, time_limit, trial_dirname


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
    from tuning.searcher import SearchPlan, StudySearch, restoring_at
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


def search(s: Settings, space: Space, run_dir: Path, trials: Trials, run: dict, checked: Any,
           data: Any, deadline: float | None, restore: bool) -> None:
    """The search phase, restored where Ray saved it; on to confirmation (run["phase"]) once
    every trial has ended."""
    from tuning.checkpoints import drop_ended

    started = time.perf_counter()
    with time_limit(left(deadline)) as ran_out:
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
