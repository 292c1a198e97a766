"""ASHA run as a fair race: each value of the compared hyperparameter has rungs of its own.

Plain ASHA compares every trial with every other at each rung. When one choice starts slower
(SGD with momentum against Adam), it loses at the first rung although it ends as high: ASHA's
short-horizon bias. Here a trial is compared only with trials that share its value of the space's
COMPARE hyperparameter, so every choice has trials trained to the full budget. The baseline trial
(the task's baseline settings) is never stopped: its score is the one the winner is measured
against.

Ray does not save a scheduler's state; a resumed run rebuilds each lane's rungs from the study,
which holds every trial's score at every epoch, so that it stops the trials an uninterrupted run
would have stopped.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from trainables.config import BASELINE
from tuning.checkpoints import checkpoint_gone

if TYPE_CHECKING:
    from tuning.search import StudySearch


def lane(config: dict[str, Any], compare: str | None) -> str | None:
    """The race a trial runs in: its value of `compare` ("all" without one); None for the
    baseline, which runs outside every race."""
    if config.get(BASELINE):
        return None
    return f"{compare}={config.get(compare)!r}" if compare else "all"


class RaceScheduler(FIFOScheduler):
    """One ASHA (time attribute "epoch") per lane. The `study` hears each trial that ASHA stops
    before max_t, so that it can tell it from a trial that ran its course; it also holds the
    scores the rungs are rebuilt from, and the trials that ended, which are not run again."""

    def __init__(self, compare: str | None, metric: str, mode: str, max_t: int, grace_period: int,
                 reduction_factor: float, study: StudySearch | None = None) -> None:
        super().__init__()
        self._compare = compare
        self._metric, self._mode, self._max_t = metric, mode, max_t
        self._asha = dict(time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                          grace_period=grace_period, reduction_factor=reduction_factor)
        self._study = study
        self.lanes: dict[str, AsyncHyperBandScheduler] = {}
        self._lane_of: dict[str, str] = {}  # trial id -> lane, for the trials racing now
        self._catching_up: dict[str, int] = {}  # ended trial id -> the study's last epoch
        self._live: dict[str, Any] = {}  # trial id -> the Ray trial, not ended yet

    def rungs(self) -> dict[str, dict[int, dict[str, float]]]:
        """Each lane's rungs: {lane: {epoch: {trial_id: score recorded there}}}."""
        return {name: {milestone: dict(recorded) for milestone, recorded in asha._brackets[0]._rungs}
                for name, asha in self.lanes.items()}

    def _new_lane(self, name: str) -> AsyncHyperBandScheduler:
        """A lane's ASHA, its rungs holding the scores the study recorded for the lane's trials
        (none in a new run): at each milestone, the score at that epoch, as ASHA records it."""
        asha = AsyncHyperBandScheduler(**self._asha)
        sign = 1 if self._mode == "max" else -1
        for trial_id, config, values in self._study.scores() if self._study else ():
            if lane(config, self._compare) == name:
                for milestone, recorded in asha._brackets[0]._rungs:
                    if milestone in values:
                        recorded[trial_id] = sign * values[milestone]
        return asha

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        follow_moved_run(getattr(tune_controller, "search_alg", None), trial)
        if trial.status not in ("TERMINATED", "ERROR"):
            self._live[trial.trial_id] = trial
        if self._study is not None:
            self._study.saw(trial.trial_id)
        name = lane(trial.config, self._compare)
        if name is None:
            return
        if name not in self.lanes:
            self.lanes[name] = self._new_lane(name)
        self._lane_of[trial.trial_id] = name
        self.lanes[name].on_trial_add(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """FIFO, but a trial the study holds as ended is not run again: after a crash, Ray's last
        snapshot may still list it as running. It is stopped before it starts where Ray has its
        last epoch too; where the crash came between the study's record and Ray's (the study
        is written first), it runs from its checkpoint up to the study's last epoch, so that its
        rows in result.json catch up, and is stopped there (on_trial_result); where its
        checkpoint was deleted (tuning.checkpoints), it is stopped where Ray has it."""
        self._hear_unreported_errors()
        if self._study is not None:
            for trial in tune_controller.get_trials():
                if trial.status != "PENDING" or trial.trial_id in self._catching_up:
                    continue
                ended_at = self._study.ended_at(trial.trial_id)
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
        name = self._lane_of.get(trial.trial_id)
        if name is None:
            return TrialScheduler.CONTINUE
        decision = self.lanes[name].on_trial_result(tune_controller, trial, result)
        epoch = result.get("epoch")
        # a trial that plans fewer epochs (a space comparing epochs) ends its course there
        planned = min(result.get("epochs_planned") or self._max_t, self._max_t)
        if decision == TrialScheduler.STOP and epoch is not None and epoch < planned:
            if self._study is not None:
                self._study.record_stop(trial.trial_id, int(epoch))
        return decision

    def _forget(self, trial_id: str) -> AsyncHyperBandScheduler | None:
        """A trial has ended: no longer live, out of its lane; the lane's ASHA, if it raced."""
        self._live.pop(trial_id, None)
        name = self._lane_of.pop(trial_id, None)
        return None if name is None else self.lanes[name]

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        asha = self._forget(trial.trial_id)
        if asha is not None:
            asha.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        asha = self._forget(trial.trial_id)
        if asha is not None:
            asha.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        asha = self._forget(trial.trial_id)
        if asha is not None:
            asha.on_trial_error(tune_controller, trial)

    def _hear_unreported_errors(self) -> None:
        """A trial that Tune ended ERROR without telling the scheduler or the searcher: Ray 2.60
        does so when an actor it reuses cannot be reset in time (TuneController._on_trial_reset,
        TUNE_FUNCTION_THREAD_TIMEOUT_S), and the study would hold the trial running for ever, the
        search never ending. It is told here as Tune tells a trial that failed."""
        for trial_id, trial in list(self._live.items()):
            if trial.status == "ERROR":
                self._forget(trial_id)
                if self._study is not None:
                    self._study.on_trial_complete(trial_id, error=True)

    def debug_string(self) -> str:
        return "Racing " + ", ".join(f"{name} ({asha._num_stopped} stopped)"
                                     for name, asha in self.lanes.items())


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
