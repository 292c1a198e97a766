"""The leaderboard (one row per trial, best first) and the winning trial's config.

Columns of leaderboard.csv, in this order:
    rank               1 is best; trials without a finite validation accuracy come last, not dropped
    trial_id           Ray's id of the trial
    status             completed, stopped_by_asha, diverged, errored or unfinished
    <hyperparameters>  one column per key of the trials' params.json, TrainConfig keys first in
                       their order, then any others sorted; empty where a trial lacks the key
                       (momentum for adam)
    epochs_run         the last epoch the trial reported
    epochs_planned     the trial's epochs, or the run's max_epochs when smaller
    best_val_accuracy  its highest validation accuracy, a fraction (0.891 is 89.1%)
    best_epoch         the epoch it reached best_val_accuracy at
    val_loss           validation loss at best_epoch
    train_loss         training loss at best_epoch
    train_seconds      training and evaluation seconds summed over the epochs run
    trial_dir          the trial's directory inside RUN_DIR
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from results.experiment import Experiment
from trainables.config import BOOKKEEPING_KEYS, KEYS

LEADING = ("rank", "trial_id", "status")
TRAILING = ("epochs_run", "epochs_planned", "best_val_accuracy", "best_epoch", "val_loss",
            "train_loss", "train_seconds", "trial_dir")


def _best(epochs: pd.DataFrame) -> dict[str, Any]:
    finite = epochs[epochs["val_accuracy"].notna() & (epochs["val_accuracy"].abs() != math.inf)]
    seconds = epochs["seconds"].sum(min_count=1)
    if pd.isna(seconds) and len(epochs):
        seconds = epochs["time_total_s"].iloc[-1]  # a trainable that did not report its seconds
    row = {"epochs_run": int(epochs["epoch"].max()) if len(epochs) else 0,
           "best_val_accuracy": math.nan, "best_epoch": pd.NA, "val_loss": math.nan,
           "train_loss": math.nan, "train_seconds": seconds}
    if len(finite):
        best = finite.loc[finite["val_accuracy"].idxmax()]  # the first epoch at the peak
        row.update(best_val_accuracy=best["val_accuracy"], best_epoch=int(best["epoch"]),
                   val_loss=best["val_loss"], train_loss=best["train_loss"])
    return row


def leaderboard(experiment: Experiment) -> pd.DataFrame:
    """One row per trial, ranked by best validation accuracy; ties go to the earlier peak."""
    history = experiment.history
    rows = [_best(history[history["trial_id"] == trial_id])
            for trial_id in experiment.trials["trial_id"]]
    board = pd.concat([experiment.trials.reset_index(drop=True),
                       pd.DataFrame(rows, columns=list(TRAILING[:1] + TRAILING[2:-1]))], axis=1)
    board["best_epoch"] = board["best_epoch"].astype("Int64")
    board = board.sort_values(["best_val_accuracy", "best_epoch", "val_loss", "trial_id"],
                              ascending=[False, True, True, True], na_position="last",
                              kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[[*LEADING, *experiment.hyperparameters, *TRAILING]].reset_index(drop=True)


def hyperparameter_columns(board: pd.DataFrame) -> list[str]:
    """The hyperparameter columns of a leaderboard, also one read back from leaderboard.csv."""
    columns = list(board.columns)
    return columns[columns.index("status") + 1:columns.index("epochs_run")]


def varying(board: pd.DataFrame) -> list[str]:
    """The hyperparameters that differ between trials (absent counts as a value), else
    optimizer and lr."""
    names = hyperparameter_columns(board)
    varied = [c for c in names if board[c].astype(str).nunique(dropna=False) > 1]
    return varied or [c for c in ("optimizer", "lr") if c in names]


def best_config(experiment: Experiment, board: pd.DataFrame) -> dict[str, Any] | None:
    """The winner's TrainConfig keys with epochs set to its best epoch, plus BOOKKEEPING_KEYS;
    None when no trial reached a finite validation accuracy."""
    if not len(board) or pd.isna(board["best_val_accuracy"].iloc[0]):
        return None
    winner = board.iloc[0]
    params = experiment.params[winner["trial_id"]]
    config = {k: params[k] for k in KEYS if k in params}
    config["epochs"] = int(winner["best_epoch"])
    config.update(best_epoch=int(winner["best_epoch"]),
                  val_accuracy=float(winner["best_val_accuracy"]), trial_id=str(winner["trial_id"]))
    return config


def _format(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column == "best_val_accuracy":
        return f"{100 * value:.2f}%"
    if column in ("val_loss", "train_loss"):
        return f"{value:.4f}"
    if column == "train_seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def display_table(board: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The top n rows as text, with only the hyperparameters that vary between trials."""
    columns = ["rank", "trial_id", "status", *varying(board), "epochs_run", "best_val_accuracy",
               "best_epoch", "val_loss", "train_seconds"]
    top = board.head(n)
    return pd.DataFrame({c: [_format(c, v) for v in top[c].tolist()] for c in columns},
                        columns=columns)


def format_top(board: pd.DataFrame, n: int = 5) -> str:
    """The top n trials as an aligned plain-text table, for printing."""
    if not len(board):
        return "(no trials)"
    return display_table(board, n).to_string(index=False)
