"""The run's metric as the reports speak of it: its column, its words, which way is better, and how
its values and gaps are written (accuracies in percent and points, other metrics as numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WORDS = {"rmse": "RMSE", "mae": "MAE", "f1": "F1", "auc": "AUC", "r2": "R²"}  # the rest as named


def _places(value: float) -> int:
    """Decimal places that show a positive value to its second significant digit."""
    return max(0, 1 - math.floor(math.log10(float(f"{value:.2g}"))))


def _at_least(digits: int, points: float) -> int:
    """`digits` decimal places, or more where fewer would show a positive value as 0."""
    if points > 0 and round(points, digits) == 0:
        return -math.floor(math.log10(float(f"{points:.1g}")))
    return digits


@dataclass(frozen=True)
class Score:
    column: str = "val_accuracy"  # val_<metric>: the score of a trial, its last epoch's value
    mode: str = "max"  # "max": higher is better

    @classmethod
    def of(cls, run: dict[str, Any]) -> Score:
        """The metric run.json names (runs recorded before there was a choice: accuracy)."""
        return cls(run.get("metric") or "val_accuracy", run.get("mode") or "max")

    @property
    def name(self) -> str:
        """'accuracy' of val_accuracy (a trial's score) or test_accuracy (final training's)."""
        return self.column.removeprefix("val_").removeprefix("test_")

    @property
    def words(self) -> str:
        """'accuracy', 'RMSE': the metric in a sentence."""
        return WORDS.get(self.name, self.name.replace("_", " "))

    @property
    def label(self) -> str:
        """'validation accuracy', 'validation RMSE'."""
        return f"validation {self.words}"

    @property
    def best_column(self) -> str:
        return f"best_{self.column}"

    @property
    def percent(self) -> bool:
        return self.name.endswith("accuracy")

    @property
    def higher_is_better(self) -> bool:
        return self.mode == "max"

    @property
    def better(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def axis(self, what: str = "") -> str:
        """An axis label: 'best validation accuracy (%)'."""
        return f"{what + ' ' if what else ''}{self.label}{' (%)' if self.percent else ''}"

    def scale(self, value: float) -> float:
        """A value as plotted and written: a fraction as percent."""
        return 100 * value if self.percent else value

    def format(self, value: float, digits: int = 1) -> str:
        """89.1% for an accuracy, 53.2 or 0.0123 for other metrics."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{100 * value:.{digits}f}%" if self.percent else f"{value:.{digits + 3}g}"

    def spread(self, mean: float, sd: float | None, digits: int = 1) -> str:
        """'89.0 ± 0.1%', or '53.24 ± 0.71': other metrics to the sd's second significant digit."""
        if sd is None or (isinstance(sd, float) and math.isnan(sd)):
            return self.format(mean, digits)
        if self.percent:  # '88.46 ± 0.04%' where one place would say ± 0.0%
            digits = _at_least(digits, 100 * sd)
            return f"{100 * mean:.{digits}f} ± {100 * sd:.{digits}f}%"
        places = _places(sd) if sd > 0 else digits + 1
        return f"{mean:.{places}f} ± {sd:.{places}f}"

    def gain(self, winner: float, other: float) -> float:
        """How much better the winner is (positive: better, in the metric's direction)."""
        return winner - other if self.higher_is_better else other - winner

    def gap(self, winner: float, other: float) -> str:
        """'the 0.5-point gap', 'the gap of 4.0': a gap as the answer writes it."""
        gap = abs(winner - other)
        if self.percent:
            return f"the {100 * gap:.{_at_least(1, 100 * gap)}f}-point gap" if gap > 0 else "no gap"
        return f"the gap of {gap:.{_places(gap)}f}" if gap > 0 else "no gap"

    def amount(self, value: float, signed: bool = False, unit: bool = False) -> str:
        """A gap or a bound as the answer writes it: '0.5' or '+0.5 points' for an accuracy
        (`unit` adds 'points'), '0.0123' for other metrics."""
        sign = "+" if signed else ""
        if self.percent:
            digits = _at_least(1, abs(100 * value))
            return f"{100 * value:{sign}.{digits}f}" + (" points" if unit else "")
        return f"{value:{sign}#.3g}"

    def margin(self, winner: float, other: float) -> str:
        """'+17.6 points over', '12.3 lower than', '12.3 higher than': winner against other."""
        gain = self.gain(winner, other)
        if self.percent:
            return f"{100 * gain:+.1f} points over"
        if self.higher_is_better:
            return f"{abs(gain):.3g} {'higher' if gain >= 0 else 'lower'} than"
        return f"{abs(gain):.3g} {'lower' if gain >= 0 else 'higher'} than"

    def best(self, values: Any) -> Any:
        """The best of a pandas Series or a list."""
        return max(values) if self.higher_is_better else min(values)
