"""Confirmation: after the search, the best config of each compared choice trained again with more
seeds, as Ray trials of the run (RUN_DIR/confirm/), on the same train/validation split, a look at
a time: every config up to the first look's seeds (3 by default, the search's own run counting),
then, while a verdict is open (results.verdict), the configs it is open about up to the next
look's (5, then 8), until every verdict is decided or the last look is taken."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune.search import Searcher

from results.confirmation import (candidate_configs, confirmation_runs, decide, looks_of,
                                  more_seeds)
from results.experiment import load_experiment
from results.leaderboard import leaderboard
from trainables.config import CONFIRMS
from trainables.rundir import CONFIRM_DIR, Status
from tuning import storage
from tuning.dry_run import Checked
from tuning.record import Run
from tuning.storage import Trials
from tuning.tuner import left, make_trainable, new_tuner, time_limit


def seeds_of(rows: list[dict[str, Any]], trial_id: str) -> list[int]:
    """The seeds a config has run with (any status)."""
    return [int(r["seed"]) for r in rows if r["trial_id"] == trial_id]


class Looks(Searcher):
    """Hands out confirmation runs a look at a time (the module's docstring). `configs`: each
    candidate's config by the search trial it confirms; `rows`: the runs it has already (the
    search's own where it ran in full, confirmation runs on disk), as confirmation_table rows;
    `run`: run.json, for the metric, the looks and the margin."""

    def __init__(self, configs: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
                 run: dict[str, Any]) -> None:
        super().__init__()
        self._configs, self._rows, self._run = configs, list(rows), run
        self._looks = looks_of(run)
        self._queue: list[dict[str, Any]] = []
        self._handed: dict[str, int] = {}  # Ray trial id -> its row in _rows
        self._plan_to_boundary()

    def _plan_to_boundary(self) -> None:
        """Runs that bring each config to the next look at or above the seeds it has (a run
        cut in the middle of a look finishes that look first)."""
        for trial_id, config in self._configs.items():
            have = seeds_of(self._rows, trial_id)
            target = next((n for n in self._looks if n >= len(have)), len(have))
            self._queue += more_seeds(config, have, target)

    def table(self) -> pd.DataFrame:
        """The runs so far as results.confirmation.decide reads them."""
        score, compare = self._run.get("metric") or "val_accuracy", self._compare()
        frame = pd.DataFrame(self._rows).reindex(columns=["trial_id", "seed", "status", score])
        frame["seconds"] = math.nan  # the cheapest config is the report's, not a look's
        if compare:
            frame.insert(0, compare, frame["trial_id"].map(
                {t: c.get(compare) for t, c in self._configs.items()}))
        return frame

    def _compare(self) -> str | None:
        compare = self._run.get("compare")
        return compare if any(compare in c for c in self._configs.values()) else None

    def _next_look(self) -> bool:
        """Where every handed-out run has ended: queue the next look's runs of the configs whose
        verdict is open; False where there is none (every verdict decided, or the last look
        taken)."""
        opened = decide(self.table(), self._compare(), self._run).open()
        taken = max((len(seeds_of(self._rows, t)) for t in self._configs), default=0)
        later = [n for n in self._looks if n > taken]
        if not opened or not later:
            return False
        for trial_id in sorted(opened):
            self._queue += more_seeds(self._configs[trial_id], seeds_of(self._rows, trial_id),
                                      later[0])
        return bool(self._queue)

    def queued(self) -> int:
        """The runs queued to hand out."""
        return len(self._queue)

    def left(self) -> bool:
        """Whether a run is still to train: one queued, or the next look's, where a verdict is
        open."""
        return bool(self._queue) or self._next_look()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._queue:
            if any(r["status"] == "running" for r in self._rows):
                return None
            if not self._next_look():
                return Searcher.FINISHED
        config = self._queue.pop(0)
        self._handed[trial_id] = len(self._rows)
        self._rows.append({"trial_id": config[CONFIRMS], "seed": config["seed"],
                           "status": "running"})
        return dict(config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._handed:
            return
        row = self._rows[self._handed[trial_id]]
        score = self._run.get("metric") or "val_accuracy"
        if error or not result:
            row["status"] = "errored"
        elif result.get("diverged"):
            row["status"] = "diverged"
        elif result.get("epoch", 0) >= result.get("epochs_planned", float("inf")):
            row.update(status="completed", **{score: result.get(score)})
        else:
            row["status"] = "unfinished"

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(
            {"rows": self._rows, "queue": self._queue, "handed": self._handed}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self._rows, self._queue, self._handed = state["rows"], state["queue"], state["handed"]


def candidates_of(run_dir: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]],
                                          dict[str, Any]]:
    """What the confirmation of the finished search in run_dir starts from: each candidate's
    config (results.confirmation.candidate_configs), the runs it has (the search's own,
    confirmation runs on disk) and run.json."""
    experiment = load_experiment(run_dir)
    board = leaderboard(experiment)
    configs, score = candidate_configs(experiment, board), experiment.score.column
    own = board[board["trial_id"].isin(configs) & (board["status"] == "completed")]
    rows = [{"trial_id": str(r["trial_id"]), "status": "completed", score: r[score],
             "seed": experiment.params[r["trial_id"]].get("seed", 0)} for _, r in own.iterrows()]
    # a run cut short that Tune does not resume is run again, with a seed of its own
    rows += [{k: r[k] for k in ("trial_id", "seed", "status", score)}
             for r in confirmation_runs(run_dir, score)
             if r["trial_id"] in configs and r["status"] != "unfinished"]
    return configs, rows, experiment.run


def finished(run_dir: Path) -> bool:
    """No confirmation run is still to train: every config has the seeds of its look, and each
    verdict is decided or the last look taken."""
    return not Looks(*candidates_of(run_dir)).left()


def build_confirmation(runs: Trials, trainable: Any, searcher: Looks, resume: bool,
                       callbacks: list[Any]) -> Any:
    """The Tuner of the confirmation runs, kept in `runs` (the run's CONFIRM_DIR): restored where
    an interrupted one exists."""
    from ray import tune

    from tuning.scheduler import HearsErrors

    if resume and tune.Tuner.can_restore(**runs.restore_args()):
        return tune.Tuner.restore(**runs.restore_args(), trainable=trainable,
                                  resume_unfinished=True, resume_errored=True)
    return new_tuner(trainable, runs, searcher, HearsErrors(searcher), callbacks)


def confirm(run: Run, checked: Checked, data: Any, deadline: float | None) -> None:
    """Train the best config of each compared choice again with more seeds, a look at a time
    (the module's docstring)."""
    from tuning import tracking
    from tuning.checkpoints import drop_ended
    from tuning.progress import Progress

    s, runs = run.settings, run.trials.sub(CONFIRM_DIR)
    configs, rows, recorded = candidates_of(run.dir)
    searcher = Looks(configs, rows, recorded)
    looks = looks_of(recorded)
    more = f", up to {looks[-1]} while a verdict is open" if len(looks) > 1 else ""
    print(f"\nConfirmation: {len(configs)} configs, {looks[0]} runs each counting the search's "
          f"own{more}")
    started = time.perf_counter()
    remaining = left(deadline)
    if configs and (remaining is None or remaining > 0) and searcher.left():
        callbacks = [Progress("confirmation", max(1, searcher.queued()), run.score,
                              s.max_epochs, live=not s.verbose),
                     *tracking.callbacks(run.dir, "confirmation")]
        tuner = build_confirmation(runs, make_trainable(s, checked.task, data), searcher,
                                   s.resume and runs.exists(), callbacks)
        with time_limit(remaining):
            tuner.fit()
        storage.pull(run.dir / CONFIRM_DIR, runs)
    done = finished(run.dir)
    if done:  # nothing resumes them any more (tuning.checkpoints)
        drop_ended(runs)
    status = Status.FINISHED if done else (
        Status.TIME_BUDGET if deadline is not None and left(deadline) <= 0
        else Status.INTERRUPTED)
    run.end(status, "confirm_seconds", time.perf_counter() - started)
    if not done:
        print(f"Confirmation {status.value.replace('_', ' ')}: continue with --resume.")
