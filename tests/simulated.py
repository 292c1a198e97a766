"""Hand-made learning curves raced by tuning.race.Race, with random proposals: for testing the
elimination rule and the settled stop many times over in a moment.

Each lane draws a trial's final score as its `top` less a half-normal gap of sd `spread`; the
trial's curve rises to it as final - (final - 0.1) * exp(-epoch / 1.5), plus noise of sd `noise`
at every epoch; a lane with a `delay` (a slow starter, as SGD warming up) stays at 0.1 for that
many epochs before it starts to rise; `improve` raises a lane's top by that much with each of its
trials (a search that keeps finding better configs). Trials run `slots` at a
time, an epoch a time unit."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from tuning.race import Race


@dataclass
class Raced:
    dropped: dict[str, int] = field(default_factory=dict)  # lane -> trials handed out when dropped
    settled_after: int | None = None  # trials handed out when it settled
    trials: dict[str, int] = field(default_factory=dict)  # lane -> trials it got
    epochs: int = 0


def simulate_race(rng: np.random.Generator, tops: dict[str, float], spread: float = 0.03,
                  noise: float = 0.004, delay: dict[str, int] | None = None, budget: int = 24,
                  max_t: int = 12, grace: int = 2, reduction: int = 3, slots: int = 2,
                  adaptive: bool = True, settle: bool = True, improve: float = 0.0) -> Raced:
    race = Race("optimizer", list(tops), "max", max_t, grace, reduction, adaptive=adaptive)
    for lane in race.lanes.values():
        lane.least = 3  # as for a lane that tunes two hyperparameters
    delay = delay or {}
    out, events, curves, handed = Raced(), [], {}, 0
    now = 0.0

    def start() -> None:
        nonlocal handed
        value = race.next_value()
        trial_id = f"t{handed}"
        handed += 1
        race.add(trial_id, {"optimizer": value, "epochs": max_t})
        final = tops[value] + improve * out.trials.get(value, 0) - abs(rng.normal(0, spread))
        epochs = np.maximum(np.arange(1, max_t + 1) - delay.get(value, 0), 0)
        curves[trial_id] = (final - (final - 0.1) * np.exp(-epochs / 1.5)
                            + rng.normal(0, noise, max_t), {})
        out.trials[value] = out.trials.get(value, 0) + 1
        heapq.heappush(events, (now + 1, trial_id, 1))

    for _ in range(slots):
        start()
    while events:
        now, trial_id, epoch = heapq.heappop(events)
        curve, heard = curves[trial_id]
        heard[epoch] = float(curve[epoch - 1])
        out.epochs += 1
        if race.stops_settled(trial_id) and epoch < max_t:  # running when the search settled
            race.finish(trial_id, heard, completed=False)
            continue
        keep = race.judge(trial_id, epoch, heard[epoch])
        if keep and epoch < max_t:
            heapq.heappush(events, (now + 1, trial_id, epoch + 1))
            continue
        race.finish(trial_id, heard, completed=epoch >= max_t)
        for lane in race.update(handed):
            out.dropped[lane.value] = handed
        if settle and out.settled_after is None and race.settled(handed, budget):
            out.settled_after = handed
        if handed < budget and out.settled_after is None:
            start()
    return out
