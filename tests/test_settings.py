"""tuning.settings: the flags and the space's budget resolved once; a resume as recorded."""

import dataclasses

import pytest

from trainables.cli import UsageError
from search_spaces import get_space
from trainables.data import default_data_dir
from trainables.task import load_task
from tuning.record import new_record
from tuning.run import PROG
from tuning.settings import parse_args, resolve


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
    record = new_record(first, tmp_path / "run", get_space("sgd_vs_adam"), load_task())
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
