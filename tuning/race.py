"""The race: each value of the space's COMPARE hyperparameter runs in a lane of its own, with ASHA
rungs of its own, and the lanes share the search's trials by their standing.

Rungs. Plain ASHA compares every trial with every other at each rung. When one value starts slower
(SGD with momentum against Adam), it loses at the first rung although it ends as high: ASHA's
short-horizon bias. Here a trial is compared only with the trials of its own lane, at the same
milestones as Ray's AsyncHyperBandScheduler with one bracket (grace period x reduction factor^k
below max_t), so that every value has trials trained to its full budget. The baseline trial (the
task's baseline settings) runs outside every lane and is never stopped: its score is the one the
winner is measured against.

Sharing. A new trial goes to the contending lane with the fewest trials (the baseline counts in
its value's share). A lane drops out once it is behind (`behind`): it gets no new trials, its
running trials finish their rungs, and the lanes still contending share what it would have had.

Settled. The search can stop before its budget once its answer would not move (`settled`): it
hands out no more trials, and stops those running or waiting to run (`Race.stops_settled`) but
the baseline, as a Ray Tune stopper's stop_all ends an experiment.

The race knows nothing of Ray: tuning.scheduler is Ray Tune's scheduler that runs it. Ray does not
save a scheduler's state: a resumed run rebuilds the rungs from the study, which holds every
trial's score at every epoch, and the lanes' standing from what the study recorded of the race
(tuning.searcher), so that it stops the trials an uninterrupted run would have stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainables.config import BASELINE

# Dropping a lane (`behind`): the trials that ran in full each lane needs first, the window its
# rise is measured over, and the spreads of final scores its best must trail the leader's by
MIN_FINALS, RISE_WINDOW, BOUND_WIDTHS = 2, 3, 4.0
# the noise of a trial's final score: the jitter of its last epochs (Race.noise)
JITTER_EPOCHS = 4
# settled (`settled`): the share of the trial budget that must have ended, and the window of a
# lane's last ended trials over which its best scores must not have risen
SETTLE_SHARE, SETTLE_WINDOW = 0.5, 3


def name(value: Any, compare: str | None) -> str:
    """A lane's name: 'optimizer='adam'', or 'all' where the space compares nothing."""
    return f"{compare}={value!r}" if compare else "all"


def milestones(max_t: int, grace_period: int, reduction_factor: float) -> tuple[int, ...]:
    """ASHA's rungs, ascending: grace_period x reduction_factor^k, as many as Ray's
    AsyncHyperBandScheduler makes for one bracket."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return tuple(int(grace_period * reduction_factor ** k) for k in range(count))


@dataclass
class Rungs:
    """One lane's ASHA rungs: at each milestone, the score of every trial that reached it (signed:
    higher is better). A trial below the cut-off of the rung it reaches (the top 1/reduction_factor
    of the scores recorded there before it) is stopped."""

    milestones: tuple[int, ...]
    reduction_factor: float
    recorded: dict[int, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for milestone in self.milestones:
            self.recorded.setdefault(milestone, {})

    def cutoff(self, milestone: int) -> float | None:
        scores = [s for s in self.recorded[milestone].values() if not math.isnan(s)]
        return float(np.percentile(scores, (1 - 1 / self.reduction_factor) * 100)) if scores \
            else None

    def judge(self, trial_id: str, epoch: int, score: float) -> bool:
        """Record the score at the deepest milestone the trial reached and was not recorded at;
        False where it falls below that rung's cut-off."""
        for milestone in reversed(self.milestones):
            if epoch < milestone or trial_id in self.recorded[milestone]:
                continue
            cut = self.cutoff(milestone)
            self.recorded[milestone][trial_id] = score
            return cut is None or math.isnan(score) or score >= cut
        return True


@dataclass
class Lane:
    key: str  # its name (`name`)
    value: Any
    rungs: Rungs
    trials: list[str] = field(default_factory=list)  # handed out, the baseline among them
    planned: set[int] = field(default_factory=set)  # the epochs its trials plan
    finals: dict[str, float] = field(default_factory=dict)  # ran its planned epochs: signed score
    curves: dict[str, list[float]] = field(default_factory=dict)  # theirs, epoch by epoch
    best: list[float] = field(default_factory=list)  # the best final after each of its trials ended
    first: list[float] = field(default_factory=list)  # the best first-rung score, likewise
    least: int = 0  # its trials before the search may settle: one more than it tunes
    dropped: dict[str, Any] | None = None  # after which trial of the search, and why

    def level(self, depth: int) -> dict[str, float]:
        """The scores of the trials that reached its `depth`th rung (0: the first), or, past the
        last rung, those that ran their planned epochs."""
        milestones = self.rungs.milestones
        if depth < len(milestones):
            return {t: s for t, s in self.rungs.recorded[milestones[depth]].items()
                    if not math.isnan(s)}
        return dict(self.finals)


class Race:
    """The lanes of a compared hyperparameter (one lane, "all", where the space compares nothing),
    their rungs, and which lane gets the next trial. `adaptive`: lanes that fall behind drop out
    (else every value gets an equal share to the end)."""

    def __init__(self, compare: str | None, choices: list[Any] | None, mode: str, max_t: int,
                 grace_period: int, reduction_factor: float, adaptive: bool = True) -> None:
        self.compare, self.mode, self.max_t = compare, mode, max_t
        self.adaptive = adaptive
        self._milestones = milestones(max_t, grace_period, reduction_factor)
        self._rf = reduction_factor
        values = list(choices) if compare and choices else [None]
        self.lanes: dict[str, Lane] = {name(v, compare): Lane(name(v, compare), v, self._rungs())
                                       for v in values}
        self._lane_of: dict[str, str] = {}  # trial id -> lane name, the baseline's included
        self._baseline: set[str] = set()
        self.ended: list[str] = []  # trials in the order they ended
        self.settled_at: dict[str, Any] | None = None

    def _rungs(self) -> Rungs:
        return Rungs(self._milestones, self._rf)

    def sign(self, score: float) -> float:
        return score if self.mode == "max" else -score

    def lane(self, config: dict[str, Any]) -> Lane:
        key = name(config.get(self.compare), self.compare)
        if key not in self.lanes:  # a value the probe of the space did not see
            self.lanes[key] = Lane(key, config.get(self.compare), self._rungs())
        return self.lanes[key]

    def add(self, trial_id: str, config: dict[str, Any]) -> None:
        """A trial handed out (or restored): it counts in its value's share; the baseline races
        in no lane."""
        if trial_id in self._lane_of:
            return
        chosen = self.lane(config)
        chosen.trials.append(trial_id)
        self._lane_of[trial_id] = chosen.key
        if config.get(BASELINE):
            self._baseline.add(trial_id)
        else:
            chosen.planned.add(min(int(config.get("epochs") or self.max_t), self.max_t))

    def racing(self, trial_id: str) -> Lane | None:
        """The lane whose rungs judge the trial; None for the baseline and unknown trials."""
        if trial_id in self._baseline or trial_id not in self._lane_of:
            return None
        return self.lanes[self._lane_of[trial_id]]

    def judge(self, trial_id: str, epoch: int, score: float) -> bool:
        """An epoch's score: False where the trial's lane stops it at a rung (or at max_t)."""
        racing = self.racing(trial_id)
        if racing is None:
            return True
        keep = racing.rungs.judge(trial_id, epoch, self.sign(score))
        return keep and epoch < self.max_t

    def record(self, trial_id: str, milestone: int, score: float) -> None:
        """A score restored into a rung without judging (a resumed run's rungs)."""
        racing = self.racing(trial_id)
        if racing is not None and milestone in racing.rungs.recorded:
            racing.rungs.recorded[milestone][trial_id] = self.sign(score)

    def finish(self, trial_id: str, values: dict[int, float], completed: bool) -> None:
        """A trial ended: its score at each epoch it reported; `completed`: it ran its planned
        epochs (its last epoch's score is its final score)."""
        if trial_id in self.ended or trial_id not in self._lane_of:
            return
        self.ended.append(trial_id)
        racing = self.racing(trial_id)
        if racing is None:
            return
        finite = [self.sign(values[e]) for e in sorted(values) if math.isfinite(values[e])]
        if completed and finite:
            racing.finals[trial_id] = finite[-1]
            racing.curves[trial_id] = finite
        racing.best.append(max(racing.finals.values(), default=-math.inf))
        racing.first.append(max(racing.level(0).values(), default=-math.inf))

    def stops_settled(self, trial_id: str) -> bool:
        """Whether this trial, running or waiting to, stops because the search has settled:
        every trial but the baseline, whose score the answer measures the best against."""
        return self.settled_at is not None and self.racing(trial_id) is not None

    def rerun(self, trial_id: str) -> None:
        """A trial that errored runs again (Ray's retry, or --resume): its next end is heard."""
        if trial_id in self.ended:
            self.ended.remove(trial_id)

    def contenders(self) -> list[Lane]:
        return [lane for lane in self.lanes.values() if lane.dropped is None]

    def next_value(self) -> Any:
        """The compared value the next trial takes: the contending lane with the fewest trials,
        the first in the space's order on a tie."""
        return min(self.contenders(), key=lambda lane: len(lane.trials)).value

    def noise(self) -> float:
        """How far a trial's final score moves by chance: the epoch-to-epoch jitter of the last
        epochs of the trials that ran in full (the median of each one's standard deviation of
        its last JITTER_EPOCHS differences, over sqrt(2)), which on FashionMNIST is about the
        spread of one config's final score over seeds; infinite before any trial ran in full."""
        jitters = []
        for lane in self.lanes.values():
            for curve in lane.curves.values():
                tail = np.diff(curve[-JITTER_EPOCHS - 1:])
                if len(tail) >= 2:
                    jitters.append(float(np.std(tail, ddof=1)) / math.sqrt(2))
        return float(np.median(jitters)) if jitters else math.inf

    def update(self, handed_out: int) -> list[Lane]:
        """Drop the lanes that are behind the leader (`behind`), after `handed_out` trials of the
        search; the lanes dropped now."""
        contenders = self.contenders()
        if not self.adaptive or len(contenders) < 2:
            return []
        scored = [lane for lane in contenders if lane.finals]
        if not scored:
            return []
        leader = max(scored, key=lambda lane: max(lane.finals.values()))
        width, dropped = spread(contenders), []
        for lane in contenders:
            why = None if lane is leader else behind(leader, lane, width)
            if why:
                lane.dropped = {"after": handed_out, "behind": leader.key, **why}
                dropped.append(lane)
        return dropped

    def settled(self, handed_out: int, budget: int) -> dict[str, Any] | None:
        """Whether the search's answer would no longer move: see `settled`."""
        if self.settled_at is None and settled(self.contenders(), len(self.ended), budget,
                                               self.noise()):
            self.settled_at = {"after": handed_out, "of": budget, "noise": self.noise(),
                               "window": SETTLE_WINDOW}
        return self.settled_at


def spread(lanes: list[Lane]) -> float:
    """How far the final scores of a lane's trials that ran in full lie apart: their standard
    deviation within each lane, pooled over the lanes that have two or more (infinite before any
    has). It holds both the noise of one run and how much the configs that got that far
    differ."""
    squares, df = 0.0, 0
    for lane in lanes:
        finals = list(lane.finals.values())
        if len(finals) >= 2:
            squares += float(np.var(finals, ddof=1)) * (len(finals) - 1)
            df += len(finals) - 1
    return math.sqrt(squares / df) if df else math.inf


def behind(ahead: Lane, lane: Lane, width: float) -> dict[str, float] | None:
    """Why `lane` is behind `ahead` (the gap, the spread, the rise and the rule's constants), or
    None. Only the trials that ran their planned epochs are
    compared (a slow starter is judged where it ends, not at a rung where it is still warming
    up), and lanes planning different epochs never are (a 5-epoch lane scores below a 30-epoch
    one by design). Each lane's best final score is what its search found so far; the lane's
    may still rise by as much as it rose over its last RISE_WINDOW trials (the rising-bandit
    bound of Li et al., 2020). The lane is behind when its best, so raised, falls short of
    ahead's best by more than BOUND_WIDTHS times `width`, the spread of final scores within a
    lane (`spread`). Both lanes need MIN_FINALS trials that ran in full."""
    if ahead.planned != lane.planned or min(len(ahead.finals), len(lane.finals)) < MIN_FINALS:
        return None
    best, lead = max(lane.finals.values()), max(ahead.finals.values())
    before = lane.best[-RISE_WINDOW - 1] if len(lane.best) > RISE_WINDOW else -math.inf
    rise = best - before if math.isfinite(before) else math.inf
    bound = BOUND_WIDTHS * width
    if not math.isfinite(rise + bound) or best + rise + bound >= lead:
        return None
    return {"gap": lead - best, "spread": width, "rise": rise, "widths": BOUND_WIDTHS,
            "window": RISE_WINDOW}


def settled(contenders: list[Lane], ended: int, budget: int, noise: float) -> bool:
    """Whether the search's answer would no longer move: at least SETTLE_SHARE of the trial
    budget has ended; every contending lane has had one more trial than it tunes hyperparameters
    (Lane.least: a search of many hyperparameters needs more trials to cover them, and runs more of
    its budget) and a trial that ran in full; and over each lane's last SETTLE_WINDOW ended
    trials, neither its best final score nor its best score at the first rung (which within a
    lane ranks its trials as their final scores do) rose by more than the noise of one training
    run (Race.noise)."""
    if ended < SETTLE_SHARE * budget or not math.isfinite(noise):
        return False
    for lane in contenders:
        if len(lane.best) < max(lane.least, SETTLE_WINDOW + 1) or not lane.finals:
            return False
        for best in (lane.best, lane.first):
            before = best[-SETTLE_WINDOW - 1]
            if not math.isfinite(before) or best[-1] - before > noise:
                return False
    return True
