"""What the next trial tries: Optuna's TPE, fitted to the history of the trial's own lane.

One TPE over every trial of a race would model the compared value's lanes as one: where SGD's good
learning rates are 100 times Adam's, the good trials (mostly one lane's) pull the other lane's
proposals towards learning rates that do not suit it. Each proposal is therefore drawn by a TPE
sampler of its own, in an in-memory study that holds the lane's trials, and the trials of every
other lane whose space is the same (a space comparing training lengths or batch sizes: what is
good for one lane is likely good for the next). Their scores are not comparable across lanes (a
5-epoch trial scores below a 30-epoch one), so each trial enters with its rank within its own lane,
ordered as TPE orders a study's trials: those that ran their course by score, then those stopped
early, deeper first, then by score; a trial still running that has reported an epoch is ranked
as one stopped there, and one that has not enters as running (TPE's constant liar steers away from
it). A proposal is a pure function of that history and the seed: a resumed run whose study holds
the same history draws what an uninterrupted one would.

The first proposals of a pool of lanes are random (TPE's start-up), as many as `startup_trials`
sizes to the trials the pool is expected to get and the hyperparameters its lanes tune.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

STARTUP_SHARE, STARTUP_MIN, STARTUP_MAX = 0.25, 2, 10  # random start-up trials of a pool's budget
PROBES = 64  # random trials of the space per lane, to learn the lane's distributions


def startup_trials(budget: int, lanes: int, pooled: int, tuned: int = 0) -> int:
    """Trials before TPE takes over in a pool of `pooled` lanes sharing their history, out of
    `lanes`: STARTUP_SHARE of the trials the pool expects from a `budget` of trials, and at least
    one a hyperparameter the lanes tune (`tuned`), within [STARTUP_MIN, STARTUP_MAX] (Optuna's
    default is 10 for the whole study)."""
    expected = budget * pooled / max(1, lanes)
    return max(STARTUP_MIN, min(STARTUP_MAX, max(tuned, round(STARTUP_SHARE * expected))))


def lane_space(define: Callable[[optuna.Trial], Any], compare: str | None, value: Any
               ) -> dict[str, BaseDistribution]:
    """Every distribution the space suggests for trials of one compared value (conditional
    branches too), from random trials of an in-memory study."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, BaseDistribution] = {}
    for _ in range(PROBES):
        if compare is not None:
            study.enqueue_trial({compare: value})
        trial = study.ask()
        define(trial)
        seen.update(trial.distributions)
        study.tell(trial, 0.0)
    seen.pop(compare, None)
    return {name: dist for name, dist in seen.items() if not dist.single()}


def _order_key(trial: FrozenTrial, sign: float) -> tuple:
    """Best first, as TPE ranks a study's trials: completed by score, then stopped early (deeper
    first, then by score), then those with no score."""
    if trial.state == TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
        return (0, 0, -sign * trial.value)
    finite = {k: v for k, v in trial.intermediate_values.items() if math.isfinite(v)}
    if finite:
        step = max(finite)
        return (1, -step, -sign * finite[step])
    return (2, 0, 0.0)


def ranked(trials: Sequence[FrozenTrial], mode: str) -> list[FrozenTrial]:
    """A lane's trials as TPE sees them: the ended ones COMPLETE with their rank in the lane (1
    best, 0 worst), the running ones RUNNING."""
    sign = 1.0 if mode == "max" else -1.0
    heard = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
             or (t.state == TrialState.RUNNING and t.intermediate_values)]
    ranked_ = sorted(heard, key=lambda t: _order_key(t, sign))
    out = []
    for rank, trial in enumerate(ranked_):
        value = 1.0 - rank / max(1, len(ranked_) - 1)
        out.append(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                             value=value))
    out += [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                      state=TrialState.RUNNING)
            for t in trials if t.state == TrialState.RUNNING and not t.intermediate_values]
    return out


def propose(define: Callable[[optuna.Trial], Any], lanes: Sequence[Sequence[FrozenTrial]],
            compare: str | None, value: Any, mode: str, seed: int, startup: int
            ) -> dict[str, Any]:
    """The parameters of the next trial of the lane `value`: TPE (multivariate, grouped for
    conditional spaces, constant liar for trials running side by side) on `lanes`, the history of
    each lane of the pool, the trial's own among them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup,
                                             multivariate=True, group=True, constant_liar=True,
                                             warn_independent_sampling=False)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials([t for trials in lanes for t in ranked(trials, mode)])
    if compare is not None:
        study.enqueue_trial({compare: value})
    trial = study.ask()
    define(trial)
    return dict(trial.params)
