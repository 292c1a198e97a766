"""tuning.settings: the flags and the space's budget resolved once; a resume as recorded."""

import dataclasses

import pytest

from trainables.cli import UsageError
from search_spaces import get_space
from trainables.data import default_data_dir
from trainables.task import load_task
from trainables.rundir import Phase, Status
from tuning import record as records
from tuning import storage
from tuning.run import PROG
from tuning.settings import parse_args, resolve


def new_run(s, run_dir):
    return records.new_run(s, run_dir, get_space("sgd_vs_adam"), load_task(),
                           storage.at(run_dir, None))


def settings(*argv, record=None):
    args = parse_args(PROG, "", ["--space", "sgd_vs_adam", *argv])
    return resolve(args, get_space("sgd_vs_adam"), record)


def test_a_new_run_takes_the_space_budget_and_the_defaults():
    """Flags not given come from the space's budget and the stated defaults; --smoke-test shrinks
    the run where its flags are not given, and the grace period never exceeds the epochs."""
    s = settings()
    budget = get_space("sgd_vs_adam").budget
    assert (s.num_samples, s.max_epochs, s.grace_period, s.reduction_factor) == (
        budget.num_samples, budget.max_epochs, budget.grace_period, budget.reduction_factor)
    assert (s.seed, s.task, s.val_size, s.confirm_seeds, s.cpus_per_trial) == (
        0, "fashion_mnist", None, 3, 1.0)
    assert s.data_dir == str(default_data_dir())
    assert settings("--max-epochs", "1").grace_period == 1
    smoke = settings("--smoke-test")
    assert (smoke.num_samples, smoke.max_epochs, smoke.grace_period) == (4, 2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.num_samples = 3


def test_a_flag_given_beside_the_smoke_test_wins():
    """--smoke-test fills in only the flags not given (it used to replace them silently: 50
    samples ran as 4)."""
    smoke = settings("--smoke-test", "--num-samples", "50", "--max-epochs", "3")
    assert (smoke.num_samples, smoke.max_epochs, smoke.grace_period, smoke.smoke_test) == (
        50, 3, 1, True)
    for flags, message in [(["--num-samples", "-3"], "--num-samples must be at least 1, got -3"),
                           (["--grace-period", "20", "--max-epochs", "3"],
                            "--grace-period 20 is above --max-epochs 3")]:
        with pytest.raises(UsageError, match="^" + message + "$"):
            settings("--smoke-test", *flags)


def test_a_task_file_is_resolved_before_the_trials_change_directory(tmp_path, monkeypatch):
    """--task and --data-dir given relative to where the command runs become absolute paths."""
    (tmp_path / "task.py").write_text("")
    monkeypatch.chdir(tmp_path)
    s = settings("--task", "./task.py", "--data-dir", "data")
    assert (s.task, s.data_dir) == (str(tmp_path / "task.py"), str(tmp_path / "data"))


def test_a_resume_continues_the_run_as_recorded(tmp_path):
    """A resume takes what it is not given from run.json; a flag that would change the run is a
    one-line error; the data folder, resources and time budget may change."""
    first = settings("--num-samples", "6", "--val-size", "500", "--data-dir", str(tmp_path))
    record = new_run(first, tmp_path / "run").record
    resumed = settings("--resume", "--cpus-per-trial", "2", "--time-budget", "60",
                       "--data-dir", str(tmp_path / "moved"), record=record)
    assert resumed.num_samples == 6 and resumed.val_size == 500 and resumed.seed == 0
    assert resumed.cpus_per_trial == 2 and resumed.time_budget == 60
    assert resumed.data_dir == str(tmp_path / "moved")
    assert settings("--resume", record=record).data_dir == str(tmp_path)
    assert settings("--resume", "--num-samples", "6", record=record) == settings(
        "--resume", record=record)
    for flags, message in [
        (["--num-samples", "8"], "--num-samples 8 differs from the run's 6"),
        (["--seed", "1"], "--seed 1 differs from the run's 0"),
        (["--smoke-test"], "--smoke-test differs from the run, started without it"),
        (["--max-concurrent", "1"], "--max-concurrent 1 differs from the run's default"),
        (["--task", "mnist"], "--task mnist differs from the run's fashion_mnist"),
    ]:
        with pytest.raises(UsageError, match="^" + message) as err:
            settings("--resume", *flags, record=record)
        assert "\n" not in str(err.value)


def test_a_run_is_saved_and_loaded_in_one_place_and_a_resume_writes_no_settings_back(tmp_path):
    """run.json holds the run's status and phase, its study, metric and trials' place, and the
    settings it started with; a resume that changes what it may (CPUs, data folder, time budget)
    runs with them and leaves the recorded ones as they were."""
    run_dir = tmp_path / "run"
    first = settings("--num-samples", "6", "--data-dir", str(tmp_path))
    run = new_run(first, run_dir)
    run.end(Status.INTERRUPTED, "search_seconds", 12.0)
    on_disk = records.read(run_dir)
    assert (on_disk["status"], on_disk["phase"], on_disk["study_name"]) == (
        "interrupted", "search", "run")
    assert (on_disk["metric"], on_disk["mode"], on_disk["trials"]) == ("val_accuracy", "max", None)
    assert on_disk["search_seconds"] == 12.0 and on_disk["cpus_per_trial"] == 1.0
    resumed = settings("--resume", "--cpus-per-trial", "2", "--time-budget", "60",
                       "--data-dir", str(tmp_path / "moved"), record=on_disk)
    again = records.load(run_dir, resumed)
    assert again.settings.cpus_per_trial == 2 and again.status == Status.INTERRUPTED
    again.end(Status.RUNNING, "search_seconds", 3.0, Phase.CONFIRM)
    on_disk = records.read(run_dir)
    assert (on_disk["status"], on_disk["phase"], on_disk["search_seconds"]) == (
        "running", "confirm", 15.0)
    assert on_disk["cpus_per_trial"] == 1.0 and on_disk["data_dir"] == str(tmp_path)
    assert on_disk["time_budget"] is None
