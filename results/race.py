"""The race's doings in words, as the search prints them and the report says them: why a compared
value dropped out (tuning.race.behind), why the search settled (tuning.race.settled)."""

from __future__ import annotations

from typing import Any

from results.metric import Score


def dropped_because(drop: dict[str, Any], score: Score) -> str:
    """'its best final score trails optimizer='adam''s by 2.3 points, more than ...'."""
    return (f"its best final score trails {drop['behind']}'s by "
            f"{score.amount(drop['gap'], unit=True)}, more than {drop['widths']:g} spreads of a "
            f"value's final scores ({score.amount(drop['spread'])} each) and its rise over its "
            f"last {drop['window']} trials ({score.amount(drop['rise'])}) together")


def settled_because(settled: dict[str, Any], score: Score) -> str:
    """'over the last 3 trials of each value, neither its best ... rose by more than ...'."""
    return (f"over the last {settled['window']} trials of each value, neither its best final "
            f"score nor its best score at the first rung rose by more than one run's noise "
            f"({score.amount(settled['noise'], unit=True)})")
