"""The leaderboard (one row per trial, best first) and the winning trial's config.

Columns of leaderboard.csv, in this order (val_<metric> is the run's metric: val_accuracy by
default, val_rmse for a task scored by RMSE, ...):
    rank               1 is best, by val_<metric> in its direction (highest accuracy, lowest
                       RMSE); trials without a finite one come last, not dropped
    trial_id           Ray's id of the trial
    status             completed, stopped_by_asha, stopped_settled (running when the search
                       settled), diverged, errored or unfinished
    baseline           true for the search's trial 0, the task's baseline settings
    <hyperparameters>  one column per key of the trials' params.json, TrainConfig keys first in
                       their order, then any others sorted; empty where a trial lacks the key
                       (momentum for adam)
    epochs_run         the last epoch the trial reported
    epochs_planned     the trial's epochs, or the run's max_epochs when smaller
    val_<metric>       the trial's score: the metric on the validation split at its last epoch (an
                       accuracy as a fraction: 0.891 is 89.1%); what training its config again for
                       epochs_run epochs reproduces
    val_loss           validation loss at the last epoch (where the metric is not the loss itself)
    train_loss         training loss at the last epoch
    best_val_<metric>  its best value of the metric at any epoch
    best_epoch         the epoch it reached best_val_<metric> at
    train_seconds      training and evaluation seconds summed over the epochs run
    retries            how often Ray started the trial again after a failure (a lost worker or
                       node, or --resume retrying an errored trial)
    trial_dir          the trial's directory inside RUN_DIR
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from results.experiment import Experiment
from results.metric import Score

LEADING = ("rank", "trial_id", "status", "baseline")


def trailing(score: Score) -> tuple[str, ...]:
    """The columns after the hyperparameters, for a run scored by `score`."""
    losses = ("train_loss",) if score.column == "val_loss" else ("val_loss", "train_loss")
    return ("epochs_run", "epochs_planned", score.column, *losses, score.best_column,
            "best_epoch", "train_seconds", "retries", "trial_dir")


TRAILING = trailing(Score())  # a run scored by validation accuracy


def _finite(values: pd.Series) -> pd.Series:
    return values.notna() & (values.abs() != math.inf)


def _scores(epochs: pd.DataFrame, score: Score) -> dict[str, Any]:
    """A trial's score (its last epoch) and its best, from its rows of the history."""
    column = score.column
    seconds = epochs["seconds"].sum(min_count=1)
    if pd.isna(seconds) and len(epochs):
        seconds = epochs["time_total_s"].iloc[-1]  # a trainable that did not report its seconds
    row = {"epochs_run": int(epochs["epoch"].max()) if len(epochs) else 0,
           column: math.nan, "val_loss": math.nan, "train_loss": math.nan,
           score.best_column: math.nan, "best_epoch": pd.NA, "train_seconds": seconds}
    if len(epochs) and _finite(epochs[column]).iloc[-1]:
        last = epochs.iloc[-1]
        row.update({column: last[column], "val_loss": last["val_loss"],
                    "train_loss": last["train_loss"]})
    finite = epochs[_finite(epochs[column])]
    if len(finite):  # the first epoch at the best
        best = finite.loc[finite[column].idxmax() if score.higher_is_better
                          else finite[column].idxmin()]
        row.update({score.best_column: best[column], "best_epoch": int(best["epoch"])})
    return row


def leaderboard(experiment: Experiment) -> pd.DataFrame:
    """One row per trial, ranked by its score, the run's metric at its last epoch, best first in
    the metric's direction; ties go to the trial that trained longer, then to the lower
    validation loss."""
    score = experiment.score
    history = experiment.history.sort_values(["trial_id", "epoch"])
    rows = [_scores(history[history["trial_id"] == trial_id], score)
            for trial_id in experiment.trials["trial_id"]]
    columns = [c for c in trailing(score) if c not in ("epochs_planned", "retries", "trial_dir")]
    board = pd.concat([experiment.trials.reset_index(drop=True),
                       pd.DataFrame(rows, columns=columns)], axis=1)
    board["best_epoch"] = board["best_epoch"].astype("Int64")
    board = board.sort_values([score.column, "epochs_run", "val_loss", "trial_id"],
                              ascending=[not score.higher_is_better, False, True, True],
                              na_position="last", kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[[*LEADING, *experiment.hyperparameters, *trailing(score)]].reset_index(drop=True)


def score_column(board: pd.DataFrame) -> str:
    """The score column of a leaderboard, also one read back from leaderboard.csv: the column
    after epochs_planned."""
    columns = list(board.columns)
    return columns[columns.index("epochs_planned") + 1]


def hyperparameter_columns(board: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a leaderboard, also one read back from leaderboard.csv."""
    columns = list(board.columns)
    first = "baseline" if "baseline" in columns else "status"  # runs written before it had none
    return columns[columns.index(first) + 1:columns.index("epochs_run")]


def varying(board: pd.DataFrame) -> list[str]:
    """The hyperparameters that differ between trials (absent counts as a value), else
    optimizer and lr."""
    names = hyperparameter_columns(board)
    varied = [c for c in names if board[c].astype(str).nunique(dropna=False) > 1]
    return varied or [c for c in ("optimizer", "lr") if c in names]


def settings(experiment: Experiment, row: pd.Series) -> dict[str, Any]:
    """A trial's training config as it planned it: the core's settings and the task's own (every
    hyperparameter of the run), epochs capped by the run's max_epochs, so that a schedule keeps
    the horizon it was tuned with."""
    params = experiment.params[row["trial_id"]]
    config = {k: params[k] for k in experiment.hyperparameters if k in params}
    if pd.notna(row["epochs_planned"]):
        config["epochs"] = int(row["epochs_planned"])
    return config


def top_trial(board: pd.DataFrame) -> pd.Series | None:
    """The best trial that ran its planned epochs, else the best with a finite score."""
    scored = board[board[score_column(board)].notna()]
    full = scored[scored["status"] == "completed"]
    return full.iloc[0] if len(full) else scored.iloc[0] if len(scored) else None


def best_config(experiment: Experiment, board: pd.DataFrame,
                confirmed: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The winner's config for tuning.train, plus BOOKKEEPING_KEYS: the task it trains, the config
    with the best confirmed mean over seeds where `confirmed` (results.confirmation.stats) has
    one, else the top trial that ran in full; None when no trial reached a finite score."""
    column = experiment.score.column
    confirmed = confirmed[confirmed["mean"].notna()] if confirmed is not None else None
    if confirmed is not None and len(confirmed):
        best = confirmed.iloc[0]
        row = board.set_index("trial_id", drop=False).loc[best["trial_id"]]
        mean, sd, seeds = float(best["mean"]), best["sd"], int(best["seeds"])
    else:
        row = top_trial(board)
        if row is None:
            return None
        mean, sd, seeds = float(row[column]), None, 1
    task = (experiment.run.get("task") or {}).get("ref")
    return {**settings(experiment, row), **({"task": task} if task else {}),
            "trial_id": str(row["trial_id"]), "metric": column, "mode": experiment.score.mode,
            column: mean, f"{column}_sd": float(sd) if pd.notna(sd) else None, "seeds": seeds}


def _format(column: str, value: Any, score: Score) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in (score.column, score.best_column):
        return score.format(value, digits=2)
    if column in ("val_loss", "train_loss"):
        return f"{value:.4f}"
    if column == "train_seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def display_table(board: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The top n rows as text, with only the hyperparameters that vary between trials."""
    column = score_column(board)
    score = Score(column)
    losses = ["val_loss"] if column != "val_loss" else []
    columns = ["rank", "trial_id", "status", *varying(board), "epochs_run", column, *losses,
               score.best_column, "train_seconds"]
    top = board.head(n)
    return pd.DataFrame({c: [_format(c, v, score) for v in top[c].tolist()] for c in columns},
                        columns=columns)


def format_top(board: pd.DataFrame, n: int = 5) -> str:
    """The top n trials as an aligned plain-text table, for printing."""
    if not len(board):
        return "(no trials)"
    return display_table(board, n).to_string(index=False)
