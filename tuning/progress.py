"""A line as each trial ends: trials ended of total, epochs run, the best so far, time left."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from results.metric import Score


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def asha_epochs(max_t: int, grace_period: int, reduction_factor: float) -> float:
    """The epochs ASHA spends on a trial on average: all reach the grace period, a
    1/reduction_factor share of those goes on to each next rung, and so on to max_t."""
    epochs, rung, share = min(grace_period, max_t), grace_period, 1.0
    while rung < max_t:
        share /= reduction_factor
        epochs += share * (min(rung * reduction_factor, max_t) - rung)
        rung *= reduction_factor
    return epochs


class Progress(Callback):
    """Prints one line whenever a trial ends. The time left is the epochs still expected at the
    pace so far (seconds per epoch run, trials running side by side): each trial yet to end
    takes `epochs_per_trial`, or the mean of the ended trials where that is more; a running
    trial takes that less the epochs it has run, one at least."""

    def __init__(self, label: str, total: int, score: Score, epochs_per_trial: float) -> None:
        self.label, self.total, self.score = label, total, score
        self.epochs_per_trial = epochs_per_trial

    def setup(self, **info: Any) -> None:
        self._started = time.monotonic()

    def _ended(self, trial: Any, trials: list[Any]) -> None:
        ended = [t for t in trials if t.status in ("TERMINATED", "ERROR") or t is trial]
        total = max(self.total, len(trials))  # a confirmation's later looks add runs
        epochs = sum(int(t.last_result.get("epoch", 0) or 0) for t in trials)
        scores = [t.last_result.get(self.score.column) for t in ended]
        scores = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
        best = f", best so far {self.score.format(self.score.best(scores))}" if scores else ""
        done = sum(int(t.last_result.get("epoch", 0) or 0) for t in ended)
        per_trial = max(self.epochs_per_trial, done / len(ended))
        running = [int(t.last_result.get("epoch", 0) or 0) for t in trials if t not in ended]
        left = ((total - len(ended) - len(running)) * per_trial
                + sum(max(1.0, per_trial - e) for e in running))
        pace = (time.monotonic() - self._started) / max(1, epochs)
        eta = f", about {_minutes(pace * left)} left" if len(ended) < total else ""
        print(f"[{self.label}] {len(ended)} of {total} trials ended, {epochs} epochs run"
              f"{best}{eta}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, trials)
