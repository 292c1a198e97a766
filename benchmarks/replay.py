"""Learning curves trained once (benchmarks/train_curves.py), replayed through a real searcher and
scheduler in simulated time, as HPOBench's tables and Syne Tune's simulator do: what
benchmarks/searchers.py runs each recipe on, many times over, at the cost of the bookkeeping alone.

A config the searcher proposes is read off the table: its learning rate interpolated (in log
space) between the grid's two nearest ones with the same optimizer, momentum and batch size, each
epoch's validation accuracy and seconds for the trial's seed. Trials run `slots` at a time; an
epoch takes the seconds it took when the table was trained (two trainings side by side on two
cores), so that a recipe's wall time is what it would have been, less Ray's own.

The loop calls the searcher and the scheduler as Ray Tune 2.60's TuneController does: the
scheduler judges each result first; a result it does not stop goes to the searcher; a trial that
stops (by the scheduler, at its last epoch, or diverged) is completed with its last result.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TABLE = Path(__file__).resolve().parent / "curves" / "sgd_vs_adam_subset.csv.gz"
# Adam's configs trained again with 16 seeds the replays never read: their truth
HELD_OUT = TABLE.with_name("sgd_vs_adam_held_out.csv.gz")
SCORE = "val_accuracy"


def load_grid(frame: pd.DataFrame, epochs: int) -> dict[tuple, tuple[np.ndarray, ...]]:
    """{(optimizer, momentum, batch_size): (log lrs, accuracies[lr, seed, epoch], seconds[lr,
    seed, epoch])}."""
    grid = {}
    for (opt, momentum, batch), rows in frame.groupby(["optimizer", "momentum", "batch_size"]):
        rows = rows.sort_values(["lr", "seed", "epoch"])
        lrs = np.sort(rows["lr"].unique())
        shape = (len(lrs), rows["seed"].nunique(), epochs)
        grid[(opt, float(momentum), int(batch))] = (
            np.log(lrs), rows[SCORE].to_numpy().reshape(shape),
            rows["seconds"].to_numpy().reshape(shape))
    return grid


def between(log_lrs: np.ndarray, lr: float) -> tuple[int, float]:
    """Where `lr` falls on a grid of log learning rates: the grid point below it and its weight
    towards the one above (log-linear interpolation, clipped to the grid's ends)."""
    x = float(np.clip(math.log(lr), log_lrs[0], log_lrs[-1]))
    i = min(max(bisect.bisect_right(log_lrs, x) - 1, 0), len(log_lrs) - 2)
    return i, (x - log_lrs[i]) / (log_lrs[i + 1] - log_lrs[i])


class Table:
    """The curves by config (`load_grid`). `lanes` names each compared value by the table's
    optimizer it reads and the order it reads that optimizer's seeds in: 0 as they are, another
    number a permutation of them drawn with it as its seed, so that two lanes reading the same
    optimizer in different orders are two values that are truly even.

    A config's truth is its mean final accuracy over seeds that no replay reads where `held_out`
    holds its optimizer (Adam's 16 further seeds), else over the table's own seeds (SGD's 8): a
    config a search picked because its seed scored high is not scored again on that seed."""

    def __init__(self, path: Path = TABLE, lanes: dict[str, tuple[str, int]] | None = None,
                 held_out: Path | None = HELD_OUT) -> None:
        frame = pd.read_csv(path)  # gzip or plain, by the name
        self.epochs = int(frame["epoch"].max())
        self.seeds = frame.groupby("optimizer")["seed"].nunique().to_dict()
        self.lanes = lanes or {"sgd": ("sgd", 0), "adam": ("adam", 0)}
        self.order = {lane: np.arange(self.seeds[opt]) if key == 0
                      else np.random.default_rng(key).permutation(self.seeds[opt])
                      for lane, (opt, key) in self.lanes.items()}
        self.grid = load_grid(frame, self.epochs)
        self.judge = dict(self.grid)  # the curves truth is measured on
        if held_out is not None and held_out.is_file():
            self.judge.update(load_grid(pd.read_csv(held_out), self.epochs))

    def _key(self, config: dict[str, Any]) -> tuple:
        optimizer = self.lanes[config["optimizer"]][0]
        momentum = float(config.get("momentum") or 0.0) if optimizer == "sgd" else 0.0
        return optimizer, momentum, int(config["batch_size"])

    def curve(self, config: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(accuracy by epoch, seconds by epoch) of a config trained with `seed` (the lane's
        seed order, around the table's seeds)."""
        log_lrs, scores, seconds = self.grid[self._key(config)]
        order = self.order[config["optimizer"]]
        column = order[seed % len(order)]
        i, w = between(log_lrs, config["lr"])
        return ((1 - w) * scores[i, column] + w * scores[i + 1, column],
                (1 - w) * seconds[i, column] + w * seconds[i + 1, column])

    def truth(self, config: dict[str, Any], epochs: int | None = None) -> float:
        """The config's mean accuracy at `epochs` (the last by default) over the seeds truth is
        measured on, its learning rate interpolated as in `curve`."""
        log_lrs, scores, _ = self.judge[self._key(config)]
        means = scores[:, :, (epochs or self.epochs) - 1].mean(axis=1)
        i, w = between(log_lrs, config["lr"])
        return float((1 - w) * means[i] + w * means[i + 1])

    def best(self, value: str) -> float:
        """The best true final accuracy of any grid config of a lane: the lane's truth."""
        optimizer = self.lanes[value][0]
        return max(float(scores[:, :, -1].mean(axis=1).max())
                   for (opt, _, _), (_, scores, _) in self.judge.items() if opt == optimizer)


@dataclass
class FakeTrial:
    """What Ray's schedulers read of a trial."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None


class Controller:
    """What a scheduler may use of Ray's TuneController."""

    search_alg = None

    def __init__(self) -> None:
        self.trials: list[FakeTrial] = []

    def get_trials(self) -> list[FakeTrial]:
        return self.trials


@dataclass
class Epoch:
    """One reported epoch of a replayed run."""

    trial_id: str
    epoch: int
    score: float
    time: float  # simulated seconds since the run started
    config: dict[str, Any]


def replay(table: Table, searcher: Any, scheduler: Any, seed_offset: int = 0, slots: int = 2,
           max_epochs: int = 12, limit: int = 10_000) -> tuple[list[Epoch], float]:
    """Run a Ray searcher and scheduler on the table's curves; every epoch reported, in time
    order, and the simulated wall time. A trial trains with its config's seed (0 unless set)
    plus `seed_offset`, so that repetitions see different noise."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    controller, events, epochs = Controller(), [], []
    running: dict[str, tuple[FakeTrial, np.ndarray, np.ndarray, int]] = {}
    now, made, finished = 0.0, 0, False
    while True:
        while not finished and len(running) < slots and made < limit:
            trial_id = f"t{made:05d}"
            config = searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                finished = True
                break
            if not config:
                break
            made += 1
            trial = FakeTrial(trial_id, config)
            controller.trials.append(trial)
            scheduler.on_trial_add(controller, trial)
            scores, seconds = table.curve(config, int(config.get("seed", 0)) + seed_offset)
            planned = min(int(config.get("epochs", max_epochs)), max_epochs)
            running[trial_id] = (trial, scores, seconds, planned)
            heapq.heappush(events, (now + seconds[0], trial_id, 1))
        if not events:
            return epochs, now
        now, trial_id, epoch = heapq.heappop(events)
        trial, scores, seconds, planned = running[trial_id]
        result = {"epoch": epoch, "training_iteration": epoch, SCORE: float(scores[epoch - 1]),
                  "epochs_planned": planned, "diverged": False, "trial_id": trial_id}
        epochs.append(Epoch(trial_id, epoch, result[SCORE], now, trial.config))
        decision = scheduler.on_trial_result(controller, trial, result)
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial_id, result)
        trial.last_result = result
        if decision == TrialScheduler.STOP or epoch >= planned:
            trial.status = "TERMINATED"
            scheduler.on_trial_complete(controller, trial, result)
            searcher.on_trial_complete(trial_id, result)
            del running[trial_id]
        else:
            heapq.heappush(events, (now + seconds[epoch], trial_id, epoch + 1))
