"""The console of a run: a line as each trial ends (trials ended of total, epochs run, the best so
far, time left) and, on a terminal, a table of the running trials redrawn in place below them."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from results.metric import Score
from trainables.config import TRIAL_KEYS

# config keys a row of the live table leaves out (the epochs are its epoch column's)
HIDDEN = {*TRIAL_KEYS, "seed", "epochs"}


def duration(seconds: float) -> str:
    """Seconds as the console says them: '45 s', or '12 min' from a minute and a half."""
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
    """Prints one line whenever a trial ends and, where standard output is a terminal (and `live`),
    keeps a table of the running trials (config, epoch, last score) redrawn in place under those
    lines (on `console`, a rich Console: standard output's by default). The time left is the epochs still expected at the pace so far (seconds per epoch run,
    trials running side by side): each trial yet to end takes `epochs_per_trial`, or the mean of
    the ended trials where that is more; a running trial takes that less the epochs it has run,
    one at least."""

    def __init__(self, label: str, total: int, score: Score, epochs_per_trial: float,
                 live: bool = True, console: Any = None) -> None:
        self.label, self.total, self.score = label, total, score
        self.epochs_per_trial = epochs_per_trial
        self._live_wanted, self._console, self._live = live, console, None
        self._running: dict[str, Any] = {}  # the live table's trials, by id

    def setup(self, **info: Any) -> None:
        self._started = time.monotonic()
        if self._live_wanted:
            from rich.console import Console
            from rich.live import Live

            console = self._console or Console()
            if console.is_terminal:
                self._live = Live(console=console, refresh_per_second=2, transient=True)
                self._live.start()

    def _say(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, flush=True)

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
        eta = f", about {duration(pace * left)} left" if len(ended) < total else ""
        self._say(f"[{self.label}] {len(ended)} of {total} trials ended, {epochs} epochs run"
                  f"{best}{eta}")
        self._running.pop(getattr(trial, "trial_id", None), None)
        self._redraw()

    def _redraw(self) -> None:
        """The live table: a row per running trial."""
        if self._live is None:
            return
        from rich.table import Table

        running = list(self._running.values())
        table = Table(title=f"{self.label}: {len(running)} running", title_justify="left",
                      box=None, padding=(0, 2))
        for column in ("trial", "config", "epoch", self.score.column):
            table.add_column(column)
        for t in running:
            result = t.last_result or {}
            planned = result.get("epochs_planned") or t.config.get("epochs", "?")
            value = result.get(self.score.column)
            shown = value if isinstance(value, (int, float)) and math.isfinite(value) else None
            table.add_row(str(t.trial_id)[-8:], config_line(t.config),
                          f"{result.get('epoch') or 0}/{planned}",
                          "" if shown is None else self.score.format(shown))
        self._live.update(table, refresh=True)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._running[trial.trial_id] = trial
        self._redraw()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict,
                        **info: Any) -> None:
        self._running[trial.trial_id] = trial
        self._redraw()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ended(trial, trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def config_line(config: dict[str, Any]) -> str:
    """A config on one line, its floats to 3 significant digits: 'optimizer=adam lr=0.00114'."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in config.items() if k not in HIDDEN)
