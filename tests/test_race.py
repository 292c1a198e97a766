"""Answers that hold: the race per compared choice, ASHA's decisions in the study, confirmation
over seeds, the tutorial's settings as trial 0, and what the search cost."""

import json

import numpy as np
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
from tuning.race import Race
from tuning.scheduler import RaceScheduler
from results.study import by_ray_trial, journal
from tuning.searcher import SearchPlan, StudySearch

TESTS = Path(__file__).resolve().parent
# tuning.run with the test spaces of race_spaces registered beside the project's own
RUN_WITH_TEST_SPACES = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import race_spaces, "
                        "search_spaces; search_spaces.SPACES.update(race_spaces.SPACES); "
                        "from tuning.run import main; main(sys.argv[1:])")


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-c", RUN_WITH_TEST_SPACES, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def load_study(run_dir):
    return optuna.load_study(study_name=Path(run_dir).name, storage=journal(Path(run_dir)))


class FakeTrial:
    """What Ray's schedulers read of a trial: its id, config, status and latest checkpoint."""

    def __init__(self, trial_id, config, status="PENDING", checkpoint=None):
        self.trial_id, self.config = trial_id, config
        self.status, self.checkpoint = status, checkpoint


def new_search(run_dir, max_epochs=12, grace_period=1, reduction_factor=2, **kwargs):
    plan = SearchPlan("sgd_vs_adam", max_epochs, "val_accuracy", "max", 0, 100, grace_period,
                      reduction_factor, **kwargs)
    return StudySearch(plan, run_dir, "s")


def test_compared_values_take_turns_and_trial_0_is_the_baseline(tmp_path):
    """The tutorial's settings are trial 0, marked; then the optimizers take turns, so that each
    has an equal share of the trials (give or take one), however TPE leans."""
    task = load_task()
    baseline, _ = baseline_params(SPACES["sgd_vs_adam"], 12, task.baseline, task.hyperparameters)
    assert baseline == {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0, "batch_size": 64}
    search = new_search(tmp_path, compare="optimizer", choices=("sgd", "adam"), baseline=baseline,
                        adaptive=False)
    configs = [search.suggest(f"t{i}") for i in range(12)]
    assert configs[0] == {**baseline, "epochs": 12, "baseline": True}
    assert not any(c.get("baseline") for c in configs[1:])
    assert configs[1]["optimizer"] == "adam"  # the baseline was SGD's turn
    for n in range(1, 13):
        counts = Counter(c["optimizer"] for c in configs[:n])
        assert abs(counts["sgd"] - counts["adam"]) <= 1, (n, counts)
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    assert study.trials[0].user_attrs == {"baseline": True, "ray_trial_id": "t0"}


def test_each_lane_begins_at_the_spaces_starting_config(tmp_path):
    """sgd_vs_adam's STARTS: after the baseline, each optimizer's first trial is its starting
    config, marked in the study, and every later one is TPE's: none is tried twice."""
    task = load_task()
    space = SPACES["sgd_vs_adam"]
    starts = tuple(baseline_params(space, 12, s, task.hyperparameters)[0] for s in space.starts)
    assert starts == ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128},
                      {"optimizer": "adam", "lr": 1e-3, "batch_size": 128})
    baseline, _ = baseline_params(space, 12, task.baseline, task.hyperparameters)
    search = new_search(tmp_path, compare="optimizer", choices=("sgd", "adam"), baseline=baseline,
                        starts=starts)
    configs = [search.suggest(f"t{i}") for i in range(8)]
    assert configs[1] == {**starts[1], "epochs": 12}  # Adam's turn after SGD's baseline
    assert configs[2] == {**starts[0], "epochs": 12}
    later = [{k: c[k] for k in starts[0] if k in c} for c in configs[3:]]
    assert not any(c in starts for c in later)
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    assert [t.user_attrs.get("start") for t in study.trials[:4]] == [None, 1, 0, None]
    assert study.user_attrs["starts"] == 2


def test_asha_prunes_a_trial_it_stops_before_the_end_of_its_course(tmp_path):
    """A trial ASHA stops before the epochs it plans is PRUNED; one it lets through ends COMPLETE
    with its last epoch's score, and so does a trial planned for 2 epochs (a lane of a space
    comparing epochs) that ends at rung 2 below the cut-off: it ran its course."""
    search = new_search(tmp_path, max_epochs=4, grace_period=2)  # one race
    race = RaceScheduler(search)
    trials = {}
    for trial_id in ("good", "short", "cut"):
        trials[trial_id] = FakeTrial(trial_id, search.suggest(trial_id))
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
              for t in optuna.load_study(study_name="s", storage=journal(tmp_path)).trials}
    assert trials["cut"].state == TrialState.PRUNED
    assert trials["cut"].user_attrs["reason"] == "stopped_by_asha"
    assert trials["short"].state == TrialState.COMPLETE and trials["short"].value == 0.6
    assert trials["short"].user_attrs["reason"] == "completed"
    assert trials["good"].state == TrialState.COMPLETE and trials["good"].value == 0.84
    assert race.race.lanes["all"].rungs.recorded[2] == {"good": 0.8, "short": 0.6, "cut": 0.5}


def test_resumed_rungs_hold_the_scores_recorded_before_the_interruption(tmp_path):
    """Ray rebuilds the scheduler empty on a resume; its rungs are filled from the study, so that
    a trial below a rung's cut-off is stopped after the resume as it would be without one."""
    search = new_search(tmp_path, max_epochs=4)
    before = RaceScheduler(search)
    scores = {"a": [0.9, 0.92], "b": [0.8, 0.85], "c": [0.85]}
    for trial_id, values in scores.items():
        trial = FakeTrial(trial_id, search.suggest(trial_id))
        before.on_trial_add(None, trial)
        for epoch, accuracy in enumerate(values, start=1):
            result = {"epoch": epoch, "val_accuracy": accuracy, "epochs_planned": 4,
                      "diverged": False}
            before.on_trial_result(None, trial, result)
            search.on_trial_result(trial_id, result)
    recorded = {m: dict(r) for m, r in before.race.lanes["all"].rungs.recorded.items()}
    params = {rid: t.params for rid, t in by_ray_trial(search._study).items()}

    def first_result_after_resume(restored):
        resumed = RaceScheduler(restored) if restored else RaceScheduler(
            race=search.plan.new_race(), metric="val_accuracy")
        for trial_id in scores:  # Ray adds the restored trials first
            resumed.on_trial_add(None, FakeTrial(trial_id, params[trial_id]))
        late = FakeTrial("d", restored.suggest("d") if restored else params["a"])
        resumed.on_trial_add(None, late)
        result = {"epoch": 1, "val_accuracy": 0.5, "epochs_planned": 4, "diverged": False}
        return resumed, resumed.on_trial_result(None, late, result)

    search.save(str(tmp_path / "searcher.pkl"))
    restored = StudySearch.__new__(StudySearch)
    restored.restore(str(tmp_path / "searcher.pkl"))  # a new process: the study tells
    resumed, decision = first_result_after_resume(restored)
    assert recorded == {1: {"a": 0.9, "b": 0.8, "c": 0.85}, 2: {"a": 0.92, "b": 0.85}, 4: {}}
    assert resumed.race.lanes["all"].rungs.recorded == {**recorded, 1: {**recorded[1], "d": 0.5}}
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

    search = new_search(tmp_path, max_epochs=4)
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
    race = RaceScheduler(search)
    controller = Controller(list(trials.values()))
    for trial in trials.values():
        race.on_trial_add(controller, trial)
    assert race.choose_trial_to_run(controller) is trials["lagging"]
    assert controller.stopped == ["caught", "deleted"]
    assert race.on_trial_result(controller, trials["lagging"], {**row, "epoch": 2,
                                                                "val_accuracy": 0.5}) == "STOP"
    assert race.on_trial_result(controller, trials["open"], {**row, "epoch": 3,
                                                             "val_accuracy": 0.6}) == "CONTINUE"


def test_once_settled_the_trials_running_or_waiting_stop_but_the_baseline(tmp_path):
    """Once the search has settled: a trial running stops at its next epoch, PRUNED as stopped
    by the settling, not by ASHA, and so does one that was waiting to run, at its first; one
    that reports its last planned epoch has completed; the baseline runs on, and no trial is
    handed out."""
    baseline = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0, "batch_size": 64}
    search = new_search(tmp_path, max_epochs=4, grace_period=2, compare="optimizer",
                        choices=("sgd", "adam"), baseline=baseline)
    race = RaceScheduler(search)

    class Controller:
        def __init__(self):
            self.trials = []

        def get_trials(self):
            return self.trials

    controller = Controller()
    for trial_id in ("base", "running", "last", "waiting"):
        trial = FakeTrial(trial_id, search.suggest(trial_id))
        controller.trials.append(trial)
        race.on_trial_add(controller, trial)
    row = {"epochs_planned": 4, "diverged": False, "val_accuracy": 0.5}
    for trial in controller.trials[:3]:
        trial.status = "RUNNING"
        for epoch in (1, 2):
            assert race.on_trial_result(controller, trial, {**row, "epoch": epoch}) == "CONTINUE"
            search.on_trial_result(trial.trial_id, {**row, "epoch": epoch})
    search.race.settled_at = {"after": 4, "of": 100, "noise": 0.004, "window": 3}  # as if
    waiting = race.choose_trial_to_run(controller)
    assert waiting.trial_id == "waiting"
    assert race.on_trial_result(controller, waiting, {**row, "epoch": 1}) == "STOP"
    search.on_trial_complete("waiting", {**row, "epoch": 1})
    assert race.on_trial_result(controller, controller.trials[1], {**row, "epoch": 3}) == "STOP"
    search.on_trial_complete("running", {**row, "epoch": 3})
    last = {**row, "epoch": 3, "epochs_planned": 3}  # its last planned epoch: it ends there
    assert race.on_trial_result(controller, controller.trials[2], last) == "CONTINUE"
    search.on_trial_complete("last", last)
    assert race.on_trial_result(controller, controller.trials[0], {**row, "epoch": 3}) \
        == "CONTINUE"
    assert search.suggest("more") is None  # the baseline still runs
    study = {t.user_attrs["ray_trial_id"]: t
             for t in optuna.load_study(study_name="s", storage=journal(tmp_path)).trials}
    assert [(study[t].state, study[t].user_attrs.get("reason")) for t in
            ("running", "waiting", "last")] == [(TrialState.PRUNED, "stopped_settled")] * 2 + [
        (TrialState.COMPLETE, "completed")]
    assert study["base"].state == TrialState.RUNNING


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
    runs it and Adam's best with two more seeds each, and the answer calls SGD better, with the
    mean and sd of those runs and the interval of its lead. Plain ASHA (one race for every trial), fed the same learning
    curves, Adam's trials first, stops every SGD trial at the first rung: SGD's warm-up loses to
    Adam there, although SGD ends higher."""
    result = run_cli("--space", "slow_starter", *RACE, "--confirm-seeds", 3, "--max-seeds", 3,
                     "--data-dir", faint_dir, "--storage-path", tmp_path, "--name", "race")
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
    assert answer.startswith("SGD is better: final validation accuracy "), answer
    for optimizer in ("sgd", "adam"):
        mean, sd = means.loc[optimizer]
        assert f"{100 * mean:.1f} ± {100 * sd:.1f}% over 3 seeds for " \
               f"{'SGD' if optimizer == 'sgd' else 'Adam'}" in answer
    assert "SGD leads by " in answer and "(95% interval " in answer
    best = json.loads((run_dir / "best_config.json").read_text())
    assert best["optimizer"] == "sgd" and best["seeds"] == 3 and best["epochs"] == 6
    assert best["val_accuracy"] == pytest.approx(means.loc["sgd", "mean"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

    history = pd.read_csv(run_dir / "history.csv")
    plain = RaceScheduler(race=Race(None, None, "max", max_t=6, grace_period=2,
                                    reduction_factor=2), metric="val_accuracy")
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


class Running:
    """What the live table reads of a trial: its id, config and last result."""

    def __init__(self, trial_id, config, epoch=None, accuracy=None):
        self.trial_id, self.config, self.status = trial_id, config, "RUNNING"
        self.last_result = {} if epoch is None else {"epoch": epoch, "val_accuracy": accuracy,
                                                     "epochs_planned": 12}


def test_on_a_terminal_the_running_trials_are_a_table_redrawn_under_the_lines(capsys):
    """On a terminal the running trials are a table redrawn in place (their config, epoch and
    score), the trial-end lines printed above it; once the experiment ends the table is gone;
    off a terminal there is no table, only the lines."""
    import io

    from rich.console import Console

    from tuning import progress

    for terminal in (True, False):
        out = io.StringIO()
        line = progress.Progress("search", 2, Score(), 4.0,
                                 console=Console(file=out, force_terminal=terminal, width=120))
        line.setup()
        a = Running("abc_00001", {"optimizer": "adam", "lr": 0.0011432, "epochs": 12, "seed": 0})
        b = Running("abc_00002", {"optimizer": "sgd", "lr": 0.05, "epochs": 12, "baseline": True})
        line.on_trial_start(0, [a], a)
        line.on_trial_start(0, [a, b], b)
        a.last_result = {"epoch": 3, "val_accuracy": 0.8512, "epochs_planned": 12}
        line.on_trial_result(0, [a, b], a, a.last_result)
        a.status = "TERMINATED"
        line.on_trial_complete(0, [a, b], a)
        line.on_experiment_end([a, b])
        text = out.getvalue() + capsys.readouterr().out
        assert "[search] 1 of 2 trials ended, 3 epochs run, best so far 85.1%" in text
        if terminal:
            assert "optimizer=adam lr=0.00114" in text and "3/12" in text and "85.1%" in text
            assert "optimizer=sgd lr=0.05" in text and "baseline" not in text
            assert "seed=" not in text and "search: 2 running" in text
        else:
            assert "running" not in text and "optimizer=" not in text


def test_the_race_rungs_stop_what_rays_asha_stops():
    """One lane's rungs are ASHA's with one bracket: fed the same results in the same order,
    they stop the same trials at the same epochs as Ray's AsyncHyperBandScheduler."""
    import numpy as np
    from ray.tune.schedulers import AsyncHyperBandScheduler

    rng = np.random.default_rng(0)
    ray_asha = AsyncHyperBandScheduler(time_attr="epoch", metric="val_accuracy", mode="max",
                                       max_t=12, grace_period=2, reduction_factor=3)
    ours = RaceScheduler(race=Race(None, None, "max", max_t=12, grace_period=2,
                                   reduction_factor=3), metric="val_accuracy")
    quality = rng.uniform(0.5, 0.9, 40)
    live = {f"t{i}": FakeTrial(f"t{i}", {"optimizer": "adam"}) for i in range(40)}
    for trial in live.values():
        ray_asha.on_trial_add(None, trial)
        ours.on_trial_add(None, trial)
    epoch = {t: 0 for t in live}
    decisions = []
    while live:  # trials report in a random interleaving, as asynchronous trials do
        trial_id = rng.choice(sorted(live))
        epoch[trial_id] += 1
        i = int(trial_id[1:])
        result = {"epoch": epoch[trial_id], "epochs_planned": 12, "diverged": False,
                  "val_accuracy": quality[i] * (1 - np.exp(-epoch[trial_id] / 3))
                  + rng.normal(0, 0.01)}
        theirs = ray_asha.on_trial_result(None, live[trial_id], result)
        mine = ours.on_trial_result(None, live[trial_id], result)
        decisions.append((trial_id, epoch[trial_id], theirs))
        assert mine == theirs, (trial_id, epoch[trial_id], mine, theirs)
        if mine == "STOP":
            del live[trial_id]
    stopped = [d for d in decisions if d[2] == "STOP"]
    assert len(stopped) == 40 and {e for _, e, _ in stopped} == {2, 6, 12}


def test_the_report_says_which_value_dropped_when_why_and_where_the_search_settled(tmp_path):
    """The study's record of the race reaches the report: the value dropped, after which trial
    and why; the trial the search settled after, of how many, why, the trials it stopped then,
    and what it saved."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from results import report
    from test_results import RUN, TRIALS, make_run_dir

    halted = ({"optimizer": "adam", "lr": 0.003, "batch_size": 64}, [0.6], "stopped_settled",
              TrialState.PRUNED)  # running when the search settled
    run_dir = make_run_dir(tmp_path / "run", num_samples=24,
                           trials={**TRIALS, "abcde_00006": halted})
    study = optuna.load_study(study_name=RUN["study_name"], storage=JournalStorage(
        JournalFileBackend(str(run_dir / RUN["study_file"]))))
    study.set_user_attr("dropped", {"optimizer='sgd'": {
        "after": 5, "behind": "optimizer='adam'", "gap": 0.021, "spread": 0.004, "rise": 0.001,
        "widths": 4.0, "window": 3}})
    study.set_user_attr("settled", {"after": 6, "of": 24, "noise": 0.0042, "window": 3})
    summary = report.write_reports(run_dir)["summary"].read_text()
    assert ("The race dropped SGD after trial 5: its best final score trails optimizer='adam''s "
            "by 2.1 points, more than 4 spreads of a value's final scores (0.4 each) and its rise "
            "over its last 3 trials (0.1) together.") in summary
    assert ("The search settled after 7 of 24 trials: over the last 3 trials of each value, "
            "neither its best final score nor its best score at the first rung rose by more than "
            "one run's noise (0.4 points); it stopped the 1 trial then running; about 71% of its "
            "epochs saved (--full-budget runs them all).") in summary
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("trial_id")
    assert board.loc["abcde_00006", "status"] == "stopped_settled"


def race_rates(n, seed=0, **kwargs):
    """Of n simulated searches (tests/simulated.py): the share in which lane b dropped out, in
    which lane a did, and the trials handed out when the search settled (None: it did not)."""
    from simulated import simulate_race

    rng = np.random.default_rng(seed)
    runs = [simulate_race(rng, **kwargs) for _ in range(n)]
    return (sum("b" in r.dropped for r in runs) / n, sum("a" in r.dropped for r in runs) / n,
            [r.settled_after for r in runs])


@pytest.mark.parametrize("top, most", [(0.84, 0.6), (0.82, 0.75)])
def test_a_value_behind_by_a_clear_margin_drops_out_in_most_searches(top, most):
    """Lane b's configs end 6 (or 8) points below a's, their spread 3 points, one run's noise
    0.4: over 150 searches of the full budget, b drops out in most (over 60%, or 75%), a in
    none."""
    b, a, _ = race_rates(150, tops={"a": 0.90, "b": top}, settle=False)
    assert b > most and a == 0, (b, a)


def test_a_truly_even_value_drops_out_in_at_most_5_percent():
    """Two lanes of the same configs: over 400 searches, either drops out in at most 5%."""
    b, a, _ = race_rates(400, tops={"a": 0.90, "b": 0.90}, settle=False)
    assert a + b <= 0.05, (a, b)


@pytest.mark.parametrize("delay", [1, 2])
def test_a_slow_starter_that_ends_as_high_is_kept(delay):
    """Lane b stays at 10% for its first epochs (a warm-up), then ends as high as a: judged on the
    trials that ran in full, it drops out in at most 5% of 300 searches, although it trails at the
    first rung in every one."""
    b, a, _ = race_rates(300, tops={"a": 0.90, "b": 0.90}, delay={"b": delay}, settle=False)
    assert a + b <= 0.05, (a, b)


def test_a_search_whose_best_stops_rising_settles_before_its_budget():
    """Random configs around a plateau: most searches settle once half their 24 trials have
    ended, well before the last, and train fewer epochs than the full budget."""
    from simulated import simulate_race

    _, _, settled = race_rates(100, tops={"a": 0.90, "b": 0.90})
    assert sum(s is not None for s in settled) / 100 > 0.9
    assert all(s is None or s >= 12 for s in settled), settled
    assert np.median([s for s in settled if s]) <= 16
    rng = np.random.default_rng(0)
    full = np.mean([simulate_race(rng, tops={"a": 0.90, "b": 0.90}, settle=False).epochs
                    for _ in range(50)])
    rng = np.random.default_rng(0)
    early = np.mean([simulate_race(rng, tops={"a": 0.90, "b": 0.90}).epochs for _ in range(50)])
    assert early < 0.8 * full, (early, full)


def test_a_search_that_keeps_finding_better_configs_does_not_settle():
    """Each lane's configs rise by a point with every trial: few searches settle early."""
    _, _, settled = race_rates(100, tops={"a": 0.80, "b": 0.80}, improve=0.01, spread=0.005)
    assert sum(s is not None for s in settled) / 100 < 0.1, settled


def test_a_trial_that_errored_and_ran_again_counts_when_it_completes():
    """An errored trial ends without a final score; Ray's retry (or --resume) runs it again under
    the same id, and when that run completes its final score is the lane's."""
    race = Race("optimizer", ["sgd", "adam"], "max", 4, 1, 2)
    race.add("t0", {"optimizer": "adam", "epochs": 4})
    race.finish("t0", {1: 0.5}, completed=False)
    assert race.racing("t0").finals == {}
    race.rerun("t0")
    race.finish("t0", {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}, completed=True)
    assert race.racing("t0").finals == {"t0": 0.8}


def test_a_confirmation_run_tune_ended_without_a_word_is_told_to_the_searcher():
    """A run that Tune ended ERROR without telling the searcher (Ray 2.60, an actor it could not
    reset): the confirmation's scheduler tells the searcher as Tune tells a failed trial, so that
    the looks go on instead of waiting for it for ever."""
    from tuning.scheduler import HearsErrors

    class Searcher:
        told = []

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told.append((trial_id, error))

    class Controller:
        def get_trials(self):
            return []

    searcher = Searcher()
    scheduler = HearsErrors(searcher)
    run = FakeTrial("c0", {"seed": 1}, status="RUNNING")
    scheduler.on_trial_add(Controller(), run)
    scheduler.choose_trial_to_run(Controller())
    assert searcher.told == []
    run.status = "ERROR"
    scheduler.choose_trial_to_run(Controller())
    scheduler.choose_trial_to_run(Controller())
    assert searcher.told == [("c0", True)]
