"""Runs that went wrong end in an answer that says what happened and what to check: never a
best_config.json of a diverged trial, never a traceback. Hand-made run directories, as the
reports read them."""

from __future__ import annotations

import json
import math

import pandas as pd
from optuna.trial import TrialState

from results import report
from results.confirmation import candidate_configs, candidates
from results.experiment import load_experiment
from results.leaderboard import leaderboard
from test_results import TRIALS, make_run_dir

NAN = math.nan
DIVERGED = TrialState.PRUNED


def nan_model_trials() -> dict:
    """A model whose outputs are NaN: every loss NaN, every trial diverged at epoch 1, and the
    accuracy of NaN outputs (their argmax, class 0) a finite 9.8%."""
    return {f"nanmo_0000{i}": ({"optimizer": opt, "lr": lr, "batch_size": 64}, [0.098],
                               "diverged", DIVERGED)
            for i, (opt, lr) in enumerate([("adam", 0.001), ("sgd", 0.01), ("adam", 0.003),
                                           ("sgd", 0.1)])}


def finite_accuracy_when_diverged(run_dir, accuracy: float = 0.098) -> None:
    """The diverged trials' result lines: the losses NaN, the accuracy finite (as our trainable
    reports an epoch whose loss is NaN)."""
    for path in run_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            if row["diverged"]:
                row["val_accuracy"] = accuracy
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_every_trial_diverged_answers_so_and_writes_no_best_config(tmp_path):
    """Every trial diverged (a finite accuracy beside NaN losses): the answer says they all
    diverged and what to check, no best_config.json names one of them, and confirmation has
    nothing to train."""
    run_dir = make_run_dir(tmp_path / "run", trials=nan_model_trials(), confirm_seeds=3)
    finite_accuracy_when_diverged(run_dir)
    paths = report.write_reports(run_dir)
    first = paths["summary"].read_text().splitlines()[0]
    assert first.startswith("Every trial diverged (4 trials): "), first
    assert "9.8%" not in first
    assert "best_config" not in paths and not (run_dir / "best_config.json").exists()
    experiment = load_experiment(run_dir)
    board = leaderboard(experiment)
    assert board["val_accuracy"].isna().all()
    assert candidate_configs(experiment, board) == {}


def test_a_value_that_diverged_at_every_setting_is_named(tmp_path):
    """SGD diverged at every setting tried: the answer says so, beside Adam's result, and
    confirmation trains Adam's best only."""
    trials = {t: v for t, v in TRIALS.items() if v[0]["optimizer"] == "adam" and v[2] != "diverged"}
    trials.update({f"sgdnan_0000{i}": ({"optimizer": "sgd", "lr": lr, "batch_size": 64,
                                        "momentum": 0.9}, [0.3, NAN], "diverged", DIVERGED)
                   for i, lr in enumerate([0.5, 0.8])})
    run_dir = make_run_dir(tmp_path / "run", trials=trials, confirm_seeds=3)
    paths = report.write_reports(run_dir)
    first = paths["summary"].read_text().splitlines()[0]
    assert "SGD diverged at every setting tried (2 trials)" in first, first
    experiment = load_experiment(run_dir)
    assert set(candidates(leaderboard(experiment), "optimizer")["optimizer"]) == {"adam"}


def test_a_metric_named_loss_reports_lowest_first(tmp_path):
    """A task scored by its validation loss (METRIC = "loss", lower is better): the reports are
    written, the lowest loss ranked first, and the answer names the loss."""
    trials = {t: v for t, v in TRIALS.items() if v[2] in ("completed", "stopped_by_asha")}
    run_dir = make_run_dir(tmp_path / "run", trials=trials, metric="val_loss", mode="min")
    paths = report.write_reports(run_dir)
    board = pd.read_csv(paths["leaderboard"])
    assert board["val_loss"].tolist() == sorted(board["val_loss"].tolist())
    assert list(board.columns).count("val_loss") == 1
    first = paths["summary"].read_text().splitlines()[0]
    assert "validation loss (lower is better)" in first, first


def test_a_metric_that_never_moves_is_called_out(tmp_path):
    """Every trial scored the same at every epoch: the answer says the metric did not respond to
    any setting, and what to check, instead of naming a winner."""
    trials = {t: (params, [0.5] * len(scores), reason, state)
              for t, (params, scores, reason, state) in TRIALS.items()
              if reason in ("completed", "stopped_by_asha")}
    run_dir = make_run_dir(tmp_path / "run", trials=trials)
    first = report.write_reports(run_dir)["summary"].read_text().splitlines()[0]
    assert first.startswith("Every trial scored 50.0% at every epoch: "), first
    assert "metric" in first


def test_a_value_without_a_finished_trial_is_said_to_be_unconfirmed(tmp_path):
    """Confirmation needs a trial of each value that ran its planned epochs; where SGD has none
    (every SGD trial cut short), the answer says SGD could not be confirmed and why."""
    trials = {t: v for t, v in TRIALS.items() if v[2] != "diverged"}
    trials["abcde_00001"] = (trials["abcde_00001"][0], [0.6, 0.7], "stopped_by_asha",
                             TrialState.PRUNED)
    run_dir = make_run_dir(tmp_path / "run", trials=trials, confirm_seeds=3)
    first = report.write_reports(run_dir)["summary"].read_text().splitlines()[0]
    assert "No SGD trial ran its planned epochs" in first, first


def test_the_leaderboard_ranks_no_diverged_trial_above_a_scored_one(tmp_path):
    """A diverged trial's score is no score, however high its last accuracy."""
    trials = {**nan_model_trials(), "abcde_00003": TRIALS["abcde_00003"]}
    run_dir = make_run_dir(tmp_path / "run", trials=trials)
    finite_accuracy_when_diverged(run_dir, accuracy=0.9)
    board = leaderboard(load_experiment(run_dir))
    assert board.iloc[0]["trial_id"] == "abcde_00003"
    assert board.iloc[1:]["val_accuracy"].isna().all()


def test_a_config_whose_confirmation_runs_all_failed_is_not_called_confirmed(tmp_path):
    """Adam confirmed over 3 seeds, none of SGD's further runs written (all lost): the answer is
    confirmation's, says Adam alone was confirmed, not "Not confirmed over seeds", and has no
    "nan" in it."""
    from test_results import write_confirmation

    run_dir = make_run_dir(tmp_path / "run", confirm_seeds=3, max_seeds=3)
    write_confirmation(run_dir, {"abcde_00000": [(1, 0.86), (2, 0.85)]})
    first = report.write_reports(run_dir)["summary"].read_text().splitlines()[0]
    assert not first.startswith("Not confirmed"), first
    assert first.startswith("Only Adam was confirmed: ") and "over 3 seeds for Adam" in first, first
    assert "nan" not in first.lower(), first
