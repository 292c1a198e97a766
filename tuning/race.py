"""ASHA run as a fair race: each value of the compared hyperparameter has rungs of its own.

Plain ASHA compares every trial with every other at each rung. When one choice starts slower
(SGD with momentum against Adam), it loses at the first rung although it ends as high: ASHA's
short-horizon bias. Here a trial is compared only with trials that share its value of the space's
COMPARE hyperparameter, so every choice has trials trained to the full budget. The baseline trial
(the tutorial's settings) is never stopped: its score is the one the winner is measured against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from trainables.config import BASELINE


def lane(config: dict[str, Any], compare: str | None) -> str | None:
    """The race a trial runs in: its value of `compare` ("all" without one); None for the
    baseline, which runs outside every race."""
    if config.get(BASELINE):
        return None
    return f"{compare}={config.get(compare)!r}" if compare else "all"


class RaceScheduler(FIFOScheduler):
    """One ASHA (time attribute "epoch") per lane; `on_stop(trial_id, epoch)` hears each trial
    that ASHA stops before max_t, so that the study can tell it from a trial that ran its course."""

    def __init__(self, compare: str | None, metric: str, mode: str, max_t: int, grace_period: int,
                 reduction_factor: float,
                 on_stop: Callable[[str, int], None] | None = None) -> None:
        super().__init__()
        self._compare = compare
        self._metric, self._max_t = metric, max_t
        self._asha = dict(time_attr="epoch", metric=metric, mode=mode, max_t=max_t,
                          grace_period=grace_period, reduction_factor=reduction_factor)
        self._on_stop = on_stop
        self.lanes: dict[str, AsyncHyperBandScheduler] = {}
        self._lane_of: dict[str, str] = {}  # trial id -> lane, for the trials racing now

    def rungs(self) -> dict[str, dict[int, dict[str, float]]]:
        """Each lane's rungs: {lane: {epoch: {trial_id: score recorded there}}}."""
        return {name: {milestone: dict(recorded) for milestone, recorded in asha._brackets[0]._rungs}
                for name, asha in self.lanes.items()}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        name = lane(trial.config, self._compare)
        if name is None:
            return
        if name not in self.lanes:
            self.lanes[name] = AsyncHyperBandScheduler(**self._asha)
        self._lane_of[trial.trial_id] = name
        self.lanes[name].on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        name = self._lane_of.get(trial.trial_id)
        if name is None:
            return TrialScheduler.CONTINUE
        decision = self.lanes[name].on_trial_result(tune_controller, trial, result)
        epoch = result.get("epoch")
        if decision == TrialScheduler.STOP and epoch is not None and epoch < self._max_t:
            if self._on_stop is not None:
                self._on_stop(trial.trial_id, int(epoch))
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        name = self._lane_of.pop(trial.trial_id, None)
        if name is not None:
            self.lanes[name].on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        name = self._lane_of.pop(trial.trial_id, None)
        if name is not None:
            self.lanes[name].on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "Racing " + ", ".join(f"{name} ({asha._num_stopped} stopped)"
                                     for name, asha in self.lanes.items())
