"""Optuna search that tells the study what really happened to each Ray trial, persisted on disk."""

from __future__ import annotations

import functools
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search_spaces import get_space

logger = logging.getLogger(__name__)
STUDY_FILE = "optuna.journal"


def define_trial(space_name: str, max_epochs: int, settings: dict[str, Any],
                 trial: optuna.Trial) -> dict[str, Any]:
    """The space's define-by-run function plus the run's fixed settings (dataset, model)."""
    fixed = get_space(space_name).define(trial, max_epochs) or {}
    return {**settings, **fixed}


def study_storage(run_dir: Path) -> optuna.storages.JournalStorage:
    """The study's journal file in the run directory, which optuna-dashboard opens as it is."""
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / STUDY_FILE)))


def ended_trials(run_dir: Path, study_name: str) -> tuple[set[str], int]:
    """The Ray trials the study saw end, and how many of its trials are still running. After a
    Ctrl-C, Tune lists the trials it interrupted as terminated; the study knows better."""
    study = optuna.load_study(study_name=study_name, storage=study_storage(run_dir))
    trials = study.get_trials(deepcopy=False)
    ended = {t.user_attrs["ray_trial_id"] for t in trials
             if t.state != TrialState.RUNNING and "ray_trial_id" in t.user_attrs}
    return ended, sum(t.state == TrialState.RUNNING for t in trials)


class StudySearch(OptunaSearch):
    """OptunaSearch whose study matches what happened: trials that ASHA stopped early or that
    diverged end PRUNED with their per-epoch values, errored trials FAIL, and trials that ran
    all their epochs COMPLETE with their best validation score (Ray's OptunaSearch tells every
    stopped trial COMPLETE with the score of the epoch it stopped at)."""

    def __init__(self, space_name: str, max_epochs: int, settings: dict[str, Any], run_dir: Path,
                 metric: str, mode: str, seed: int, study_name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True,
                group=True,  # conditional spaces: momentum exists for sgd only
                constant_liar=True,  # parallel trials: steer away from points already running
            )
        super().__init__(
            space=functools.partial(define_trial, space_name, max_epochs, settings),
            metric=metric, mode=mode, sampler=sampler, study_name=study_name,
            storage=study_storage(run_dir),
        )

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # trials asked for after the last snapshot of this searcher, before a crash, are unknown
        # to Ray and would stay RUNNING in the study for ever
        known = {t._trial_id for t in self._ot_trials.values()}
        storage = self._ot_study._storage
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan._trial_id not in known:
                storage.set_trial_user_attr(orphan._trial_id, "reason", "lost_in_crash")
                storage.set_trial_state_values(orphan._trial_id, TrialState.FAIL)

    def _retry(self, trial_id: str) -> bool:
        """An errored trial that --resume runs again under its Ray id becomes a new Optuna trial
        with the same parameters and the values it reported before it failed."""
        failed = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
        if failed.state != TrialState.FAIL:
            return False
        self._ot_study.enqueue_trial(failed.params, user_attrs={"retry_of": failed.number})
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
        values = self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values.values()
        best = max(values, default=None) if self._mode == "max" else min(values, default=None)
        if error:
            state, value, reason = TrialState.FAIL, None, "errored"
        elif result and result.get("diverged"):
            state, value, reason = TrialState.PRUNED, None, "diverged"
        elif result and result.get("epoch", 0) >= result.get("epochs_planned", math.inf):
            state, value, reason = TrialState.COMPLETE, best, "completed"
        else:
            state, value, reason = TrialState.PRUNED, None, "stopped_early"
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        ot_trial.set_user_attr("reason", reason)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except (ValueError, RuntimeError) as err:  # e.g. already told before a resume
            logger.warning("could not record trial %s in the study: %s", trial_id, err)
        self._completed_trials.add(trial_id)
