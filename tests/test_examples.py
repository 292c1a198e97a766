"""The examples a newcomer copies, each tuned for real on small data: the regression on the
diabetes table scikit-learn ships, through `python -m tuning.run`; the ImageFolder CNN on
generated PNGs, through `tuning.tune()` from Python. Each run has the race, the baseline as trial
0, confirmation and the report. The pytorch/examples MNIST script runs the same way on a
two-node cluster (test_tuning.py), sharing that test's Ray run."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import ROOT, write_image_folder
from results.metric import Score
from runs import assert_raced_confirmed_and_reported, run_cli, trial_results
from trainables.task import load_task
from tuning.run import main
from results.study import journal

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"
SMALL = {"num_samples": 3, "max_epochs": 2, "grace_period": 1, "confirm_seeds": 2,
         "max_seeds": 2, "full_budget": True}
# the regression's run is the one whose study and reports are checked against each other: enough
# trials for ASHA to stop some
ASHA = {"num_samples": 8, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2,
        "confirm_seeds": 2, "max_seeds": 2}
# tuning.tune() as a notebook calls it
TUNE = """
import json, sys
import tuning

result = tuning.tune(sys.argv[1], data_dir=sys.argv[2], storage_path=sys.argv[3], name="images",
                     **json.loads(sys.argv[4]))
print("TUNED " + json.dumps({"run_dir": str(result.run_dir), "answer": result.answer,
                             "status": result.status, "best_config": result.best_config,
                             "rows": len(result.leaderboard)}))
"""


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    """The regression example copied where a user would keep it, run by the command with
    --final: (the copy, its run directory)."""
    folder = tmp_path_factory.mktemp("mine")
    task = shutil.copy(EXAMPLES / "diabetes_regression.py", folder / "my_regression.py")
    done = run_cli("--space", task, *[f"--{k.replace('_', '-')}={v}" for k, v in ASHA.items()],
                   "--full-budget", "--final", "--storage-path", folder / "runs", "--name", "dia",
                   timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[search] 8 of 8 trials ended" in done.stdout
    return folder / "my_regression.py", folder / "runs" / "dia"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """tuning.tune() on the ImageFolder example, in a Python process of its own."""
    folder = tmp_path_factory.mktemp("api")
    write_image_folder(folder / "images")
    done = subprocess.run([sys.executable, "-c", TUNE, str(EXAMPLES / "imagefolder_cnn.py"),
                           str(folder / "images"), str(folder / "runs"), json.dumps(SMALL)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("TUNED ")]
    return json.loads(line[0].removeprefix("TUNED "))


def baseline(path):
    return load_task(str(path)).baseline


def test_the_regression_ranks_lowest_rmse_first_and_says_lower_is_better(diabetes):
    """The diabetes example: the leaderboard ranks by validation RMSE, lowest first; the answer
    names RMSE, says lower is better and gives each optimizer's confirmed mean ± sd; final
    training tests on the task's test split."""
    task, run_dir = diabetes
    board, summary = assert_raced_confirmed_and_reported(run_dir, baseline(task), "val_rmse",
                                                         ASHA)
    scored = board["val_rmse"].dropna().tolist()
    assert scored == sorted(scored) and len(scored) >= 6
    assert "val_accuracy" not in board.columns
    answer = summary.splitlines()[0]
    assert "final validation RMSE (lower is better) " in answer, answer
    confirmed = pd.read_csv(run_dir / "confirmation.csv")
    for optimizer, runs in confirmed.groupby("optimizer"):
        mean, sd = runs["val_rmse"].mean(), runs["val_rmse"].std()
        shown = Score("val_rmse", "min").spread(mean, sd)
        assert f"{shown} over 2 seeds for {'SGD' if optimizer == 'sgd' else 'Adam'}" in answer
    base = board[board["baseline"]].iloc[0]
    assert "the baseline settings" in answer, answer  # beaten by a margin, or the best itself
    assert "(optimizer adam, lr 0.001, batch_size 32, dropout 0, width 64" in answer, answer
    final = json.loads((run_dir / "final" / "final_metrics.json").read_text())
    assert final["metric"] == "rmse" and 20 < final["test_rmse"] < 200
    assert f"{final['test_rmse']:.4g} test RMSE after 4 epochs" in summary
    best = json.loads((run_dir / "best_config.json").read_text())
    assert best["task"] == str(task) and {"width", "dropout"} <= set(best)
    assert best["metric"] == "val_rmse" and best["trial_id"] in set(confirmed["trial_id"])
    assert base["epochs_run"] == 4  # the baseline is never stopped early


def test_the_search_hands_out_no_trial_before_a_slot_is_free(diabetes):
    """TPE proposes each trial when a slot frees, from every trial ended by then: the study never
    has more trials handed out and not yet ended than Ray runs at once (one a CPU here). A trial
    queued ahead would be proposed without the last results, and would still run after the
    search settled."""
    _, run_dir = diabetes
    study = optuna.load_study(study_name="dia", storage=journal(run_dir))
    asked = sorted(t.datetime_start for t in study.trials)
    told = [t.datetime_complete for t in study.trials]
    at_once = max(sum(start <= at and end > at for start, end in
                      ((t.datetime_start, t.datetime_complete) for t in study.trials))
                  for at in asked)
    assert all(told) and at_once <= (os.cpu_count() or 1), at_once


def test_the_study_holds_what_asha_did_and_the_reports_agree(diabetes):
    """ASHA stops some trials early; the study holds them as PRUNED with their per-epoch values,
    and trials that ran all epochs as COMPLETE with their last epoch's score; the leaderboard,
    the trials' rows and the cost line agree with it."""
    _, run_dir = diabetes
    study = optuna.load_study(study_name="dia", storage=journal(run_dir))
    states = Counter(t.state for t in study.trials)
    assert len(study.trials) == 8
    assert states[TrialState.PRUNED] >= 1 and states[TrialState.COMPLETE] >= 1, states
    reported = trial_results(run_dir)
    assert len(reported) == 8
    for trial in study.trials:
        rows = reported[trial.user_attrs["ray_trial_id"]]
        epochs = [r["epoch"] for r in rows]
        assert sorted(trial.intermediate_values) == epochs
        assert list(trial.intermediate_values.values()) == [r["val_rmse"] for r in rows]
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["reason"] == "stopped_by_asha" and epochs[-1] < 4
        else:
            assert trial.state == TrialState.COMPLETE and epochs == [1, 2, 3, 4]
            assert trial.value == rows[-1]["val_rmse"]
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board["rank"]) == list(range(1, 9))
    expected = {t.user_attrs["ray_trial_id"]: "completed" if t.state == TrialState.COMPLETE
                else "stopped_by_asha" for t in study.trials}
    assert dict(zip(board["trial_id"], board["status"])) == expected
    history = pd.read_csv(run_dir / "history.csv")
    confirmed = pd.read_csv(run_dir / "confirmation.csv")
    stopped, planned = (board["status"] == "stopped_by_asha").sum(), board["epochs_planned"].sum()
    assert len(history) == board["epochs_run"].sum()
    extra = confirmed[confirmed["run"] == "confirmation"]
    summary = (run_dir / "summary.md").read_text()
    assert (f"ASHA stopped {stopped} of 8 trials: {len(history)} of {planned} planned epochs run, "
            f"{100 * (1 - len(history) / planned):.0f}% saved") in summary
    assert f"Confirmation trained {len(extra)} more runs (" in summary
    assert f"), {extra['epochs_run'].sum()} epochs" in summary
    for name in ("learning_curves", "metric_vs_lr", "anytime", "optimization_history",
                 "param_importances", "summary.md", "report.html"):
        written = list(run_dir.glob(f"**/{name}*"))
        assert written and all(p.stat().st_size > 1000 for p in written), name


def test_a_resume_of_a_run_whose_task_file_changed_is_refused(diabetes, monkeypatch, capsys):
    """The task file edited after the run: --resume says what changed, in one line, exit 2,
    before Ray starts."""
    import ray

    task, run_dir = diabetes
    text = task.read_text()
    task.write_text(text.replace('HYPERPARAMETERS = {"width": 64,',
                                 'HYPERPARAMETERS = {"width": 32,'))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["--space", str(task), "--resume", "--name", "dia", "--storage-path",
                  str(run_dir.parent)])
    finally:
        task.write_text(text)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith("HYPERPARAMETERS"))
    assert lines == [
        f"python -m tuning.run: error: {task} changed since the run started (line {line} reads "
        '`HYPERPARAMETERS = {"width": 32, "dropout": 0.0}`, was `HYPERPARAMETERS = {"width": '
        '64, "dropout": 0.0}`); a resume needs the files the run started with (start another '
        "with a new --name)"]
    assert not ray.is_initialized()


def test_the_imagefolder_cnn_trains_map_style_data_in_its_trials(tuned):
    """The ImageFolder example through tuning.tune(): the images are read in the trials through
    a DataLoader; the leaderboard and the answer come back to Python."""
    result = tuned
    run_dir = Path(result["run_dir"])
    board, summary = assert_raced_confirmed_and_reported(
        run_dir, baseline(EXAMPLES / "imagefolder_cnn.py"), "val_accuracy", SMALL)
    assert result["status"] == "finished" and result["rows"] == SMALL["num_samples"]
    assert result["answer"] == summary.split("\n\n")[0]
    assert "final validation accuracy (higher is better)" in result["answer"]
    assert result["best_config"]["task"] == str(EXAMPLES / "imagefolder_cnn.py")
    assert json.loads((run_dir / "run.json").read_text())["data"]["train"] == 90
    assert board["val_accuracy"].max() > 0.6  # three classes, learned from 90 images
