"""The search: which config each Ray trial trains, told to an Optuna study on disk as it goes.

StudySearch is Ray Tune's searcher. It drives Optuna through its public ask-and-tell interface:
each Ray trial is one study trial (a retry of an errored trial is a new one with the same Ray id),
every epoch's score is reported to it, and its end is told as it happened: COMPLETE where the
trial ran its course (with its last epoch's score, the one its config reproduces when trained
again), PRUNED where a rung stopped it or it diverged, FAIL where it errored. The study is the
run's record: a resume rebuilds the searcher and the race from it, and the reports read it.

Which lane of the race the trial runs in, and whether the search has its answer, is the race's
(tuning.race); what the trial tries within its lane is TPE's (tuning.proposals). Trial 0 is the
task's baseline where the space holds it; a lane's first trial is the space's starting config for
its value (STARTS), where the space has one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import math
import pickle
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from results.metric import Score
from results.race import dropped_because, settled_because
from results.study import (COMPLETED, DIVERGED, DROPPED, ERRORED, LOST, RAY_TRIAL_ID, REASON,
                           RETRY_OF, SETTLED, SETTLED_STOP, START, STARTED, STOPPED,
                           STOPPED_EARLY, WARM_START, by_ray_trial, journal)
from search_spaces import get_space
from trainables.config import BASELINE
from tuning.proposals import lane_space, propose, startup_trials
from tuning.race import Race

logger = logging.getLogger(__name__)
ENDED = (TrialState.COMPLETE, TrialState.PRUNED)  # a trial Ray must not run again
# where a run being restored lies now: tuner.pkl and the searcher's snapshots hold the run
# directory it was started in, and a run directory may have been moved since
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


def reopen(study: optuna.Study, frozen: FrozenTrial) -> optuna.Trial:
    """A running study trial as a trial object that reports and is told, for a searcher
    restored after a crash. Optuna has no public way to this (its trials come from ask() only):
    the one place its private trial id is used (pyproject.toml bounds the Optuna it covers)."""
    return optuna.trial.Trial(study, frozen._trial_id)


@dataclass(frozen=True)
class SearchPlan:
    """What a search tries and how long: the space (by the ref that loads it), its budget, the
    run's metric and seed, and the race."""

    space: str
    max_epochs: int
    metric: str  # the score column, val_<metric>
    mode: str  # "max": higher is better
    seed: int
    num_samples: int
    grace_period: int
    reduction_factor: int
    compare: str | None = None  # the space's COMPARE, where tuning.dry_run found its values
    choices: tuple[Any, ...] | None = None
    baseline: dict[str, Any] | None = None  # trial 0's parameters
    starts: tuple[dict[str, Any], ...] = ()  # the space's STARTS: each lane's first parameters
    adaptive: bool = True  # lanes that fall behind drop out (tuning.race)
    settle: bool = True  # the search ends once its answer would not move

    def new_race(self) -> Race:
        return Race(self.compare, list(self.choices or ()), self.mode, self.max_epochs,
                    self.grace_period, self.reduction_factor, adaptive=self.adaptive)


class StudySearch(Searcher):
    """Hands each new Ray trial its config and tells the study what happened to it (see the
    module's docstring). `warm`: ended trials of an earlier run of the same space, which inform
    TPE's proposals (--warm-start) but take no part in the race."""

    # the trials Ray runs at once, asked anew (set_slots); None in a searcher pickled without it
    _slots: Callable[[], int] | None = None

    def __init__(self, plan: SearchPlan, run_dir: Path, study_name: str,
                 warm: list[FrozenTrial] | None = None) -> None:
        super().__init__(metric=plan.metric, mode=plan.mode)
        self.plan, self._run_dir, self._study_name = plan, Path(run_dir), study_name
        self._warm = list(warm or [])
        self._stops: dict[str, int] = {}  # trial id -> epoch a rung stopped it at
        self._settle_stops: set[str] = set()  # running or waiting when the search settled
        self._max_concurrent: int | None = None
        self._define = functools.partial(define_trial, plan.space, plan.max_epochs)
        self._rebuild()
        if self._warm and WARM_START not in self._study.user_attrs:
            self._study.set_user_attr(WARM_START, len(self._warm))

    # ----- the study, the live trials and the race: rebuilt from the study, never pickled

    _REBUILT = ("_study", "_live", "_values", "_ended", "race", "_seen", "_reconciled", "_spaces")

    def _rebuild(self) -> None:
        """Open the study in the run directory; which Ray trial is which study trial, which are
        still running, and the race, from it."""
        self._run_dir = _restoring_at.get() or self._run_dir
        self.__dict__.setdefault("_settle_stops", set())  # a searcher pickled before it had them
        self._spaces: dict[Any, dict[str, Any]] = {}  # compared value -> its lane's space
        self._study = optuna.create_study(
            study_name=self._study_name, storage=journal(self._run_dir),
            direction="maximize" if self.plan.mode == "max" else "minimize",
            sampler=optuna.samplers.RandomSampler(seed=self.plan.seed), load_if_exists=True)
        self._live: dict[str, optuna.Trial] = {}  # Ray id -> the study trial it reports to
        self._values: dict[str, dict[int, float]] = {}  # Ray id -> score at each epoch heard
        self._ended: dict[str, int] = {}  # Ray id -> its last epoch, once COMPLETE or PRUNED
        self._seen: set[str] = set()  # the Ray trials of this process (RaceScheduler.on_trial_add)
        self._reconciled = False
        self.race = self.plan.new_race()
        for lane in self.race.lanes.values():
            lane.least = len(self._lane_space(lane.value)) + 1
        for ray_id, frozen in by_ray_trial(self._study).items():
            config = {**frozen.params, BASELINE: bool(frozen.user_attrs.get(BASELINE))}
            self.race.add(ray_id, config)
            self._values[ray_id] = dict(frozen.intermediate_values)
            for milestone, score in frozen.intermediate_values.items():
                self.race.record(ray_id, milestone, score)
            if frozen.state == TrialState.RUNNING:
                self._live[ray_id] = reopen(self._study, frozen)
            elif frozen.state in ENDED:
                self._ended[ray_id] = max(frozen.intermediate_values, default=0)
        self._replay_endings()

    def _replay_endings(self) -> None:
        """The race's standing as the study recorded it: endings in order, lanes dropped, the
        search settled."""
        for ray_id, frozen in sorted(by_ray_trial(self._study).items(),
                                     key=lambda item: item[1].datetime_complete
                                     or item[1].datetime_start):
            if frozen.state in ENDED or frozen.state == TrialState.FAIL:
                self.race.finish(ray_id, frozen.intermediate_values,
                                 frozen.user_attrs.get(REASON) == COMPLETED)
        attrs = self._study.user_attrs
        for key, drop in attrs.get(DROPPED, {}).items():
            if key in self.race.lanes:
                self.race.lanes[key].dropped = drop
        self.race.settled_at = attrs.get(SETTLED)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._REBUILT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rebuild()

    def save(self, checkpoint_path: str) -> None:
        """Ray's snapshot of the searcher, at every snapshot of the experiment: its settings;
        the rest is rebuilt from the study, which is newer than any snapshot."""
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__getstate__(), file)

    def restore(self, checkpoint_path: str) -> None:
        run_dir = getattr(self, "_run_dir", None)  # where the run lies now (tuner.pkl's)
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))
        if run_dir is not None:
            self._run_dir = run_dir
        self._rebuild()

    # ----- what Ray asks

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True  # the plan has them

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """At most this many trials handed out and not yet ended. Kept here rather than in Ray's
        ConcurrencyLimiter: the limiter forgets its trials on restore and then drops the results
        of a retried one."""
        self._max_concurrent = max_concurrent
        return True

    def set_slots(self, slots: Callable[[], int]) -> None:
        """`slots()`: how many trials Ray runs at once (tuning.cluster.trial_slots), asked at each
        suggestion, so that a node that joins adds its slots. No more trials are handed out and
        not yet ended: each is proposed when a slot frees, from every trial that ended by then,
        and none waits in Tune's queue to run after the search has settled."""
        self._slots = slots

    def saw(self, trial_id: str) -> None:
        """Ray has this trial: restored from its snapshot, or new (tuning.scheduler calls this)."""
        self._seen.add(trial_id)

    def _reconcile(self) -> None:
        """Once Ray has added the trials it restored, before the first new one: a trial the study
        holds as running that Ray does not have was handed out after Ray's last snapshot (or
        after the searcher's, which Ray writes apart) and will never report: it ends FAIL as
        lost_in_crash, and its sample is drawn again; so does one a kill left enqueued or asked
        without its Ray id."""
        lost = [self._live.pop(ray_id) for ray_id in list(self._live) if ray_id not in self._seen]
        # asked of the study but killed before it was matched with a Ray trial (a run of an
        # earlier version set the Ray id after ask(); tuning.search's search_done skips them)
        lost += [reopen(self._study, t) for t in self._study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING,)) if RAY_TRIAL_ID not in t.user_attrs]
        # enqueued and killed before ask(): asked now, so as to end with the others
        lost += [self._study.ask() for _ in self._study.get_trials(
            deepcopy=False, states=(TrialState.WAITING,))]
        for trial in lost:
            trial.set_user_attr(REASON, LOST)
            self._study.tell(trial, state=TrialState.FAIL)
        if lost:  # out of the race too
            seen = self._seen
            self._rebuild()
            self._seen = seen
        self._reconciled = True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._reconciled:
            self._reconcile()
        handed_out = by_ray_trial(self._study)
        running = sum(t.state == TrialState.RUNNING for t in handed_out.values())
        if len(handed_out) >= self.plan.num_samples or self.race.settled_at:
            return Searcher.FINISHED if not running else None  # wait for the last to end
        most = min(self._max_concurrent or math.inf, self._slots() if self._slots else math.inf)
        if running >= most:
            return None
        attrs: dict[str, Any] = {}
        if self.plan.baseline and not handed_out:
            params, attrs[BASELINE] = dict(self.plan.baseline), True
        else:
            value = self.race.next_value()
            start = self._start(value, handed_out.values())
            if start is not None:
                attrs[START], params = start, dict(self.plan.starts[start])
            else:
                params = self._propose(value, len(handed_out))
        # the Ray id goes in with the trial, so that a run killed at any moment can match every
        # study trial asked with Ray's trials
        self._study.enqueue_trial(params, user_attrs={**attrs, RAY_TRIAL_ID: trial_id})
        trial = self._study.ask()  # that trial: _reconcile ended any a kill left waiting
        if START in attrs:  # the starts tried, each once however often a crash lost one
            tried = {t.user_attrs[START] for t in handed_out.values() if START in t.user_attrs}
            self._study.set_user_attr(STARTED, len(tried | {attrs[START]}))
        fixed = self._define(trial)
        config = {**trial.params, **fixed, **({BASELINE: True} if attrs.get(BASELINE) else {})}
        self._live[trial_id], self._values[trial_id] = trial, {}
        self.race.add(trial_id, config)
        return config

    def _start(self, value: Any, handed_out: Any) -> int | None:
        """The index in STARTS of the first starting config for `value`'s lane that no trial has
        tried yet (every start in turn where the space compares nothing), else None."""
        tried = {t.user_attrs.get(START) for t in handed_out}
        compare = self.plan.compare
        return next((i for i, params in enumerate(self.plan.starts) if i not in tried
                     and (compare is None or params.get(compare) == value)), None)

    def _lane_space(self, value: Any) -> dict[str, Any]:
        if value not in self._spaces:
            self._spaces[value] = lane_space(self._define, self.plan.compare, value)
        return self._spaces[value]

    def _propose(self, value: Any, number: int) -> dict[str, Any]:
        """TPE's proposal for the lane of `value` from its pool's history (tuning.proposals)."""
        compare, trials = self.plan.compare, list(by_ray_trial(self._study).values()) + self._warm
        if compare is None:
            pool = {None: trials}
        else:
            mine = self._lane_space(value)
            pool = {v: [t for t in trials if t.params.get(compare) == v]
                    for v in self.plan.choices if self._lane_space(v) == mine}
        startup = startup_trials(self.plan.num_samples, len(self.plan.choices or (None,)),
                                 len(pool), len(self._lane_space(value)))
        seed = zlib.crc32(f"{self.plan.seed}:{number}".encode())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return propose(self._define, list(pool.values()), compare, value, self.plan.mode,
                           seed, startup)

    # ----- what Ray tells

    def record_stop(self, trial_id: str, epoch: int, settled: bool = False) -> None:
        """A rung stopped this trial after `epoch`, or (`settled`) the search's settling did
        (tuning.scheduler.RaceScheduler calls this)."""
        self._stops[trial_id] = epoch
        if settled:
            self._settle_stops.add(trial_id)

    def ended_at(self, trial_id: str) -> int | None:
        """The last epoch the study recorded for this Ray trial where it holds it as COMPLETE or
        PRUNED (0: none, a trial that diverged at once), else None. Ray's snapshot, taken before
        the trial ended, may still list it as running."""
        return self._ended.get(trial_id)

    def _retry(self, trial_id: str) -> bool:
        """An errored trial that --resume runs again under its Ray id becomes a new study trial
        with the same parameters and the values it reported before it failed."""
        failed = by_ray_trial(self._study).get(trial_id)
        if failed is None or failed.state != TrialState.FAIL:
            return False
        if not self._reconciled:  # Ray added the trials it restored before any reported
            self._reconcile()  # so that ask() below takes no trial a kill left waiting
        kept = {START: failed.user_attrs[START]} if START in failed.user_attrs else {}
        self._study.enqueue_trial(failed.params, user_attrs={RETRY_OF: failed.number,
                                                             RAY_TRIAL_ID: trial_id, **kept})
        retry = self._study.ask(fixed_distributions=failed.distributions)
        for step, value in failed.intermediate_values.items():
            retry.report(value, step)
        self._live[trial_id], self._values[trial_id] = retry, dict(failed.intermediate_values)
        self.race.rerun(trial_id)  # its end, this time, counts
        return True

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self._live and not self._retry(trial_id):
            return
        value, epoch = result.get(self.metric), int(result["epoch"])
        if result.get("diverged"):  # the outputs of a model whose loss is NaN score nothing
            return
        if value is not None and math.isfinite(value) and epoch not in self._values[trial_id]:
            self._live[trial_id].report(value, epoch)
            self._values[trial_id][epoch] = value

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._live and not (result and self._retry(trial_id)):
            return
        if result and not error:
            self.on_trial_result(trial_id, result)  # Ray hands a trial's last result here only
        trial, values = self._live.pop(trial_id), self._values[trial_id]
        last = values[max(values)] if values else None
        if error:
            state, value, reason = TrialState.FAIL, None, ERRORED
        elif result and result.get("diverged"):
            state, value, reason = TrialState.PRUNED, None, DIVERGED
        elif trial_id in self._stops:
            reason = SETTLED_STOP if trial_id in self._settle_stops else STOPPED
            state, value = TrialState.PRUNED, None
        elif result and result.get("epoch", 0) >= result.get("epochs_planned", math.inf):
            state, value, reason = TrialState.COMPLETE, last, COMPLETED
        else:  # e.g. --max-epochs below the epochs the space planned
            state, value, reason = TrialState.PRUNED, None, STOPPED_EARLY
        if state == TrialState.COMPLETE and value is None:  # no finite score at its last epoch
            state, reason = TrialState.PRUNED, DIVERGED
        try:
            trial.set_user_attr(REASON, reason)
            self._study.tell(trial, value, state=state)
        except (ValueError, RuntimeError) as err:  # e.g. already told before a resume
            logger.warning("could not record trial %s in the study: %s", trial_id, err)
        if state in ENDED:
            self._ended[trial_id] = max(values, default=0)
        self.race.finish(trial_id, values, reason == COMPLETED)
        self._judge_race()

    def _judge_race(self) -> None:
        """After a trial ended: lanes that fell behind drop out, and the search may have
        settled; both recorded in the study."""
        handed_out = len(by_ray_trial(self._study))
        score = Score(self.plan.metric, self.plan.mode)
        for lane in self.race.update(handed_out):
            dropped = {**self._study.user_attrs.get(DROPPED, {}), lane.key: lane.dropped}
            self._study.set_user_attr(DROPPED, dropped)
            print(f"[search] {lane.key} drops out after trial {handed_out}: "
                  f"{dropped_because(lane.dropped, score)}", flush=True)
        if self.plan.settle and SETTLED not in self._study.user_attrs:
            settled = self.race.settled(handed_out, self.plan.num_samples)
            if settled:
                self._study.set_user_attr(SETTLED, settled)
                print(f"[search] settled after {handed_out} of {self.plan.num_samples} trials: "
                      f"{settled_because(settled, score)}; the trials running stop "
                      "(--full-budget runs them all)", flush=True)
