"""The leaderboard (one row per trial, best first) and the winning trial's config.

Columns of leaderboard.csv, in this order:
    rank               1 is best, by val_accuracy; trials without a finite one come last, not dropped
    trial_id           Ray's id of the trial
    status             completed, stopped_by_asha, diverged, errored or unfinished
    baseline           true for the search's trial 0, the tutorial's settings
    <hyperparameters>  one column per key of the trials' params.json, TrainConfig keys first in
                       their order, then any others sorted; empty where a trial lacks the key
                       (momentum for adam)
    epochs_run         the last epoch the trial reported
    epochs_planned     the trial's epochs, or the run's max_epochs when smaller
    val_accuracy       the trial's score: validation accuracy at its last epoch, a fraction (0.891
                       is 89.1%); what training its config again for epochs_run epochs reproduces
    val_loss           validation loss at the last epoch
    train_loss         training loss at the last epoch
    best_val_accuracy  its highest validation accuracy at any epoch
    best_epoch         the epoch it reached best_val_accuracy at
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
from trainables.config import KEYS

LEADING = ("rank", "trial_id", "status", "baseline")
TRAILING = ("epochs_run", "epochs_planned", "val_accuracy", "val_loss", "train_loss",
            "best_val_accuracy", "best_epoch", "train_seconds", "retries", "trial_dir")


def _finite(values: pd.Series) -> pd.Series:
    return values.notna() & (values.abs() != math.inf)


def _scores(epochs: pd.DataFrame) -> dict[str, Any]:
    """A trial's score (its last epoch) and its peak, from its rows of the history."""
    seconds = epochs["seconds"].sum(min_count=1)
    if pd.isna(seconds) and len(epochs):
        seconds = epochs["time_total_s"].iloc[-1]  # a trainable that did not report its seconds
    row = {"epochs_run": int(epochs["epoch"].max()) if len(epochs) else 0,
           "val_accuracy": math.nan, "val_loss": math.nan, "train_loss": math.nan,
           "best_val_accuracy": math.nan, "best_epoch": pd.NA, "train_seconds": seconds}
    if len(epochs) and _finite(epochs["val_accuracy"]).iloc[-1]:
        last = epochs.iloc[-1]
        row.update(val_accuracy=last["val_accuracy"], val_loss=last["val_loss"],
                   train_loss=last["train_loss"])
    finite = epochs[_finite(epochs["val_accuracy"])]
    if len(finite):
        best = finite.loc[finite["val_accuracy"].idxmax()]  # the first epoch at the peak
        row.update(best_val_accuracy=best["val_accuracy"], best_epoch=int(best["epoch"]))
    return row


def leaderboard(experiment: Experiment) -> pd.DataFrame:
    """One row per trial, ranked by its score, the validation accuracy of its last epoch; ties
    go to the trial that trained longer, then to the lower validation loss."""
    history = experiment.history.sort_values(["trial_id", "epoch"])
    rows = [_scores(history[history["trial_id"] == trial_id])
            for trial_id in experiment.trials["trial_id"]]
    columns = [c for c in TRAILING if c not in ("epochs_planned", "retries", "trial_dir")]
    board = pd.concat([experiment.trials.reset_index(drop=True),
                       pd.DataFrame(rows, columns=columns)], axis=1)
    board["best_epoch"] = board["best_epoch"].astype("Int64")
    board = board.sort_values(["val_accuracy", "epochs_run", "val_loss", "trial_id"],
                              ascending=[False, False, True, True], na_position="last",
                              kind="stable")
    board.insert(0, "rank", range(1, len(board) + 1))
    return board[[*LEADING, *experiment.hyperparameters, *TRAILING]].reset_index(drop=True)


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
    """A trial's training config as it planned it: its TrainConfig keys, epochs capped by the
    run's max_epochs, so that a schedule keeps the horizon it was tuned with."""
    params = experiment.params[row["trial_id"]]
    config = {k: params[k] for k in KEYS if k in params}
    if pd.notna(row["epochs_planned"]):
        config["epochs"] = int(row["epochs_planned"])
    return config


def top_trial(board: pd.DataFrame) -> pd.Series | None:
    """The best trial that ran its planned epochs, else the best with a finite score."""
    scored = board[board["val_accuracy"].notna()]
    full = scored[scored["status"] == "completed"]
    return full.iloc[0] if len(full) else scored.iloc[0] if len(scored) else None


def best_config(experiment: Experiment, board: pd.DataFrame,
                confirmed: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The winner's config for tuning.train, plus BOOKKEEPING_KEYS: the config with the best
    confirmed mean over seeds where `confirmed` (results.confirmation.stats) has one, else the
    top trial that ran in full; None when no trial reached a finite validation accuracy."""
    confirmed = confirmed[confirmed["mean"].notna()] if confirmed is not None else None
    if confirmed is not None and len(confirmed):
        best = confirmed.iloc[0]
        row = board.set_index("trial_id", drop=False).loc[best["trial_id"]]
        score = {"val_accuracy": float(best["mean"]),
                 "val_accuracy_sd": float(best["sd"]) if pd.notna(best["sd"]) else None,
                 "seeds": int(best["seeds"])}
    else:
        row = top_trial(board)
        if row is None:
            return None
        score = {"val_accuracy": float(row["val_accuracy"]), "val_accuracy_sd": None, "seeds": 1}
    return {**settings(experiment, row), "trial_id": str(row["trial_id"]), **score}


def _format(column: str, value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if column in ("val_accuracy", "best_val_accuracy"):
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
    columns = ["rank", "trial_id", "status", *varying(board), "epochs_run", "val_accuracy",
               "val_loss", "best_val_accuracy", "train_seconds"]
    top = board.head(n)
    return pd.DataFrame({c: [_format(c, v) for v in top[c].tolist()] for c in columns},
                        columns=columns)


def format_top(board: pd.DataFrame, n: int = 5) -> str:
    """The top n trials as an aligned plain-text table, for printing."""
    if not len(board):
        return "(no trials)"
    return display_table(board, n).to_string(index=False)
