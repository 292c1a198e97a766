"""The race as Ray Tune's scheduler: trials run first in, first out, each result judged by its
lane's rungs (tuning.race); after a crash, a trial the study holds as ended is not run again."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tuning.checkpoints import checkpoint_gone
from tuning.race import Race

if TYPE_CHECKING:
    from tuning.searcher import StudySearch


class HearsErrors(FIFOScheduler):
    """First in, first out; and a trial that Tune ended ERROR without telling the scheduler or
    the searcher is told to `searcher` as Tune tells a trial that failed. Ray 2.60 ends a trial
    so when an actor it reuses cannot be reset in time (TuneController._on_trial_reset,
    TUNE_FUNCTION_THREAD_TIMEOUT_S): the searcher would wait for it for ever."""

    def __init__(self, searcher: Any = None) -> None:
        super().__init__()
        self._searcher = searcher
        self._live: dict[str, Any] = {}  # trial id -> the Ray trial, not ended yet

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if trial.status not in ("TERMINATED", "ERROR"):
            self._live[trial.trial_id] = trial

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        self._hear_unreported_errors()
        return super().choose_trial_to_run(tune_controller)

    def _forget(self, trial_id: str) -> None:
        self._live.pop(trial_id, None)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._forget(trial.trial_id)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._forget(trial.trial_id)

    def _hear_unreported_errors(self) -> None:
        for trial_id, trial in list(self._live.items()):
            if trial.status == "ERROR":
                self._forget(trial_id)
                if self._searcher is not None:
                    self._searcher.on_trial_complete(trial_id, error=True)


class RaceScheduler(HearsErrors):
    """The race as Ray Tune's scheduler: trials run first in, first out; each result is judged by
    its lane's rungs (Race.judge); once the search has settled, the trials running or waiting
    stop at their next epoch (Race.stops_settled). `search` (the run's StudySearch) holds the
    race, hears each trial a rung stops before its planned end, so that it can tell it from one
    that ran its course, and knows the trials that ended, which are not run again. Without a
    search (`race` given instead) it is plain ASHA per lane."""

    def __init__(self, search: StudySearch | None = None, race: Race | None = None,
                 metric: str | None = None) -> None:
        super().__init__(search)
        self._search, self._race = search, race
        self._score = metric or search.metric  # the column each epoch is judged by
        self._catching_up: dict[str, int] = {}  # ended trial id -> the study's last epoch

    @property
    def race(self) -> Race:
        # the search's, looked up each time: a restored search rebuilds its race
        return self._search.race if self._search is not None else self._race

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        follow_moved_run(getattr(tune_controller, "search_alg", None), trial)
        super().on_trial_add(tune_controller, trial)
        if self._search is not None:
            self._search.saw(trial.trial_id)
        self.race.add(trial.trial_id, trial.config)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """First in, first out, but a trial the study holds as ended is not run again: after a
        crash, Ray's last snapshot may still list it as running. It is stopped before it starts
        where Ray has its last epoch too; where the crash came between the study's record and
        Ray's (the study is written first), it runs from its checkpoint up to the study's last
        epoch, so that its rows in result.json catch up, and is stopped there
        (on_trial_result); where its checkpoint was deleted (tuning.checkpoints), it is stopped
        where Ray has it."""
        self._hear_unreported_errors()
        for trial in tune_controller.get_trials():
            if trial.status != "PENDING" or trial.trial_id in self._catching_up:
                continue
            ended_at = self._search.ended_at(trial.trial_id) if self._search else None
            if ended_at is None:
                continue
            if (int(trial.last_result.get("epoch", 0) or 0) >= ended_at
                    or checkpoint_gone(trial)):  # nothing to catch up from
                tune_controller.stop_trial(trial)
            else:
                self._catching_up[trial.trial_id] = ended_at
        return super().choose_trial_to_run(tune_controller)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if result.get("epoch", 0) >= self._catching_up.get(trial.trial_id, float("inf")):
            return TrialScheduler.STOP  # as the study has it already
        epoch, score = result.get("epoch"), result.get(self._score)
        planned = min(result.get("epochs_planned") or self.race.max_t, self.race.max_t)
        if (self._search is not None and epoch is not None and epoch < planned
                and self.race.stops_settled(trial.trial_id)):
            self._search.record_stop(trial.trial_id, int(epoch), settled=True)
            return TrialScheduler.STOP
        if epoch is None or score is None or result.get("diverged"):  # a diverged trial ends
            return TrialScheduler.CONTINUE
        if self.race.judge(trial.trial_id, int(epoch), float(score)):
            return TrialScheduler.CONTINUE
        # a trial that plans fewer epochs (a space comparing epochs) ends its course there
        if epoch < planned and self._search is not None:
            self._search.record_stop(trial.trial_id, int(epoch))
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return "Racing " + ", ".join(
            f"{key}{' (dropped)' if lane.dropped else ''}" for key, lane in self.race.lanes.items())


def follow_moved_run(search_alg: Any, trial: Any) -> None:
    """Trials created after a run directory was moved go where the restored ones go. Tune
    restores its search generator with the storage the experiment was started in, and new
    trials would fail to set up storage at the old path (Ray 2.60); this points it where Tune
    points the restored trials, as Tune itself does for those."""
    experiment = getattr(search_alg, "_experiment", None)
    storage = experiment.spec.get("storage") if experiment is not None else None
    if storage is None or storage.experiment_fs_path == trial.storage.experiment_fs_path:
        return
    moved = copy.copy(storage)
    moved.storage_filesystem = trial.storage.storage_filesystem
    moved.storage_fs_path = trial.storage.storage_fs_path
    moved.experiment_dir_name = trial.storage.experiment_dir_name
    experiment.spec["storage"] = moved
