"""Confirmation over seeds: the best config of each compared choice (the top 3 trials where the
space compares nothing) trained again with more seeds, and what those runs say.

The runs are Ray trials of their own experiment, RUN_DIR/confirm/, each config's params.json
holding "confirms": the search trial it trains again, and its "seed". confirmation.csv has one
row per config per seed, the search trial itself where it ran its planned epochs (seed 0), with
the run's metric (val_<metric>) at the last epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from results import verdict
from results.experiment import Experiment, _epochs, _read_json, read_results
from results.leaderboard import score_column, settings, top_trial
from results.metric import Score
from trainables.rundir import CONFIRM_DIR
from trainables.config import CONFIRMS

TOP = 3  # configs confirmed where the space compares nothing
# a config is cheaper where it trains in at most this share of another's seconds: closer times
# are within the timing noise of a shared machine
CHEAPER = 0.9


def columns(score: str) -> list[str]:
    """confirmation.csv's columns (before the compared value, which comes first where there is
    one) for a run scored by the `score` column."""
    losses = [] if score == "val_loss" else ["val_loss"]
    return ["trial_id", "seed", "run", "status", "epochs_run", score, *losses, "seconds"]


def candidates(board: pd.DataFrame, compare: str | None) -> pd.DataFrame:
    """The search trials to confirm: per value of `compare` its top trial (results.leaderboard
    .top_trial: the best that ran in full), or the top 3 overall, those that ran in full first."""
    if compare is not None:
        picks = [top_trial(rows) for _, rows in board.groupby(compare, sort=False, dropna=False)]
        return pd.DataFrame([p for p in picks if p is not None])
    scored = board[board[score_column(board)].notna()]
    full = scored["status"] == "completed"
    return pd.concat([scored[full], scored[~full]]).head(TOP)


def candidate_configs(experiment: Experiment, board: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each candidate's config as confirmation trains it (seed aside), by its search trial."""
    configs = {}
    for _, row in candidates(board, experiment.compare).iterrows():
        config = {**settings(experiment, row), CONFIRMS: str(row["trial_id"])}
        config.pop("seed", None)
        configs[str(row["trial_id"])] = config
    return configs


def more_seeds(config: dict[str, Any], have: list[int], seeds: int) -> list[dict[str, Any]]:
    """The runs of `config` that bring the seeds it `have` up to `seeds`: the lowest free ones."""
    free = (s for s in range(seeds + len(have)) if s not in have)
    return [{**config, "seed": s} for s in list(free)[:max(0, seeds - len(have))]]


def _status(epochs: list[dict[str, Any]], planned: Any, errored: bool) -> str:
    if errored:
        return "errored"
    if epochs and epochs[-1]["diverged"]:
        return "diverged"
    return "completed" if epochs and epochs[-1]["epoch"] >= planned else "unfinished"


def _row(trial_id: str, seed: Any, run: str, status: str, epochs: list[dict[str, Any]],
         score: str) -> dict:
    last = epochs[-1] if epochs else {}
    return {"trial_id": trial_id, "seed": seed, "run": run, "status": status,
            "epochs_run": last.get("epoch", 0), score: last.get(score, math.nan),
            "val_loss": last.get("val_loss", math.nan),
            "seconds": round(sum(e["seconds"] for e in epochs), 1)}


def confirmation_runs(run_dir: Path, score: str = "val_accuracy") -> list[dict[str, Any]]:
    """One row (columns(score)) per confirmation run in RUN_DIR/confirm/, with its status:
    completed, diverged, errored, or unfinished while it has planned epochs to go."""
    rows = []
    for params_path in sorted((Path(run_dir) / CONFIRM_DIR).glob("*/params.json")):
        params = _read_json(params_path)
        trial_id = str(params.get(CONFIRMS))
        epochs = _epochs(read_results(params_path.parent / "result.json"), trial_id, score)
        status = _status(epochs, params.get("epochs", math.inf),
                         (params_path.parent / "error.txt").is_file())
        rows.append(_row(trial_id, params.get("seed", 0), "confirmation", status, epochs, score))
    return rows


def confirmation_table(experiment: Experiment, board: pd.DataFrame) -> pd.DataFrame:
    """One row per confirmed config per seed (columns(), the compared value first); empty before
    confirmation ran."""
    score = experiment.score.column
    rows = confirmation_runs(experiment.run_dir, score)
    confirmed = {r["trial_id"] for r in rows}
    history = experiment.history
    for _, trial in board[board["trial_id"].isin(confirmed)].iterrows():
        if trial["status"] == "completed":  # the search's own run of the config counts
            epochs = history[history["trial_id"] == trial["trial_id"]].sort_values("epoch")
            seed = experiment.params[trial["trial_id"]].get("seed", 0)
            rows.append(_row(trial["trial_id"], seed, "search", "completed",
                             epochs.to_dict("records"), score))
    table = pd.DataFrame(rows, columns=columns(score)).sort_values(["trial_id", "seed"],
                                                                     kind="stable")
    compare = experiment.compare
    if compare is not None:
        values = board.set_index("trial_id")[compare]
        table.insert(0, compare, table["trial_id"].map(values))
    return table.reset_index(drop=True)


def stats(table: pd.DataFrame, compare: str | None, score: Score = Score()) -> pd.DataFrame:
    """Per confirmed config: mean and sample standard deviation of the metric at the last epoch
    over its runs that trained every planned epoch, and their mean training seconds (its cost),
    best mean first in the metric's direction; `runs` counts them all."""
    names = ([compare] if compare else []) + ["trial_id", "mean", "sd", "seeds", "runs", "seconds"]
    if not len(table):
        return pd.DataFrame(columns=names)
    done = table[table["status"] == "completed"]
    scores = done.groupby("trial_id")[score.column]
    out = pd.DataFrame({"mean": scores.mean(), "sd": scores.std(ddof=1), "seeds": scores.size(),
                        "seconds": done.groupby("trial_id")["seconds"].mean()})
    out["runs"] = table.groupby("trial_id").size()
    out = out.reset_index()
    if compare:
        out.insert(0, compare, out["trial_id"].map(table.drop_duplicates("trial_id")
                                                   .set_index("trial_id")[compare]))
    return out.sort_values("mean", ascending=not score.higher_is_better,
                           kind="stable")[names].reset_index(drop=True)


def scores(table: pd.DataFrame, trial_id: str, score: Score) -> np.ndarray:
    """A config's final values of the metric over its runs that trained every planned epoch."""
    done = table[(table["status"] == "completed") & (table["trial_id"] == trial_id)]
    return done[score.column].to_numpy(float)


def looks_of(run: dict[str, Any]) -> tuple[int, ...]:
    """The runs a config has at each of the run's looks (results.verdict.looks): from
    --confirm-seeds up to --max-seeds (one look for runs recorded before there were more)."""
    first = int(run.get("confirm_seeds") or 0)
    return verdict.looks(first, int(run.get("max_seeds") or first))


def margin_of(run: dict[str, Any], score: Score, best: float) -> float:
    """The equivalence margin in the metric's units: --margin (points for an accuracy), else the
    metric's default (results.verdict.default_margin)."""
    given = run.get("margin")
    if given:
        return given / 100 if score.percent else given
    return verdict.default_margin(score.percent, best)


@dataclass
class Verdicts:
    """What the confirmed configs say, each comparison a results.verdict.Gap: the best against
    the runner-up, each training length against the next shorter one (where the run compares
    epochs), and each config that trains in CHEAPER of the best's time against the best (as
    good within the margin, or not), cheapest first."""

    margin: float
    main: tuple[pd.Series, pd.Series, verdict.Gap] | None = None
    ladder: list[tuple[pd.Series, pd.Series, verdict.Gap]] = field(default_factory=list)
    cheaper: list[tuple[pd.Series, verdict.Gap]] = field(default_factory=list)

    def open(self) -> set[str]:
        """The configs of a comparison still open: those more seeds are for."""
        pairs = ([self.main] if self.main else []) + self.ladder
        return {str(row["trial_id"]) for a, b, found in pairs if not found.decided
                for row in (a, b)}


def verdicts(table: pd.DataFrame, found: pd.DataFrame, compare: str | None, score: Score,
             margin: float, looks: tuple[int, ...]) -> Verdicts:
    """The comparisons between the confirmed configs of `found` (stats(): the best mean first),
    from their runs in `table`, each interval held over the planned `looks`."""
    out = Verdicts(margin)
    found = found[found["seeds"] >= 1]
    if not len(found):
        return out

    def compared(a: pd.Series, b: pd.Series) -> verdict.Gap:
        return verdict.gap(scores(table, a["trial_id"], score), scores(table, b["trial_id"], score),
                           score.higher_is_better, margin, looks)

    best = found.iloc[0]
    if len(found) >= 2:
        out.main = (best, found.iloc[1], compared(best, found.iloc[1]))
    if compare == "epochs" and len(found) >= 2:
        ladder = found.sort_values("epochs", key=pd.to_numeric, kind="stable")
        out.ladder = [(long, short, compared(long, short)) for (_, short), (_, long)
                      in zip(ladder.iloc[:-1].iterrows(), ladder.iloc[1:].iterrows())]
    if math.isfinite(best["seconds"]):
        for _, row in cheaper_than(found, best).sort_values("seconds", kind="stable").iterrows():
            out.cheaper.append((row, verdict.as_good(
                scores(table, row["trial_id"], score), scores(table, best["trial_id"], score),
                score.higher_is_better, margin, looks)))
    return out


def decide(table: pd.DataFrame, compare: str | None, run: dict[str, Any]) -> Verdicts:
    """The verdicts of a run's confirmation table (confirmation_table's columns) as they stand."""
    score = Score.of(run)
    found = stats(table, compare, score)
    best = float(found["mean"].iloc[0]) if len(found) else math.nan
    return verdicts(table, found, compare, score, margin_of(run, score, best), looks_of(run))


def cheaper_than(found: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """The configs of `found` that train in at most CHEAPER times `config`'s seconds."""
    return found[found["seconds"] <= CHEAPER * config["seconds"]]


def front(found: pd.DataFrame, score: Score = Score()) -> pd.DataFrame:
    """The confirmed configs no other beats on both cost and mean (the Pareto front), cheapest
    first."""
    rows = found.dropna(subset=["seconds", "mean"]).sort_values(
        ["seconds", "mean"], ascending=[True, not score.higher_is_better], kind="stable")
    keep, best = [], None
    for index, row in rows.iterrows():
        if best is None or score.gain(row["mean"], best) > 0:
            keep.append(index)
            best = row["mean"]
    return rows.loc[keep]
