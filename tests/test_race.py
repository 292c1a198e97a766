"""Answers that hold: the race per compared choice, ASHA's decisions in the study, confirmation
over seeds, the tutorial's settings as trial 0, and what the search cost."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from conftest import write_idx_files
from race_spaces import faint_split
from results.metric import Score
from search_spaces import SPACES, baseline_params
from trainables.task import load_task
from tuning.race import RaceScheduler
from tuning.search import StudySearch, study_storage

TESTS = Path(__file__).resolve().parent
# tuning.run with the test spaces of race_spaces registered beside the project's own
RUN_WITH_TEST_SPACES = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import race_spaces, "
                        "search_spaces; search_spaces.SPACES.update(race_spaces.SPACES); "
                        "from tuning.run import main; main(sys.argv[1:])")


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-c", RUN_WITH_TEST_SPACES, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def load_study(run_dir):
    return optuna.load_study(study_name=Path(run_dir).name, storage=study_storage(Path(run_dir)))


class FakeTrial:
    """What Ray's schedulers read of a trial: its id, config, status and latest checkpoint."""

    def __init__(self, trial_id, config, status="PENDING", checkpoint=None):
        self.trial_id, self.config = trial_id, config
        self.status, self.checkpoint = status, checkpoint


def new_search(run_dir, **kwargs):
    search = StudySearch("sgd_vs_adam", 12, run_dir, "val_accuracy", "max", seed=0,
                         study_name="s", num_samples=100, **kwargs)
    search.set_search_properties(None, None, {})
    return search


def test_compared_values_take_turns_and_trial_0_is_the_baseline(tmp_path):
    """The tutorial's settings are trial 0, marked; then the optimizers take turns, so that each
    has an equal share of the trials (give or take one), however TPE leans."""
    task = load_task()
    baseline, _ = baseline_params(SPACES["sgd_vs_adam"], 12, task.baseline, task.hyperparameters)
    assert baseline == {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0, "batch_size": 64}
    search = new_search(tmp_path, compare="optimizer", choices=["sgd", "adam"], baseline=baseline)
    configs = [search.suggest(f"t{i}") for i in range(12)]
    assert configs[0] == {**baseline, "epochs": 12, "baseline": True}
    assert not any(c.get("baseline") for c in configs[1:])
    assert configs[1]["optimizer"] == "adam"  # the baseline was SGD's turn
    for n in range(1, 13):
        counts = Counter(c["optimizer"] for c in configs[:n])
        assert abs(counts["sgd"] - counts["adam"]) <= 1, (n, counts)
    study = optuna.load_study(study_name="s", storage=study_storage(tmp_path))
    assert study.trials[0].user_attrs == {"baseline": True, "ray_trial_id": "t0"}


def test_asha_prunes_a_trial_it_stops_before_the_end_of_its_course(tmp_path):
    """A trial ASHA stops before the epochs it plans is PRUNED; one it lets through ends COMPLETE
    with its last epoch's score, and so does a trial planned for 2 epochs (a lane of a space
    comparing epochs) that ends at rung 2 below the cut-off: it ran its course."""
    search = new_search(tmp_path)
    race = RaceScheduler("optimizer", "val_accuracy", "max", max_t=4, grace_period=2,
                         reduction_factor=2, study=search)
    trials = {}
    for trial_id in ("good", "short", "cut"):
        config = search.suggest(trial_id)
        config["optimizer"] = "adam"  # one race
        trials[trial_id] = FakeTrial(trial_id, config)
        race.on_trial_add(None, trials[trial_id])

    def report(trial_id, epoch, accuracy, planned):
        result = {"epoch": epoch, "val_accuracy": accuracy, "epochs_planned": planned,
                  "diverged": False}
        decision = race.on_trial_result(None, trials[trial_id], result)
        if decision == "STOP" or epoch == planned:
            search.on_trial_complete(trial_id, result)
        else:
            search.on_trial_result(trial_id, result)
        return decision

    assert [report("good", e, a, 4) for e, a in [(1, 0.5), (2, 0.8), (3, 0.85)]] == ["CONTINUE"] * 3
    assert report("good", 4, 0.84, 4) == "STOP"  # max_t: the end of its course
    assert report("short", 1, 0.4, 2) == "CONTINUE"
    assert report("short", 2, 0.6, 2) == "STOP"  # below the rung's cut-off, at its last epoch
    assert report("cut", 1, 0.3, 4) == "CONTINUE"
    assert report("cut", 2, 0.5, 4) == "STOP"  # below the cut-off, 2 epochs before its end
    trials = {t.user_attrs["ray_trial_id"]: t
              for t in optuna.load_study(study_name="s", storage=study_storage(tmp_path)).trials}
    assert trials["cut"].state == TrialState.PRUNED
    assert trials["cut"].user_attrs["reason"] == "stopped_by_asha"
    assert trials["short"].state == TrialState.COMPLETE and trials["short"].value == 0.6
    assert trials["short"].user_attrs["reason"] == "completed"
    assert trials["good"].state == TrialState.COMPLETE and trials["good"].value == 0.84
    assert race.rungs()["optimizer='adam'"][2] == {"good": 0.8, "short": 0.6, "cut": 0.5}


def test_resumed_rungs_hold_the_scores_recorded_before_the_interruption(tmp_path):
    """Ray rebuilds the scheduler empty on a resume; its rungs are filled from the study, so that
    a trial below a rung's cut-off is stopped after the resume as it would be without one."""
    search = new_search(tmp_path)
    before = RaceScheduler(None, "val_accuracy", "max", max_t=4, grace_period=1,
                           reduction_factor=2, study=search)
    scores = {"a": [0.9, 0.92], "b": [0.8, 0.85], "c": [0.85]}
    for trial_id, values in scores.items():
        trial = FakeTrial(trial_id, search.suggest(trial_id))
        before.on_trial_add(None, trial)
        for epoch, accuracy in enumerate(values, start=1):
            result = {"epoch": epoch, "val_accuracy": accuracy, "epochs_planned": 4,
                      "diverged": False}
            before.on_trial_result(None, trial, result)
            search.on_trial_result(trial_id, result)
    recorded = before.rungs()["all"]

    def first_result_after_resume(study):
        resumed = RaceScheduler(None, "val_accuracy", "max", max_t=4, grace_period=1,
                                reduction_factor=2, study=study)
        for trial_id in scores:  # Ray adds the restored trials first
            resumed.on_trial_add(None, FakeTrial(trial_id, search._ot_trials[trial_id].params))
        late = FakeTrial("d", search.suggest("d"))
        resumed.on_trial_add(None, late)
        result = {"epoch": 1, "val_accuracy": 0.5, "epochs_planned": 4, "diverged": False}
        return resumed, resumed.on_trial_result(None, late, result)

    resumed, decision = first_result_after_resume(search)
    assert recorded == {1: {"a": 0.9, "b": 0.8, "c": 0.85}, 2: {"a": 0.92, "b": 0.85}, 4: {}}
    assert resumed.rungs()["all"] == {**recorded, 1: {**recorded[1], "d": 0.5}}
    assert decision == "STOP"
    _, forgetful = first_result_after_resume(None)  # rungs not rebuilt: the first at each passes
    assert forgetful == "CONTINUE"


def test_trials_the_study_ended_are_not_run_again_after_a_crash(tmp_path):
    """Ray's snapshot from before a crash lists as pending three trials the study had ended: the
    one whose last epoch Ray has too is stopped before it starts; the one Ray lags on runs from
    its checkpoint to the study's last epoch, and is stopped there; one Ray lags on whose
    checkpoint was deleted as it ended (tuning.checkpoints) is stopped where Ray has it."""
    from types import SimpleNamespace

    import pyarrow.fs

    search = new_search(tmp_path)
    row = {"epochs_planned": 4, "diverged": False}
    for trial_id in ("caught", "lagging", "open", "deleted"):
        search.suggest(trial_id)
        for epoch in (1, 2):
            search.on_trial_result(trial_id, {**row, "epoch": epoch, "val_accuracy": 0.5})
    for trial_id in ("caught", "lagging", "deleted"):
        search.record_stop(trial_id, 2)
        search.on_trial_complete(trial_id, {**row, "epoch": 2, "val_accuracy": 0.5})

    class Controller:
        """What the scheduler uses of Ray's TuneController: its trials, and stopping one."""

        def __init__(self, trials):
            self.trials, self.stopped = trials, []

        def get_trials(self):
            return self.trials

        def stop_trial(self, trial):
            self.stopped.append(trial.trial_id)
            trial.status = "TERMINATED"

    local = pyarrow.fs.LocalFileSystem()
    (tmp_path / "checkpoint_000000").mkdir()
    kept = SimpleNamespace(filesystem=local, path=str(tmp_path / "checkpoint_000000"))
    gone = SimpleNamespace(filesystem=local, path=str(tmp_path / "checkpoint_000001"))
    trials = {trial_id: FakeTrial(trial_id, {"optimizer": "adam"}, checkpoint=checkpoint)
              for trial_id, checkpoint in (("caught", kept), ("lagging", kept), ("open", kept),
                                           ("deleted", gone))}
    for trial, epoch in zip(trials.values(), (2, 1, 2, 1)):  # as Ray's last snapshot has them
        trial.last_result = {"epoch": epoch}
    race = RaceScheduler(None, "val_accuracy", "max", max_t=4, grace_period=1,
                         reduction_factor=2, study=search)
    controller = Controller(list(trials.values()))
    for trial in trials.values():
        race.on_trial_add(controller, trial)
    assert race.choose_trial_to_run(controller) is trials["lagging"]
    assert controller.stopped == ["caught", "deleted"]
    assert race.on_trial_result(controller, trials["lagging"], {**row, "epoch": 2,
                                                                "val_accuracy": 0.5}) == "STOP"
    assert race.on_trial_result(controller, trials["open"], {**row, "epoch": 3,
                                                             "val_accuracy": 0.6}) == "CONTINUE"


@pytest.fixture(scope="module")
def faint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("faint")
    write_idx_files(directory, faint_split(3000, seed=3), faint_split(500, seed=4))
    return directory


RACE = ["--num-samples", 4, "--max-concurrent", 1, "--val-size", 400]


@pytest.mark.slow
def test_race_trains_the_slow_starter_that_plain_asha_cuts_and_confirms_it_wins(tmp_path,
                                                                              faint_dir):
    """Racing each optimizer in its own rungs, SGD's best trial trains to max_t, confirmation
    runs it and Adam's best with two more seeds each, and the answer names SGD the winner with
    the mean and sd of those runs. Plain ASHA (one race for every trial), fed the same learning
    curves, Adam's trials first, stops every SGD trial at the first rung: SGD's warm-up loses to
    Adam there, although SGD ends higher."""
    result = run_cli("--space", "slow_starter", *RACE, "--confirm-seeds", 3, "--data-dir",
                     faint_dir, "--storage-path", tmp_path, "--name", "race")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "race"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    sgd = board[board["optimizer"] == "sgd"]
    assert (sgd["epochs_run"] == 6).any() and "completed" in set(sgd["status"])

    confirmed = pd.read_csv(run_dir / "confirmation.csv")
    assert set(confirmed["optimizer"]) == {"sgd", "adam"}
    for trial_id, runs in confirmed.groupby("trial_id"):
        assert sorted(runs["seed"]) == [0, 1, 2] and set(runs["epochs_run"]) == {6}
        assert Counter(runs["run"]) == {"search": 1, "confirmation": 2}
    means = confirmed.groupby("optimizer")["val_accuracy"].agg(["mean", "std"])
    answer = (run_dir / "summary.md").read_text().splitlines()[0]
    assert answer.startswith("SGD won: final validation accuracy "), answer
    for optimizer in ("sgd", "adam"):
        mean, sd = means.loc[optimizer]
        assert f"{100 * mean:.1f} ± {100 * sd:.1f}% over 3 seeds for " \
               f"{'SGD' if optimizer == 'sgd' else 'Adam'}" in answer
    assert "Welch's t-test p = " in answer
    best = json.loads((run_dir / "best_config.json").read_text())
    assert best["optimizer"] == "sgd" and best["seeds"] == 3 and best["epochs"] == 6
    assert best["val_accuracy"] == pytest.approx(means.loc["sgd", "mean"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

    history = pd.read_csv(run_dir / "history.csv")
    plain = RaceScheduler(None, "val_accuracy", "max", max_t=6, grace_period=2,
                          reduction_factor=2)
    ids = board.groupby("optimizer")["trial_id"].apply(list)
    assert len(ids["sgd"]) == len(ids["adam"]) == 2
    stopped = {}
    for trial_id, optimizer in [(t, o) for pair in zip(ids["adam"], ids["sgd"])
                                for t, o in zip(pair, ("adam", "sgd"))]:
        trial = FakeTrial(trial_id, {"optimizer": optimizer})
        plain.on_trial_add(None, trial)
        for row in history[history["trial_id"] == trial_id].sort_values("epoch").itertuples():
            result = {"epoch": row.epoch, "val_accuracy": row.val_accuracy, "epochs_planned": 6,
                      "diverged": False}
            if plain.on_trial_result(None, trial, result) == "STOP":
                stopped[trial_id] = row.epoch
                break
    assert [stopped.get(t) for t in ids["sgd"]] == [2, 2], stopped


class Ended:
    """What Progress reads of a trial: its status and last result."""

    def __init__(self, status, epoch, accuracy):
        self.status, self.last_result = status, {"epoch": epoch, "val_accuracy": accuracy}


def test_progress_line_tells_trials_epochs_best_and_time_left(capsys, monkeypatch):
    """A line per ended trial: ended of total, epochs run, the best score of an ended trial, and
    the epochs still expected (ASHA's mean per trial, here 4) at the pace so far."""
    from tuning import progress

    assert progress.asha_epochs(12, 2, 3) == pytest.approx(2 + 4 / 3 + 6 / 9)
    clock = iter([100.0, 130.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    line = progress.Progress("search", 5, Score(), progress.asha_epochs(12, 2, 3))
    line.setup()
    trials = [Ended("TERMINATED", 2, 0.8), Ended("TERMINATED", 6, 0.85), Ended("RUNNING", 3, 0.9)]
    line.on_trial_complete(0, trials, trials[1])
    # 11 epochs in 30 s; 2 trials to start at 4 epochs each, the running one 1 more
    expected_left = (2 * 4 + 1) * 30 / 11
    assert capsys.readouterr().out == (f"[search] 2 of 5 trials ended, 11 epochs run, best so far "
                                       f"85.0%, about {expected_left:.0f} s left\n")
