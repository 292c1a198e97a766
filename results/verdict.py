"""Deciding between two configs from their runs over seeds: the gap, an interval that holds over
the confirmation's repeated looks, and one of three verdicts.

Confirmation adds seeds while a verdict is open, at fixed looks (3, then 5, then 8 runs a config by
default). Each look's intervals are Welch's (unequal variances), with a Bonferroni correction per
look, so that each claim's error stays under ALPHA (5%) however many looks are taken:
  - better: Welch's interval at level 1 - ALPHA / looks excludes 0 (a two-sided test at 5% over
    the looks): the answer shows this 95% interval;
  - even: the interval at level 1 - 2 ALPHA / looks lies within (-margin, margin): two one-sided
    tests against the margin at 5% over the looks (TOST, the equivalence test, whose interval is
    the 90% one), not "no significant difference"; the answer shows this 90% interval;
  - open: neither; after the last look, "undecided".
A gap the equivalence interval puts above 0 but within the margin is even: real, and smaller than
the margin the answer treats as no difference. The margin is stated in the answer: 1 point for an
accuracy by default, else 1% of the best config's mean (`default_margin`), or --margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
GROWTH = 1.6  # each look has about this many times the seeds of the one before
BETTER, WORSE, EVEN, OPEN = "better", "worse", "even", "open"


def looks(first: int, cap: int) -> tuple[int, ...]:
    """The runs a config has at each look: `first`, then about GROWTH times more each, up to
    `cap` (3, 5, 8 for 3 and 8)."""
    if first < 2:
        return (first,)
    seeds = [first]
    while seeds[-1] < cap:
        seeds.append(min(cap, max(seeds[-1] + 1, round(seeds[-1] * GROWTH))))
    return tuple(seeds)


def default_margin(percent: bool, best: float) -> float:
    """The gap within which two configs are even, in the metric's units: 1 point of an
    accuracy, else 1% of the best mean."""
    return 0.01 if percent else 0.01 * abs(best) if math.isfinite(best) and best else 0.01


@dataclass(frozen=True)
class Gap:
    """Config a against config b: a's mean less b's in the metric's better direction (positive:
    a is better), its interval, the runs of each, and the verdict about a."""

    gain: float
    low: float
    high: float
    seeds: tuple[int, int]
    verdict: str
    level: float = 1 - ALPHA  # the interval's level over the looks: 0.9 for an equivalence test

    @property
    def decided(self) -> bool:
        return self.verdict != OPEN


def interval(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float]:
    """(mean(a) - mean(b), and Welch's two-sided interval at `level` around it); an infinite
    interval where either has fewer than 2 runs."""
    from scipy.stats import t

    gain = float(np.mean(a) - np.mean(b)) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return gain, -math.inf, math.inf
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return gain, gain, gain
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(t.ppf(1 - (1 - level) / 2, df)) * se
    return gain, gain - half, gain + half


def gap(a: np.ndarray, b: np.ndarray, higher_is_better: bool, margin: float,
        plan: tuple[int, ...]) -> Gap:
    """The verdict on a against b (module docstring), the intervals held over the looks the
    confirmation plans (`plan`, looks()); the interval kept is the one the verdict rests on."""
    a, b = _oriented(a, b, higher_is_better)
    gain, low, high = interval(a, b, 1 - 2 * ALPHA / max(1, len(plan)))  # one-sided tests
    if -margin < low and high < margin:
        return Gap(gain, low, high, (len(a), len(b)), EVEN, 1 - 2 * ALPHA)
    gain, low, high = interval(a, b, 1 - ALPHA / max(1, len(plan)))
    verdict = BETTER if low > 0 else WORSE if high < 0 else OPEN
    return Gap(gain, low, high, (len(a), len(b)), verdict)


def _oriented(a: np.ndarray, b: np.ndarray, higher_is_better: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """a and b as floats whose higher values are the better (a loss turned round)."""
    sign = 1.0 if higher_is_better else -1.0
    return sign * np.asarray(a, float), sign * np.asarray(b, float)


def as_good(cheap: np.ndarray, best: np.ndarray, higher_is_better: bool, margin: float,
            plan: tuple[int, ...]) -> Gap:
    """Whether the cheaper config is as good as the best within the margin (non-inferiority, a
    one-sided test at ALPHA over the looks): even where the lower end of the interval at level
    1 - 2 ALPHA / looks lies above -margin, worse where its upper end lies below it, else open."""
    cheap, best = _oriented(cheap, best, higher_is_better)
    gain, low, high = interval(cheap, best, 1 - 2 * ALPHA / max(1, len(plan)))
    verdict = EVEN if low > -margin else WORSE if high < -margin else OPEN
    return Gap(gain, low, high, (len(cheap), len(best)), verdict, 1 - 2 * ALPHA)
