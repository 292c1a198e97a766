"""Confirmation over seeds: the best config of each compared choice (the top 3 trials where the
space compares nothing) trained again with more seeds, and what those runs say.

The runs are Ray trials of their own experiment, RUN_DIR/confirm/, each config's params.json
holding "confirms": the search trial it trains again, and its "seed". confirmation.csv has one
row per config per seed, the search trial itself where it ran its planned epochs (seed 0), with
the run's metric (val_<metric>) at the last epoch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from results.experiment import Experiment, _epochs, _read_json, read_results
from results.leaderboard import score_column, settings, top_trial
from results.metric import Score
from results.rundir import CONFIRM_DIR
from trainables.config import CONFIRMS

TOP = 3  # configs confirmed where the space compares nothing
NOISE = 0.05  # Welch's p at or above which a gap is within the seed noise
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


def plan(experiment: Experiment, board: pd.DataFrame, seeds: int) -> list[dict[str, Any]]:
    """The configs to train so that each candidate has `seeds` runs of its planned epochs: its
    search trial counts as one where it ran in full; the others take the next free seeds."""
    configs = []
    for _, row in candidates(board, experiment.compare).iterrows():
        config = settings(experiment, row)
        have = {config.get("seed", 0)} if row["status"] == "completed" else set()
        new = [s for s in range(seeds + len(have)) if s not in have][:seeds - len(have)]
        configs += [{**config, "seed": s, CONFIRMS: str(row["trial_id"])} for s in new]
    return configs


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


def welch_p(table: pd.DataFrame, a: str, b: str, score: Score = Score()) -> float:
    """Welch's t-test (unequal variances, two-sided) of two configs' final values of the metric
    over seeds; NaN when either has fewer than 2 runs or neither varies."""
    from scipy.stats import ttest_ind

    done = table[table["status"] == "completed"]
    x = done.loc[done["trial_id"] == a, score.column].to_numpy()
    y = done.loc[done["trial_id"] == b, score.column].to_numpy()
    if len(x) < 2 or len(y) < 2 or (x.std() == 0 and y.std() == 0):
        return math.nan
    with warnings.catch_warnings():  # scipy warns of lost precision where the runs nearly agree
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(x, y, equal_var=False).pvalue)


def within_noise(table: pd.DataFrame, a: pd.Series, b: pd.Series,
                 score: Score = Score()) -> tuple[bool, float]:
    """(whether configs a and b, rows of stats(), are even within the seed noise, Welch's p of
    the two): both confirmed over 2 seeds or more and their gap not significant (p >= NOISE), the
    rule by which the answer calls two choices even."""
    p = welch_p(table, a["trial_id"], b["trial_id"], score)
    return min(a["seeds"], b["seeds"]) >= 2 and math.isfinite(p) and p >= NOISE, p


def cheapest_as_good(table: pd.DataFrame, found: pd.DataFrame,
                     score: Score = Score()) -> tuple[pd.Series, float] | None:
    """Of the configs `found` (stats(): the best mean first), the one of lowest training cost
    (mean seconds per run) that is as good as the best within the seed noise, with Welch's p
    against the best; None where none is cheaper (cheaper_than), or every cheaper one is worse."""
    best = found.iloc[0]
    cheaper = cheaper_than(found, best).sort_values("seconds", kind="stable")
    for _, row in cheaper.iterrows():
        even, p = within_noise(table, best, row, score)
        if even:
            return row, p
    return None


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
