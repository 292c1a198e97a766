"""Optuna search that tells the study what really happened to each Ray trial, persisted on disk."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from results.rundir import STUDY_FILE
from search_spaces import get_space
from trainables.config import BASELINE

logger = logging.getLogger(__name__)
ENDED = (TrialState.COMPLETE, TrialState.PRUNED)  # a trial Ray must not run again
LOST = "lost_in_crash"  # the reason of a trial the study handed out that Ray never knew
# what StudySearch.restore rebuilds from the study, and its snapshots therefore leave out
REBUILT = ("_ot_trials", "_completed_trials", "_seen", "_reconciled")
# where a run being restored lies now: tuner.pkl and the searcher's snapshots hold the journal
# path the run was started with, and a run directory may have been moved since
_restoring_at: contextvars.ContextVar[Path | None] = contextvars.ContextVar("restoring_at",
                                                                          default=None)


@contextlib.contextmanager
def restoring_at(run_dir: Path) -> Iterator[None]:
    """Within it, a StudySearch unpickled (Tuner.restore) opens its study in run_dir."""
    token = _restoring_at.set(Path(run_dir))
    try:
        yield
    finally:
        _restoring_at.reset(token)


def define_trial(space: str, max_epochs: int, trial: optuna.Trial) -> dict[str, Any]:
    """The space's define-by-run function (the space by its ref, so that the searcher pickles as
    a name and finds the space again on restore); returns the settings it fixes."""
    return get_space(space).define(trial, max_epochs) or {}


def study_storage(run_dir: Path) -> optuna.storages.JournalStorage:
    """The study's journal file in the run directory, which optuna-dashboard opens as it is."""
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / STUDY_FILE)))


def by_ray_trial(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """Each Ray trial's last study trial (a retry of an errored trial continues it under the same
    Ray id); trials lost in a crash, which Ray never ran, are left out."""
    last = {}
    for trial in study.get_trials(deepcopy=False):
        if "ray_trial_id" in trial.user_attrs and trial.user_attrs.get("reason") != LOST:
            last[trial.user_attrs["ray_trial_id"]] = trial
    return last


def ended_trials(run_dir: Path, study_name: str) -> tuple[set[str], int, set[str]]:
    """The Ray trials the study saw end, how many of its trials are still running, and the Ray
    trials that ended errored (not run again since). After a Ctrl-C or the time budget, Tune lists
    the trials it interrupted as terminated; the study knows better."""
    study = optuna.load_study(study_name=study_name, storage=study_storage(run_dir))
    last = by_ray_trial(study)
    running = sum(t.state == TrialState.RUNNING and t.user_attrs.get("reason") != LOST
                  for t in study.get_trials(deepcopy=False))
    ended = {rid for rid, t in last.items() if t.state != TrialState.RUNNING}
    return ended, running, {rid for rid, t in last.items() if t.state == TrialState.FAIL}


class StudySearch(OptunaSearch):
    """OptunaSearch whose study matches what happened: trials that ASHA stopped (told by
    `record_stop`, also at a rung that was their last planned epoch) or that diverged end PRUNED
    with their per-epoch values, errored trials FAIL, and trials that ASHA let run their course
    COMPLETE with the score of their last epoch, the one their config reproduces when trained
    again (Ray's OptunaSearch tells every stopped trial COMPLETE).

    Trial 0 is the `baseline` (the task's BASELINE) where the space holds it. With `choices`,
    the values of the compared hyperparameter take turns: each new trial takes the value with the
    fewest trials so far (the first in `choices` on a tie), so that every value gets an equal
    share of the trials, give or take one, and TPE tunes the other hyperparameters within each
    value. A comparison at equal budget cannot be starved by TPE leaning early to one value."""

    def __init__(self, space: str, max_epochs: int, run_dir: Path,
                 metric: str, mode: str, seed: int, study_name: str, num_samples: int,
                 compare: str | None = None, choices: list[Any] | None = None,
                 baseline: dict[str, Any] | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True,
                group=True,  # conditional spaces: momentum exists for sgd only
                constant_liar=True,  # parallel trials: steer away from points already running
            )
        super().__init__(
            space=functools.partial(define_trial, space, max_epochs),
            metric=metric, mode=mode, sampler=sampler, study_name=study_name,
            storage=study_storage(run_dir),
        )
        self._compare, self._choices, self._baseline = compare, choices, baseline
        self._asha_stops: dict[str, int] = {}  # trial id -> epoch ASHA stopped it at
        self._run_dir = Path(run_dir)
        self._max_concurrent: int | None = None
        self._num_samples = num_samples
        self._seen: set[str] = set()  # the Ray trials of this process (RaceScheduler.on_trial_add)
        self._reconciled = False

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if _restoring_at.get() is not None:
            self._bind(_restoring_at.get())

    def _bind(self, run_dir: Path) -> None:
        """Read and write the study in run_dir's journal from now on (a moved run directory).
        The storage object is shared by the study and every trial handed out, and it re-reads
        the whole journal after unpickling."""
        self._run_dir = Path(run_dir)
        self._storage._backend = optuna.storages.journal.JournalFileBackend(
            str(self._run_dir / STUDY_FILE))

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """--max-concurrent, kept here rather than in Ray's ConcurrencyLimiter: the limiter
        forgets its trials on restore and then drops the results of a retried one."""
        self._max_concurrent = max_concurrent
        return True

    def saw(self, trial_id: str) -> None:
        """Ray has this trial: restored from its snapshot, or new (tuning.race calls this)."""
        self._seen.add(trial_id)

    def _reconcile(self) -> None:
        """Once Ray has added the trials it restored, before the first new one: a trial the study
        holds as running that Ray does not have was handed out after Ray's last snapshot (or
        after the searcher's, which Ray writes apart) and will never report: it ends FAIL as
        lost_in_crash, and its sample is drawn again."""
        self._reconciled = True
        storage = self._storage
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ray_id = trial.user_attrs.get("ray_trial_id")
            if ray_id not in self._seen:
                storage.set_trial_user_attr(trial._trial_id, "reason", LOST)
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                self._ot_trials.pop(ray_id, None)

    def _samples(self) -> tuple[int, int]:
        """(Ray trials the study has, those still running): the study, not Ray's counter, says
        when the search has its samples, since Ray's snapshots may disagree after a crash."""
        last = by_ray_trial(self._ot_study)
        return len(last), sum(t.state == TrialState.RUNNING for t in last.values())

    def record_stop(self, trial_id: str, epoch: int) -> None:
        """ASHA stopped this trial after `epoch` (tuning.race.RaceScheduler calls this)."""
        self._asha_stops[trial_id] = epoch

    def ended_at(self, trial_id: str) -> int | None:
        """The last epoch the study recorded for this Ray trial where it holds it as COMPLETE or
        PRUNED (0: none, a trial that diverged at once), else None. Ray's snapshot, taken before
        the trial ended, may still list it as running."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            return None
        stored = self._storage.get_trial(ot_trial._trial_id)
        return max(stored.intermediate_values, default=0) if stored.state in ENDED else None

    def scores(self) -> list[tuple[str, dict[str, Any], dict[int, float]]]:
        """(Ray trial id, config, score at each epoch) of every trial the study has, the last
        study trial of each Ray trial winning; what the ASHA rungs are rebuilt from on resume."""
        return [(rid, {**t.params, BASELINE: bool(t.user_attrs.get(BASELINE))},
                 t.intermediate_values) for rid, t in by_ray_trial(self._ot_study).items()]

    def _next_choice(self, trials: list[optuna.trial.FrozenTrial]) -> Any:
        """The compared value whose turn it is: the one with the fewest trials so far."""
        counts = {choice: 0 for choice in self._choices or ()}
        for trial in trials:
            value = trial.params.get(self._compare)
            if value in counts:
                counts[value] += 1
        return min(counts, key=counts.__getitem__) if counts else None

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self._ot_trials:
            if not self._reconciled:
                self._reconcile()
            handed_out, running = self._samples()
            if handed_out >= self._num_samples:  # wait for the last to end, then say so
                return Searcher.FINISHED if not running else None
            live = len(self._ot_trials.keys() - self._completed_trials)
            if self._max_concurrent and live >= self._max_concurrent:
                return None
            trials = self._ot_study.get_trials(deepcopy=False)
            turn = self._next_choice(trials)
            if self._baseline and not trials:
                self._ot_study.enqueue_trial(self._baseline, user_attrs={BASELINE: True})
            elif turn is not None:
                self._ot_study.enqueue_trial({self._compare: turn})
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            ot_trial = self._ot_trials[trial_id]
            # at once, so that a run cut before the trial ends can be matched with Ray's trials
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            if ot_trial.user_attrs.get(BASELINE):
                config[BASELINE] = True
        return config

    def save(self, checkpoint_path: str) -> None:
        """Ray's snapshot of the searcher (at every snapshot of the experiment), without what
        restore rebuilds from the study: a trial object for every Ray trial made each snapshot
        grow with the trials run."""
        state = {k: v for k, v in self.__dict__.items() if k not in REBUILT}
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str) -> None:
        """The sampler's state from the snapshot; which Ray trial is which study trial, and which
        have ended, from the study: written at once, it is newer than any snapshot (a trial told
        COMPLETE, PRUNED or FAIL just before a crash is still running in the snapshot)."""
        run_dir = getattr(self, "_run_dir", None)  # where the run lies now
        super().restore(checkpoint_path)
        if run_dir is not None:
            self._bind(run_dir)
        handed_out = by_ray_trial(self._ot_study)
        # snapshots before REBUILT was left out hold the trial objects
        kept = {ot._trial_id: ot for ot in getattr(self, "_ot_trials", {}).values()}
        self._ot_trials = {rid: kept.get(t._trial_id) or optuna.trial.Trial(self._ot_study,
                                                                           t._trial_id)
                           for rid, t in handed_out.items()}
        self._completed_trials = {rid for rid, t in handed_out.items()
                                  if t.state != TrialState.RUNNING}
        self._seen, self._reconciled = set(), False

    def _retry(self, trial_id: str) -> bool:
        """An errored trial that --resume runs again under its Ray id becomes a new Optuna trial
        with the same parameters and the values it reported before it failed."""
        failed = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
        if failed.state != TrialState.FAIL:
            return False
        self._ot_study.enqueue_trial(failed.params, user_attrs={"retry_of": failed.number,
                                                                "ray_trial_id": trial_id})
        retry = self._ot_study.ask()
        self._space(retry)  # suggests the enqueued parameters again, recording their distributions
        for step, value in failed.intermediate_values.items():
            retry.report(value, step)
        self._ot_trials[trial_id] = retry
        self._completed_trials.discard(trial_id)
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self._ot_trials:
            return
        if trial_id in self._completed_trials and not self._retry(trial_id):
            return
        value = result.get(self.metric)
        if value is not None and math.isfinite(value):
            self._ot_trials[trial_id].report(value, int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._ot_trials:
            return
        if trial_id in self._completed_trials and not (result and self._retry(trial_id)):
            return
        ot_trial = self._ot_trials[trial_id]
        reported = self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values
        if result and result.get("epoch") not in reported:
            # Ray hands a trial's last result to on_trial_complete only
            self.on_trial_result(trial_id, result)
        values = self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values
        last = values[max(values)] if values else None
        if error:
            state, value, reason = TrialState.FAIL, None, "errored"
        elif result and result.get("diverged"):
            state, value, reason = TrialState.PRUNED, None, "diverged"
        elif trial_id in self._asha_stops:
            state, value, reason = TrialState.PRUNED, None, "stopped_by_asha"
        elif result and result.get("epoch", 0) >= result.get("epochs_planned", math.inf):
            state, value, reason = TrialState.COMPLETE, last, "completed"
        else:  # e.g. --max-epochs below the epochs the space planned
            state, value, reason = TrialState.PRUNED, None, "stopped_early"
        try:
            ot_trial.set_user_attr("ray_trial_id", trial_id)
            ot_trial.set_user_attr("reason", reason)
            self._ot_study.tell(ot_trial, value, state=state)
        except (ValueError, RuntimeError) as err:  # e.g. already told before a resume
            logger.warning("could not record trial %s in the study: %s", trial_id, err)
        self._completed_trials.add(trial_id)
