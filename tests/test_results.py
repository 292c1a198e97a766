"""Reports from a hand-made experiment directory: leaderboard, history, best config, figures."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState, create_trial

from conftest import make_split, write_idx_files
from results import report
from results.experiment import ReportError, load_experiment, read_results
from results.figures import FIGURES, asha_rungs
from results.study_figures import first_rung_study
from results.leaderboard import LEADING, TRAILING, leaderboard
from results.metric import Score
from trainables.config import bookkeeping, parse_config

ROOT = Path(__file__).resolve().parents[1]
RUN = {"name": "sgd_vs_adam", "space": "sgd_vs_adam", "space_ref": "sgd_vs_adam",
       "description": "hand-made",
       "question": "SGD or Adam, and at what learning rate?", "compare": "optimizer",
       "metric": "val_accuracy", "mode": "max",
       "max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "num_samples": 6, "seed": 0,
       "study_name": "sgd_vs_adam", "study_file": "optuna.journal", "status": "finished",
       "started_at": "2026-01-01T00:00:00", "finished_at": "2026-01-01T00:10:00"}
NAN = math.nan
# trial_id: (params sampled, val_accuracy per epoch, how it ended, Optuna state)
TRIALS = {
    "abcde_00000": ({"optimizer": "adam", "lr": 0.001, "batch_size": 64}, [0.70, 0.80, 0.85, 0.84],
                    "completed", TrialState.COMPLETE),
    "abcde_00001": ({"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "momentum": 0.9},
                    [0.60, 0.70, 0.78, 0.82], "completed", TrialState.COMPLETE),
    "abcde_00002": ({"optimizer": "sgd", "lr": 0.01, "batch_size": 64, "momentum": 0.5},
                    [0.40, 0.55], "stopped_by_asha", TrialState.PRUNED),
    "abcde_00003": ({"optimizer": "adam", "lr": 0.01, "batch_size": 32}, [0.50],
                    "stopped_by_asha", TrialState.PRUNED),
    "abcde_00004": ({"optimizer": "adam", "lr": 0.5, "batch_size": 64}, [NAN], "diverged",
                    TrialState.PRUNED),
    "abcde_00005": ({"optimizer": "sgd", "lr": 0.3, "batch_size": 64, "momentum": 0.9}, [],
                    "errored", TrialState.FAIL),
}
ANSWER = ("Not confirmed over seeds (one run each; --confirm-seeds runs more): validation accuracy "
          "(higher is better) Adam 84.0% after 4 epochs (lr 0.001, batch_size 64); SGD 82.0% after "
          "4 epochs (lr 0.05, batch_size 32, momentum 0.9).")


def write_study(run_dir: Path, trials: dict = TRIALS) -> None:
    """The Optuna journal the Ray side persists: one study, a trial per Ray trial."""
    storage = JournalStorage(JournalFileBackend(str(run_dir / RUN["study_file"])))
    study = optuna.create_study(study_name=RUN["study_name"], storage=storage, direction="maximize")
    space = {"optimizer": CategoricalDistribution(["sgd", "adam"]),
             "lr": FloatDistribution(1e-4, 1.0, log=True),
             "batch_size": CategoricalDistribution([32, 64]),
             "momentum": FloatDistribution(0.0, 0.99)}
    for trial_id, (params, accuracies, reason, state) in trials.items():
        finite = {e: a for e, a in enumerate(accuracies, 1) if not math.isnan(a)}
        study.add_trial(create_trial(
            params=params, distributions={k: space[k] for k in params}, state=state,
            value=accuracies[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=finite, user_attrs={"ray_trial_id": trial_id, "reason": reason}))


def write_trial(run_dir: Path, index: int, trial_id: str, params: dict, accuracies: list[float],
                reason: str, metric: str = "val_accuracy", seconds: float = 1.5) -> Path:
    """A Ray trial directory: params.json, result.json lines, error.txt when it errored. With a
    metric other than accuracy, the trial reports it as RMSE(accuracy) below. Every epoch takes
    `seconds`; the trial plans the run's max_epochs unless its params set epochs."""
    config = {"epochs": RUN["max_epochs"], **params, "model": "mlp", "seed": 0}
    name = f"train_{trial_id}_{index}_batch_size={params['batch_size']},lr={params['lr']}"
    trial_dir = run_dir / name
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(config))
    lines = []
    for epoch, accuracy in enumerate(accuracies, 1):
        diverged = reason == "diverged" and epoch == len(accuracies)
        lines.append(json.dumps({
            "epoch": epoch, metric: accuracy if metric == "val_accuracy" else rmse(accuracy),
            "val_loss": NAN if diverged else 1 - accuracy,
            "train_loss": NAN if diverged else 1.1 - accuracy, "lr": params["lr"],
            "seconds": seconds,
            "diverged": diverged, "trial_id": trial_id, "training_iteration": epoch,
            "time_total_s": 1.6 * epoch, "done": epoch == len(accuracies), "config": config,
            "pid": 123, "hostname": "elsewhere", "timestamp": 1767225600 + epoch}))
    (trial_dir / "result.json").write_text("".join(line + "\n" for line in lines))
    if reason == "errored":
        (trial_dir / "error.txt").write_text("Traceback (most recent call last):\n  ...\n"
                                             "RuntimeError: CUDA out of memory\n")
    return trial_dir


def rmse(accuracy: float) -> float:
    """The regression runs' score for a trial of the accuracy runs: lower where that is higher."""
    return 100 * (1 - accuracy)


def make_run_dir(path: Path, study: bool = True, trials: dict = TRIALS, seconds: float = 1.5,
                 **run: object) -> Path:
    """A hand-made RUN_DIR following the experiment directory contract."""
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({**RUN, **run}))
    for index, (trial_id, (params, accuracies, reason, _)) in enumerate(trials.items()):
        write_trial(path, index, trial_id, params, accuracies, reason,
                    run.get("metric", "val_accuracy"), seconds)
    if study:
        write_study(path, trials)
    return path


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    run_dir = make_run_dir(tmp_path_factory.mktemp("runs") / "sgd_vs_adam")
    return run_dir, report.write_reports(run_dir)


def test_leaderboard_columns_are_stable(reported):
    """leaderboard.csv holds the documented columns, one per hyperparameter in between."""
    board = pd.read_csv(reported[1]["leaderboard"])
    hyper = ["optimizer", "lr", "batch_size", "epochs", "momentum", "seed", "model"]
    assert list(board.columns) == [*LEADING, *hyper, *TRAILING]


def test_leaderboard_ranks_best_first_and_nan_last(reported):
    """Trials are ranked by their score, the validation accuracy of their last epoch; those
    without one come last, not dropped. The peak is kept beside it."""
    board = pd.read_csv(reported[1]["leaderboard"])
    assert board["trial_id"].tolist() == [f"abcde_0000{i}" for i in range(6)]
    assert board["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert board["val_accuracy"].tolist()[:4] == [0.84, 0.82, 0.55, 0.50]
    assert board["best_val_accuracy"].tolist()[:4] == [0.85, 0.82, 0.55, 0.50]
    assert board["val_accuracy"].iloc[4:].isna().all()
    winner = board.iloc[0]
    assert (winner["best_epoch"], winner["epochs_run"], winner["epochs_planned"]) == (3, 4, 4)
    assert winner["val_loss"] == pytest.approx(0.16) and winner["train_loss"] == pytest.approx(0.26)
    assert not board["baseline"].any()
    assert winner["train_seconds"] == pytest.approx(6.0)
    assert board["momentum"].isna().tolist() == [True, False, False, True, True, False]


def test_status_reasons_come_from_disk(reported):
    """errored, diverged, completed and stopped_by_asha are read from the trial directories."""
    board = pd.read_csv(reported[1]["leaderboard"])
    assert dict(zip(board["trial_id"], board["status"])) == {t: v[2] for t, v in TRIALS.items()}


def test_interrupted_run_leaves_early_trials_unfinished(tmp_path):
    """Without a finished run, a trial short of its epochs is unfinished, not stopped by ASHA."""
    experiment = load_experiment(make_run_dir(tmp_path / "run", study=False, status="interrupted"))
    status = dict(zip(experiment.trials["trial_id"], experiment.trials["status"]))
    assert status["abcde_00002"] == status["abcde_00003"] == "unfinished"
    assert status["abcde_00000"] == "completed"


def test_a_trial_that_reported_nothing_keeps_its_ray_id(tmp_path):
    """A trial cut before its first epoch has only params.json in trial_<id>/: its id is the
    one the study and Ray know, not the directory's name, and it is unfinished."""
    run_dir = make_run_dir(tmp_path / "run", study=False, status="interrupted")
    (run_dir / "trial_0f1e2d3c").mkdir()
    (run_dir / "trial_0f1e2d3c" / "params.json").write_text(json.dumps({"optimizer": "sgd",
                                                                        "lr": 0.01}))
    trials = load_experiment(run_dir).trials.set_index("trial_id")
    assert trials.loc["0f1e2d3c", "status"] == "unfinished"
    assert trials.loc["0f1e2d3c", "retries"] == 0


def test_history_has_one_row_per_trial_epoch(reported):
    """history.csv holds every reported epoch with its metrics and the trial's hyperparameters."""
    history = pd.read_csv(reported[1]["history"])
    assert len(history) == 4 + 4 + 2 + 1 + 1
    assert list(history.columns[:9]) == ["trial_id", "epoch", "val_accuracy", "val_loss",
                                         "train_loss", "lr", "seconds", "diverged", "time_total_s"]
    assert {"config/optimizer", "config/lr", "config/momentum"} <= set(history.columns)
    assert "pid" not in history.columns and "config" not in history.columns
    adam = history[history["trial_id"] == "abcde_00000"]
    assert adam["val_accuracy"].tolist() == [0.70, 0.80, 0.85, 0.84]
    assert history["diverged"].sum() == 1


def test_result_lines_cut_short_or_repeated_are_tolerated(tmp_path):
    """Half-written result lines and params.json are skipped; a repeated epoch keeps its last."""
    path = tmp_path / "result.json"
    path.write_text('{"epoch": 1, "val_accuracy": 0.5}\n{"epoch": 1, "val_accuracy": 0.6}\n{"epo')
    assert [r["val_accuracy"] for r in read_results(path)] == [0.5, 0.6]
    run_dir = make_run_dir(tmp_path / "run", study=False)
    trial = next(run_dir.glob("train_abcde_00003_*"))
    (trial / "result.json").write_text((trial / "result.json").read_text()
                                       + '{"epoch": 1, "val_accuracy": 0.52, "val_loss": 0.4, '
                                         '"train_loss": 0.5, "trial_id": "abcde_00003"}\n{"ep')
    (run_dir / "train_abcde_00006_6").mkdir()
    (run_dir / "train_abcde_00006_6" / "params.json").write_text('{"optimizer": "sg')
    experiment = load_experiment(run_dir)
    history = experiment.history
    assert history[history["trial_id"] == "abcde_00003"]["val_accuracy"].tolist() == [0.52]
    assert len(experiment.trials) == 6 and experiment.skipped[0].startswith(
        "trial directory train_abcde_00006_6 skipped: cannot read")


def test_epochs_the_study_heard_after_the_last_synced_line_are_read_from_it(tmp_path):
    """A run killed after the study heard a trial's last epochs but before Ray copied its
    result.json: the trial is ranked on every epoch the study heard, with the score alone."""
    run_dir = make_run_dir(tmp_path / "run")
    trial = next(run_dir.glob("train_abcde_00000_*")) / "result.json"
    trial.write_text("".join(trial.read_text().splitlines(keepends=True)[:2]))
    experiment = load_experiment(run_dir)
    rows = experiment.history[experiment.history["trial_id"] == "abcde_00000"]
    assert rows["epoch"].tolist() == [1, 2, 3, 4]
    assert rows["val_accuracy"].tolist() == [0.70, 0.80, 0.85, 0.84]
    assert rows["val_loss"].iloc[:2].notna().all() and rows["val_loss"].iloc[2:].isna().all()
    board = leaderboard(experiment).set_index("trial_id")
    assert board.loc["abcde_00000", ["status", "epochs_run", "val_accuracy", "best_epoch"]].tolist() \
        == ["completed", 4, 0.84, 3]


def test_best_config_round_trips_through_parse_config(reported):
    """Without confirmation, best_config.json is the top trial that ran in full, for the epochs it
    planned (its score is its last epoch's), plus the bookkeeping keys."""
    raw = json.loads(reported[1]["best_config"].read_text())
    assert {k: raw[k] for k in bookkeeping(raw) if k in raw} == {
        "trial_id": "abcde_00000", "metric": "val_accuracy", "mode": "max", "val_accuracy": 0.84,
        "val_accuracy_sd": None, "seeds": 1}
    config = parse_config(raw, ignore=bookkeeping(raw), hyperparameters={"model": "mlp"})
    assert (config.optimizer, config.lr, config.batch_size, config.epochs) == ("adam", 0.001, 64, 4)
    assert "momentum" not in raw


# every figure but the one of confirmed configs' cost, which the run without confirmation has not
SEARCH_FIGURES = [stem for stem in FIGURES if stem != "cost_vs_metric"]


def test_reports_and_figures_are_written(reported):
    """Every figure is a non-empty PNG and report.html embeds each of them beside the table."""
    run_dir, paths = reported
    assert set(SEARCH_FIGURES) <= set(paths) and "cost_vs_metric" not in paths
    for stem in SEARCH_FIGURES:
        assert paths[stem] == run_dir / "figures" / f"{stem}.png"
        assert paths[stem].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[stem].stat().st_size > 5000
    page = paths["report"].read_text()
    assert page.count('<img src="data:image/png;base64,') == len(SEARCH_FIGURES)
    assert ("confirmed accuracy against training time skipped: fewer than 2 configs were "
            "confirmed over 2 seeds or more") in page
    assert page.index(ANSWER.replace("'", "&#x27;")) < page.index("<table")
    assert not list(run_dir.rglob(".*.tmp"))  # no temporary file of an atomic write left behind


def test_summary_answers_the_question_first(reported):
    """summary.md's first line is the answer with numbers; then the top trials and the figures."""
    summary = reported[1]["summary"].read_text()
    assert summary.splitlines()[0] == ANSWER
    assert "6 trials: 2 completed, 2 stopped by ASHA, 1 diverged, 1 errored" in summary
    assert summary.index("| rank | trial_id |") < summary.index("![")
    assert "trial abcde_00005 errored: RuntimeError: CUDA out of memory" in summary
    assert f"`python -m tuning.train --config {reported[0] / 'best_config.json'}`" in summary


def test_answer_without_compare_names_the_best_config(tmp_path):
    """With no compare column the first line states the best configuration in words."""
    paths = report.write_reports(make_run_dir(tmp_path / "run", study=False, compare=None))
    first = paths["summary"].read_text().splitlines()[0]
    assert first == ("Not confirmed over seeds (one run each; --confirm-seeds runs more): "
                     "validation accuracy (higher is better) trial abcde_00000 84.0% after 4 "
                     "epochs (optimizer adam, lr 0.001, batch_size 64); trial abcde_00001 82.0% after 4 epochs (optimizer sgd, lr 0.05, "
                     "batch_size 32, momentum 0.9); trial abcde_00002 55.0% after 2 epochs "
                     "(optimizer sgd, lr 0.01, batch_size 64, momentum 0.5).")


def write_confirmation(run_dir: Path, runs: dict[str, list[tuple[int, float]]],
                       metric: str = "val_accuracy", trials: dict = TRIALS,
                       seconds: float = 2.0) -> None:
    """RUN_DIR/confirm/: a Ray trial directory per (seed, final accuracy) of each search trial,
    each epoch taking `seconds`, for the trial's epochs (4 where its params do not say)."""
    for trial_id, seeds in runs.items():
        params = trials[trial_id][0]
        epochs = params.get("epochs", 4)
        for seed, accuracy in seeds:
            config = {"epochs": epochs, **params, "seed": seed, "confirms": trial_id}
            trial_dir = run_dir / "confirm" / f"trial_{trial_id[-1]}{seed}"
            trial_dir.mkdir(parents=True)
            (trial_dir / "params.json").write_text(json.dumps(config))
            values = [accuracy - 0.1 * (epochs - e) for e in range(1, epochs + 1)]
            (trial_dir / "result.json").write_text("".join(json.dumps(
                {"epoch": e, metric: v if metric == "val_accuracy" else rmse(v), "val_loss": 0.5,
                 "train_loss": 0.4, "seconds": seconds, "diverged": False,
                 "epochs_planned": epochs}) + "\n" for e, v in enumerate(values, 1)))


def test_a_spread_or_gap_below_a_tenth_of_a_point_is_not_shown_as_zero():
    """An sd or a gap under 0.05 points is shown to its first significant digit, not as 0.0."""
    score = Score()
    assert score.spread(0.8846, 0.0004) == "88.46 ± 0.04%"
    assert score.spread(0.883, 0.004) == "88.3 ± 0.4%"
    assert score.spread(0.883, 0.0) == "88.3 ± 0.0%"
    assert score.gap(0.8846, 0.8845) == "the 0.01-point gap"
    assert score.gap(0.89, 0.885) == "the 0.5-point gap"
    assert score.gap(0.89, 0.89) == "no gap"


SAME_COST = " No other confirmed config trains in 90% of the best's time or less."


def welch(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) - mean(b) and Welch's two-sided interval at `level`, computed here apart from
    results.verdict."""
    import numpy as np
    from scipy.stats import t

    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    gain, half = np.mean(a) - np.mean(b), t.ppf(1 - (1 - level) / 2, df) * np.sqrt(va + vb)
    return gain, gain - half, gain + half


@pytest.mark.parametrize("sgd, verdict, margin", [
    ([(1, 0.80), (2, 0.81)], "better", None), ([(1, 0.845), (2, 0.846)], "even", 5),
    ([(1, 0.88), (2, 0.79)], "undecided", None)])
def test_confirmation_answers_with_the_gap_its_interval_and_a_verdict(tmp_path, sgd, verdict,
                                                                       margin):
    """The answer gives each optimizer's mean ± sd over its seeds (the search's run counts as
    seed 0), the lead with its interval (Welch's, one look here), and one of three verdicts:
    better where the 95% interval excludes 0, even where the 90% one (two one-sided tests at 5%)
    lies within the margin (1 point, or --margin), undecided otherwise; best_config.json is the
    best confirmed mean."""
    run_dir = make_run_dir(tmp_path / "run", confirm_seeds=3, margin=margin)
    write_confirmation(run_dir, {"abcde_00000": [(1, 0.86), (2, 0.85)], "abcde_00001": sgd})
    paths = report.write_reports(run_dir)
    table = pd.read_csv(paths["confirmation"])
    assert list(table.columns) == ["optimizer", "trial_id", "seed", "run", "status",
                                   "epochs_run", "val_accuracy", "val_loss", "seconds"]
    assert table.groupby("trial_id")["seed"].apply(sorted).tolist() == [[0, 1, 2], [0, 1, 2]]
    adam, sgd_runs = [0.84, 0.86, 0.85], [0.82] + [a for _, a in sgd]
    level = 0.90 if verdict == "even" else 0.95  # even: two one-sided tests at 5%
    gain, low, high = welch(adam, sgd_runs, level)
    mean, sd = pd.Series(sgd_runs).mean(), pd.Series(sgd_runs).std()
    numbers = (f"final validation accuracy (higher is better) 85.0 ± 1.0% over 3 seeds for "
               f"Adam (lr 0.001, batch_size 64), against {100 * mean:.1f} ± {100 * sd:.1f}% over "
               "3 seeds for SGD (lr 0.05, batch_size 32, momentum 0.9)")
    interval = f"({level:.0%} interval {100 * low:.1f} to {100 * high:.1f} points)"
    first = paths["summary"].read_text().splitlines()[0]
    if verdict == "better":
        assert low > 0 and first == (f"Adam is better: {numbers}; Adam leads by {100 * gain:.1f} "
                                     f"points {interval}.{SAME_COST}")
    elif verdict == "even":
        assert -0.05 < low and high < 0.05
        assert first == (f"Adam and SGD are even within the 5-point margin: {numbers}; Adam "
                         f"leads by {100 * gain:.1f} points {interval}, inside ±5.0.{SAME_COST}")
    else:
        assert low < 0 and high > 0.01
        assert first == (f"Undecided between Adam and SGD after 3 seeds: {numbers}; the lead of "
                         f"{100 * gain:.1f} points {interval} could still be a real difference "
                         f"or evenness within the 1-point margin (--max-seeds runs more seeds)."
                         f"{SAME_COST}")
    best = json.loads(paths["best_config"].read_text())
    assert (best["trial_id"], best["seeds"], best["epochs"]) == ("abcde_00000", 3, 4)
    assert (best["val_accuracy"], best["val_accuracy_sd"]) == pytest.approx((0.85, 0.01))
    assert ("Confirmation trained 4 more runs (3 seeds a config, the search's own counting; "
            "looks at 3), 16 epochs.") in paths["summary"].read_text()


def test_the_interval_holds_over_the_looks_the_run_planned(tmp_path):
    """With looks at 3, 5 and 8 seeds planned (--max-seeds 8), each look's interval is Welch's at
    1 - 0.05/3, so that the chance that any look misses stays under 5%: wider than one look's."""
    run_dir = make_run_dir(tmp_path / "run", confirm_seeds=3, max_seeds=8)
    write_confirmation(run_dir, {"abcde_00000": [(1, 0.86), (2, 0.85)],
                                 "abcde_00001": [(1, 0.80), (2, 0.81)]})
    first = report.write_reports(run_dir)["summary"].read_text().splitlines()[0]
    gain, low, high = welch([0.84, 0.86, 0.85], [0.82, 0.80, 0.81], 1 - 0.05 / 3)
    assert f"Adam leads by {100 * gain:.1f} points (95% interval {100 * low:.1f} to " \
           f"{100 * high:.1f} points)" in first, first


def test_a_metric_where_lower_is_better_ranks_answers_and_plots_that_way(tmp_path, monkeypatch):
    """A run scored by RMSE (mode min): the leaderboard ranks the lowest first and keeps its lowest
    as the best; the answer names RMSE, says lower is better and compares the confirmed RMSEs;
    best_config.json carries them; the figures' axes and captions name it."""
    from results import figures

    labels = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: (
        labels.extend(ax.get_ylabel() for ax in fig.axes), save(fig, path))[1])
    run_dir = make_run_dir(tmp_path / "run", study=False, metric="val_rmse", mode="min",
                           confirm_seeds=3)
    write_confirmation(run_dir, {"abcde_00000": [(1, 0.86), (2, 0.85)],
                                 "abcde_00001": [(1, 0.80), (2, 0.81)]}, metric="val_rmse")
    paths = report.write_reports(run_dir)
    board = pd.read_csv(paths["leaderboard"])
    assert board["trial_id"].tolist()[:4] == [f"abcde_0000{i}" for i in range(4)]
    assert board["val_rmse"].tolist()[:4] == pytest.approx([16.0, 18.0, 45.0, 50.0])
    assert board["best_val_rmse"].iloc[0] == pytest.approx(15.0)  # epoch 3's 0.85
    assert "val_accuracy" not in board.columns
    confirmed = pd.read_csv(paths["confirmation"])
    assert "val_rmse" in confirmed.columns
    adam, sgd = [rmse(a) for a in (0.84, 0.86, 0.85)], [rmse(a) for a in (0.82, 0.80, 0.81)]
    first = paths["summary"].read_text().splitlines()[0]
    assert first.startswith("Adam is better: final validation RMSE (lower is better) 15.0 ± 1.0 "
                            "over 3 seeds for Adam (lr 0.001, batch_size 64), against 19.0 ± 1.0 "
                            "over 3 seeds for SGD"), first
    gain, low, high = welch([-x for x in adam], [-x for x in sgd])  # lower is better
    assert f"Adam leads by {gain:#.3g} (95% interval {low:#.3g} to {high:#.3g})" in first, first
    best = json.loads(paths["best_config"].read_text())
    assert (best["metric"], best["mode"], best["trial_id"]) == ("val_rmse", "min", "abcde_00000")
    assert best["val_rmse"] == pytest.approx(sum(adam) / 3) and "val_accuracy" not in best
    assert sum(sgd) / 3 > best["val_rmse"]
    assert "validation RMSE" in labels and "best validation RMSE" in labels
    assert not any("accuracy" in label for label in labels)
    assert ("![Best validation RMSE (lower is better) against learning rate]"
            "(figures/metric_vs_lr.png)") in paths["summary"].read_text()


def test_missing_study_skips_its_figures_with_a_note(tmp_path):
    """Without the Optuna journal the study figures, also those of an earlier report, are gone."""
    run_dir = make_run_dir(tmp_path / "run")
    assert (report.write_reports(run_dir)["param_importances"]).is_file()
    (run_dir / "optuna.journal").unlink()
    paths = report.write_reports(run_dir)
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == [
        "anytime.png", "learning_curves.png", "metric_vs_lr.png"]
    assert "param_importances" not in paths and paths["report"].read_text().count("<img ") == 3
    assert "no Optuna study (optuna.journal is missing)" in paths["summary"].read_text()


def test_importance_counts_the_trials_asha_stopped(tmp_path):
    """Importance is fitted on every trial's score at ASHA's first rung, the trials ASHA stopped
    included; with one such trial it is left out with a note and the rest is drawn."""
    run_dir = make_run_dir(tmp_path / "run")
    experiment = load_experiment(run_dir)
    fidelity, rung = first_rung_study(experiment.study, experiment.run)
    assert rung == 1
    assert sorted(t.value for t in fidelity.trials) == [0.4, 0.5, 0.6, 0.7]  # 2 of them PRUNED
    one = {t: v for t, v in TRIALS.items() if t in ("abcde_00000", "abcde_00004", "abcde_00005")}
    paths = report.write_reports(make_run_dir(tmp_path / "one", trials=one))
    assert {"optimization_history", "parallel_coordinate"} <= set(paths)
    assert "param_importances" not in paths
    assert "hyperparameter importance needs 2 trials with a score at ASHA's first rung, " \
           "the study has 1" in paths["summary"].read_text()


def test_no_finite_accuracy_reports_without_a_best_config(tmp_path):
    """When every trial diverged or errored the report says so and writes no best_config.json."""
    lost = {t: v for t, v in TRIALS.items() if v[2] in ("diverged", "errored")}
    paths = report.write_reports(make_run_dir(tmp_path / "run", study=False, trials=lost))
    assert "best_config" not in paths and not (tmp_path / "run" / "best_config.json").exists()
    assert paths["summary"].read_text().splitlines()[0] == (
        "No trial reached a finite validation accuracy: 2 trials: 1 diverged, 1 errored; "
        "lower the learning rates or read the trials' error.txt.")
    assert pd.read_csv(paths["leaderboard"])["rank"].tolist() == [1, 2]
    assert "python -m tuning.train" not in paths["summary"].read_text()


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_best_config_trains_with_tuning_train(tmp_path):
    """python -m tuning.train --config RUN_DIR/best_config.json trains into RUN_DIR/final/."""
    run_dir = make_run_dir(tmp_path / "run", study=False)
    report.write_reports(run_dir)
    data = tmp_path / "idx"
    write_idx_files(data, make_split(200, seed=1), make_split(50, seed=2))
    done = run_module("tuning.train", "--config", str(run_dir / "best_config.json"),
                      "--data-dir", str(data), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    final = json.loads((run_dir / "final" / "final_metrics.json").read_text())
    assert len(final["epochs"]) == 4 and final["config"]["optimizer"] == "adam"
    assert (run_dir / "final" / "model.pt").stat().st_size > 0
    summary = report.write_reports(run_dir)["summary"].read_text().split("\n\n")
    assert summary[1] == ("Final training of the best configuration on the whole training set "
                          f"(final/): {100 * final['test_accuracy']:.1f}% test accuracy "
                          "after 4 epochs (validation accuracy 84.0%).")


def test_cli_prints_top_rows_and_paths(tmp_path):
    """python -m results.report RUN_DIR prints the top five trials and the paths it wrote."""
    run_dir = make_run_dir(tmp_path / "run")
    done = run_module("results.report", str(run_dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Top 5 of 6 trials:"
    assert lines[2].split() == ["1", "abcde_00000", "completed", "adam", "0.001", "64", "-", "4",
                                "84.00%", "0.1600", "85.00%", "6.0"]
    assert lines[6].split()[:3] == ["5", "abcde_00004", "diverged"]
    assert "abcde_00005" not in done.stdout.split("Wrote:")[0]
    for name in ("leaderboard.csv", "history.csv", "best_config.json", "summary.md", "report.html",
                 "figures/learning_curves.png", "figures/parallel_coordinate.png"):
        assert f"  {run_dir / name}" in lines
    assert report.top_rows(run_dir, 2).splitlines()[2].split()[:2] == ["2", "abcde_00001"]


def test_cli_refuses_a_directory_that_is_no_experiment(tmp_path, capsys):
    """A directory without run.json or trial directories is a one-line error with exit code 2."""
    (tmp_path / "notes").mkdir()
    with pytest.raises(SystemExit) as exit_:
        report.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"python -m results.report: error: {tmp_path} is not an experiment "
                          "directory")


def test_cli_refuses_a_run_without_a_finished_epoch(tmp_path, capsys):
    """A run whose trials have not reported an epoch yet is a one-line error with exit code 2."""
    run_dir = make_run_dir(tmp_path / "run", study=False, status="running")
    for result in run_dir.glob("*/result.json"):
        result.write_text("")
    with pytest.raises(SystemExit) as exit_:
        report.main([str(run_dir)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "no trial in" in err and "has finished an epoch yet (6 trial directories)" in err
    with pytest.raises(ReportError):
        report.write_reports(run_dir)


def test_asha_rungs_follow_grace_period_and_reduction_factor():
    """The marked rungs are grace_period * reduction_factor**k below max_epochs."""
    assert asha_rungs({"grace_period": 1, "reduction_factor": 3, "max_epochs": 10}) == [1, 3, 9]
    assert asha_rungs({"grace_period": 2, "reduction_factor": 2}) == []


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium")
def test_screenshot_script_proves_every_figure_rendered(reported, tmp_path):
    """tests/screenshot_report.py finds every figure decoded, and fails on a broken one."""
    run_dir, paths = reported
    script = str(ROOT / "tests" / "screenshot_report.py")
    done = subprocess.run([sys.executable, script, str(run_dir), "--out",
                           str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    drawn = len(SEARCH_FIGURES)
    assert done.stdout.startswith(f"{drawn} of {drawn} figures rendered")
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    page = (broken / "report.html").read_text()
    (broken / "report.html").write_text(page.replace("base64,iVBOR", "base64,AAAA", 1))
    done = subprocess.run([sys.executable, script, str(broken), "--out", str(tmp_path / "b.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "not rendered: Validation accuracy of every trial" in done.stderr


def _curve(final: float, epochs: int) -> list[float]:
    return [final - 0.01 * (epochs - e) for e in range(1, epochs + 1)]


def epoch_trials(ten: float) -> dict:
    """A run comparing epochs: each length's best search trial, its own run seed 0, the 10-epoch
    one ending at `ten`."""
    return {f"epoch_0000{i}": ({"epochs": epochs, "optimizer": "adam", "lr": lr, "batch_size": 64},
                               _curve(final, epochs), "completed", TrialState.COMPLETE)
            for i, (epochs, lr, final) in enumerate([(5, 0.003, 0.80), (10, 0.002, ten),
                                                     (20, 0.001, 0.900)])}


@pytest.mark.parametrize("ten, margin, verdict", [([0.899, 0.901, 0.897], 2, "even"),
                                                   ([0.880, 0.882, 0.878], 0.5, "better")])
def test_epochs_answer_and_cheapest_as_good_follow_the_margin(tmp_path, ten, margin, verdict):
    """A run comparing epochs says what each longer training buys over the next shorter one,
    with its interval and verdict (90% for even, an equivalence test), and names the cheapest
    confirmed config as good as the best within the margin (10 epochs, for half the time) or says every cheaper one is worse by more
    than it; both in summary.md and report.html, with the cost figure."""
    trials = epoch_trials(ten[0])
    run_dir = make_run_dir(tmp_path / "run", study=False, trials=trials, seconds=2.0,
                           compare="epochs", max_epochs=20, space="mlp_limits",
                           question="How many epochs does it take?", confirm_seeds=3,
                           margin=margin)
    runs = {"epoch_00000": [0.79, 0.81], "epoch_00001": ten[1:], "epoch_00002": [0.905, 0.895]}
    write_confirmation(run_dir, {t: list(enumerate(v, 1)) for t, v in runs.items()},
                       trials=trials, seconds=2.0)
    paths = report.write_reports(run_dir)
    five, ten, twenty = ([trials[t][1][-1], *runs[t]] for t in sorted(runs))
    summary, page = paths["summary"].read_text(), paths["report"].read_text()
    first = summary.splitlines()[0]

    def said(gain: float, low: float, high: float, level: float = 0.95) -> str:
        return f"{100 * gain:+.1f} points over {{}} ({level:.0%} interval {100 * low:.1f} to " \
               f"{100 * high:.1f} points)"

    top = welch(twenty, ten)
    if verdict == "even":  # two one-sided tests at 5%: the 90% interval within the margin
        top = (*welch(twenty, ten, 0.90), 0.90)
        assert -margin / 100 < top[1] and top[2] < margin / 100
        assert first.startswith(f"20 epochs and 10 epochs are even within the {margin}-point "
                                "margin"), first
        step = said(*top).format(10) + f", even within the {margin}-point margin"
    else:
        assert top[1] > 0 and first.startswith("20 epochs is better"), first
        step = said(*top).format(10) + ", better"
    assert (" What more epochs buy, confirmed mean against confirmed mean: 10 epochs: "
            + said(*welch(ten, five)).format(5) + f", better; 20 epochs: {step}.") in first, first
    if verdict == "even":
        gain, low, high = welch(ten, twenty, 0.90)  # non-inferiority: one-sided at 5%
        sd = pd.Series(ten).std()
        cheapest = (f" The cheapest config as good as the best within the {margin}-point margin "
                    f"is 10 epochs (lr 0.002): {100 * sum(ten) / 3:.1f} ± {100 * sd:.1f}% for 50% "
                    f"of the training time (20 s against 40 s a run; {100 * gain:+.1f} points "
                    f"against the best (90% interval {100 * low:.1f} to {100 * high:.1f} "
                    "points)).")
    else:
        assert welch(ten, twenty, 0.90)[2] < -margin / 100
        cheapest = (" Every confirmed config that trains in 90% of the best's time or less is "
                    f"worse than the best by more than the {margin}-point margin.")
    assert first.endswith(cheapest), first
    assert html_text(page).count(cheapest.strip()) == 1
    assert (run_dir / "figures" / "cost_vs_metric.png").stat().st_size > 10_000
    assert "figures/cost_vs_metric.png" in summary
    table = pd.read_csv(paths["confirmation"])
    assert table.groupby("trial_id")["seconds"].mean().tolist() == [10.0, 20.0, 40.0]


def html_text(page: str) -> str:
    import html

    return html.unescape(page)
