"""The search spaces package: finding a space by name, by file or by module; its baseline."""

import pytest

from trainables.cli import UsageError
from search_spaces import SPACES, baseline_params, compare_choices, get_space
from trainables.task import TaskError, load_task

from conftest import ROOT


def test_unknown_space_is_a_usage_error_listing_the_known_ones():
    """An unknown name is one UsageError line naming it and every known space; a known one is found."""
    with pytest.raises(UsageError) as caught:
        get_space("nope")
    assert str(caught.value) == (f"unknown space 'nope'; known spaces: {', '.join(SPACES)}, or a "
                                 "file or module of your own (docs/your-own-model.md)")
    assert get_space("sgd_vs_adam").name == "sgd_vs_adam"


def test_a_space_file_is_found_by_its_path_and_brings_its_task(tmp_path, monkeypatch):
    """A copy of a built-in space in a file of one's own runs by its path, relative or absolute,
    and by its dotted module name; a file holding a task brings it."""
    mine = tmp_path / "my_space.py"
    mine.write_text((ROOT / "search_spaces" / "sgd_vs_adam.py").read_text())
    monkeypatch.chdir(tmp_path)
    space = get_space("./my_space.py")
    assert (space.name, space.ref, space.compare, space.task) == (
        "my_space", str(mine), "optimizer", None)
    assert get_space(str(mine)) is space
    assert space.budget == SPACES["sgd_vs_adam"].budget
    example = get_space(str(ROOT / "examples" / "diabetes_regression.py"))
    assert example.task == example.ref and example.budget.max_epochs == 60
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_space("my_space.py").define is space.define
    assert get_space("search_spaces.sgd_vs_adam").question == SPACES["sgd_vs_adam"].question


def test_the_baseline_is_trial_0_where_the_space_can_express_it():
    """The tutorial's settings are a trial of sgd_vs_adam, tutorial and optimizers; schedules
    (SGD's lr from 0.01) and cnn (another model) cannot express them, and say why."""
    task = load_task()
    params = {name: baseline_params(space, space.budget.max_epochs, task.baseline,
                                    task.hyperparameters) for name, space in SPACES.items()}
    assert params["sgd_vs_adam"] == ({"optimizer": "sgd", "lr": 0.001, "momentum": 0.0,
                                      "batch_size": 64}, "")
    assert params["tutorial"] == ({"lr": 0.001, "batch_size": 64}, "")
    assert params["optimizers"][0]["weight_decay"] == 1e-6  # the space's smallest
    assert params["mlp_limits"] == ({"epochs": 10, "optimizer": "sgd", "lr": 0.001,
                                     "momentum": 0.0, "weight_decay": 1e-6, "batch_size": 64,
                                     "schedule": "none", "label_smoothing": 0.0, "dropout": 0.0,
                                     "width": 512}, "")
    assert params["schedules"] == (None, "lr 0.001 is outside [0.01, 0.3]")
    assert params["cnn"] == (None, "lr 0.001 is outside [0.003, 0.1]")
    wider = {**task.baseline, "lr": 0.01, "momentum": 0.9}
    assert baseline_params(SPACES["cnn"], 6, wider, task.hyperparameters) == (
        None, "the space trains model 'cnn', the baseline 'mlp'")


def test_a_compared_hyperparameter_every_trial_must_suggest(tmp_path):
    """COMPARE names a categorical every trial suggests: the race needs every trial in a lane."""
    path = tmp_path / "sometimes.py"
    path.write_text("COMPARE = 'optimizer'\n"
                    "def define(trial, max_epochs):\n"
                    "    if trial.suggest_float('lr', 1e-3, 1.0, log=True) < 0.1:\n"
                    "        trial.suggest_categorical('optimizer', ['sgd', 'adam'])\n")
    with pytest.raises(TaskError) as err:
        compare_choices(get_space(str(path)))
    assert str(err.value).startswith(f"{path}: define(trial, max_epochs) does not suggest "
                                     "COMPARE 'optimizer' as a categorical in every trial")
