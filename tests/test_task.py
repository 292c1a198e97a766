"""A task file's defects, each found before Ray starts: one line naming the file and the function,
exit code 2, nothing written. tuning.check and tuning.run run the same check."""

import subprocess
import sys

import pytest

from tuning import check, dry_run, run

# a task and its space in one file, small enough to check in a moment
GOOD = '''
import threading

import torch
from torch import nn

LOCK = threading.Lock()
METRIC = "accuracy"
BASELINE = {"optimizer": "sgd", "lr": 0.01, "batch_size": 32}
COMPARE = "optimizer"
BUDGET = {"max_epochs": 2, "grace_period": 1, "num_samples": 2}


def load_data(data_dir):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g)
    return {"train": (x, (x[:, 0] > 0).long())}


def build_model(params):
    return nn.Linear(4, 2)


def define(trial, max_epochs):
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    trial.suggest_float("lr", 1e-3, 0.1, log=True)
    return {"epochs": max_epochs, "batch_size": 32}
'''

# defect: (the change to GOOD, what the one line says after "FILE: ")
DEFECTS = {
    "a missing function": (
        ("def build_model(params):\n    return nn.Linear(4, 2)", ""),
        "no function build_model(); a task defines load_data(data_dir) and build_model(params)"),
    "a model that raises": (
        ("return nn.Linear(4, 2)", "return nn.Linear(params['width'], 2)"),
        "build_model(params) raised KeyError: 'width'"),
    "a model that fails on a batch": (
        ("return nn.Linear(4, 2)", "return nn.Linear(5, 2)"),
        "build_model(params) made a model that fails on a batch of inputs (32, 4) float32: "
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (32x4 and 5x2)"),
    "data of the wrong type": (
        ('return {"train": (x, (x[:, 0] > 0).long())}', "return [x]"),
        "load_data(data_dir) returned a list; it returns a dict of splits: \"train\", and "
        "\"val\" and \"test\" where there are some"),
    "data of the wrong shape": (
        ('return {"train": (x, (x[:, 0] > 0).long())}', 'return {"train": (x, x[:100, 0])}'),
        "load_data(data_dir) returned split 'train' has inputs of shape (120, 4) and targets of "
        "shape (100,); they need one row per sample"),
    "a loss that does not fit the model's output": (
        ("(x[:, 0] > 0).long()", "x[:, 0]"),
        "loss(outputs, targets) does not fit the model's outputs (32, 2) float32 and targets "
        "(32,) float32: RuntimeError: "),
    "a metric the task does not compute": (
        ('METRIC = "accuracy"', 'METRIC = "f1"'),
        "METRIC 'f1' is not one of accuracy, rmse, mae, loss, and the task defines no "
        "metric(outputs, targets) to compute it"),
    "a metric that does not fit the outputs": (
        ('METRIC = "accuracy"', 'METRIC = "rmse"'),
        "METRIC 'rmse' cannot be computed from outputs (32, 2) float32 and targets (32,) int64: "
        "ShapeError: rmse cannot compare outputs (32, 2) with targets (32,): one output a target"),
    "a baseline outside the space": (
        ('"lr": 0.01, "batch_size": 32}', '"lr": 0.5, "batch_size": 32}'),
        "BASELINE is outside the space: lr 0.5 is outside [0.001, 0.1]"),
    "a starting config outside the space": (
        ('COMPARE = "optimizer"', 'COMPARE = "optimizer"\nSTARTS = [{"optimizer": "adam", "lr": 2.0}]'),
        "STARTS[0] is outside the space: lr 2.0 is outside [0.001, 0.1]"),
    "starting configs that are no list": (
        ('COMPARE = "optimizer"', 'COMPARE = "optimizer"\nSTARTS = {"lr": 0.01}'),
        "STARTS must be a list of dicts of settings"),
    "a baseline that is no config": (
        ('"lr": 0.01, "batch_size": 32}', '"lr": 0.01, "batch_size": 32, "learning_rate": 1}'),
        "BASELINE is not a config that trains: unknown key 'learning_rate'"),
    "a compared hyperparameter not suggested by every trial": (
        ('trial.suggest_categorical("optimizer", ["sgd", "adam"])',
         'if trial.suggest_float("x", 0, 1) > 0.5:\n'
         '        trial.suggest_categorical("optimizer", ["sgd", "adam"])'),
        "define(trial, max_epochs) does not suggest COMPARE 'optimizer' as a categorical in every "
        "trial"),
    "label smoothing of a loss of the task's own": (
        ("def define(trial, max_epochs):\n",
         "def loss(outputs, targets):\n    return nn.functional.cross_entropy(outputs, targets)\n"
         "\n\ndef define(trial, max_epochs):\n    trial.suggest_float('label_smoothing', 0, 0.1)\n"),
        "define(trial, max_epochs) sets label_smoothing: label_smoothing applies to the default "
        "cross-entropy loss only; this task has a loss of its own"),
    "a task that cannot be pickled": (
        ("return nn.Linear(4, 2)", "with LOCK:\n        return nn.Linear(4, 2)"),
        "the task cannot be sent to Ray's workers: pickling it raised TypeError: cannot pickle "
        "'_thread.lock' object"),
    "a model whose loss is not a number": (
        ("return nn.Linear(4, 2)",
         "model = nn.Linear(4, 2)\n    model.weight.data.fill_(float('nan'))\n    return model"),
        "loss(outputs, targets) is nan on the first batch"),
    # hooks and keys of one's own training code (trainables.steps)
    "a training step that returns no loss": (
        ("def define(trial, max_epochs):\n",
         "def training_step(model, batch):\n    return 1.0\n\n\ndef define(trial, max_epochs):\n"),
        "training_step(model, batch) returned float, not the batch's loss (a 0-d tensor)"),
    "an evaluation step that returns the outputs alone": (
        ("def define(trial, max_epochs):\n",
         "def evaluation_step(model, batch):\n    return model(batch[0])\n\n\n"
         "def define(trial, max_epochs):\n"),
        "evaluation_step(model, batch) failed on the first batch: ValueError: too many values to "
        "unpack (expected 2); it returns (outputs, targets)"),
    "configure_optimizers returning no optimizer": (
        ("def define(trial, max_epochs):\n",
         "def configure_optimizers(model, params):\n    return model\n\n\n"
         "def define(trial, max_epochs):\n"),
        "configure_optimizers(model, params) returned Linear, not an optimizer, (optimizer, "
        "schedule) or {\"optimizer\": ..., \"lr_scheduler\": ...}"),
    "configure_optimizers that raises": (
        ("def define(trial, max_epochs):\n",
         "def configure_optimizers(model, params):\n    return OPTIMIZERS[params['optimizer']]\n"
         "\n\ndef define(trial, max_epochs):\n"),
        "configure_optimizers(model, params) raised NameError: name 'OPTIMIZERS' is not defined"),
    "an optimizer argument that does not exist": (
        ('"lr": 0.01, "batch_size": 32}', '"lr": 0.01, "batch_size": 32, "betas": [0.9, 0.99]}'),
        "BASELINE is not a config that trains: unknown key 'betas'; allowed keys: "),
    "a precision the device lacks": (
        ('return {"epochs": max_epochs, "batch_size": 32}',
         'return {"epochs": max_epochs, "batch_size": 32, "precision": "fp16"}'),
        "the first config cannot train: precision fp16 needs a CUDA device (its gradient scaler "
        "is CUDA's); this trial trains on cpu: use bf16"),
    "dict batches without a training step": (
        ('return {"train": (x, (x[:, 0] > 0).long())}',
         'return {"train": Items([{"x": x[i], "y": int(x[i, 0] > 0)} for i in range(120)])}\n\n'
         '\nclass Items(torch.utils.data.Dataset):\n    def __init__(self, items):\n'
         '        self.items = items\n\n    def __len__(self):\n        return len(self.items)\n\n'
         '    def __getitem__(self, i):\n        return self.items[i]'),
        "load_data(data_dir) gave batches the default step cannot take: a batch is a dict, not "
        "(inputs, targets): write training_step(model, batch) in the task for batches like "
        "these"),
    "a loss that would broadcast outputs against targets": (
        ("return nn.Linear(4, 2)", "return nn.Linear(4, 1)\n\n\n"
         "loss = nn.functional.mse_loss\nMETRIC = 'rmse'"),
        "loss(outputs, targets) does not fit the model's outputs (32, 1) float32 and targets "
        "(32,) int64: ValueError: it would broadcast them: Using a target size "),
    "a start method multiprocessing lacks": (
        ('METRIC = "accuracy"', 'METRIC = "accuracy"\nWORKER_START = "thread"'),
        "WORKER_START 'thread' is not one of: fork, forkserver, spawn"),
    "a file that does not import": (
        ("import threading", "import threading\nimport no_such_module"),
        "importing it raised ModuleNotFoundError: No module named 'no_such_module'"),
}


def task_file(folder, change=None):
    text = GOOD if change is None else GOOD.replace(*change)
    assert change is None or text != GOOD, change
    path = folder / "my_task.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_defect_of_a_task_file_is_one_line_before_ray_starts(defect, tmp_path, monkeypatch,
                                                                capsys):
    """tuning.run on a task file with one defect: exit code 2, one line that names the file and
    the function and says what is wrong, no run directory, and Ray never started."""
    import ray

    change, message = DEFECTS[defect]
    path = task_file(tmp_path, change)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run.main(["--space", str(path), "--storage-path", str(tmp_path / "runs")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"python -m tuning.run: error: {path}: {message}"), lines[0]
    assert not (tmp_path / "runs").exists()
    assert not ray.is_initialized()


def test_the_check_of_a_good_task_file_prints_its_size_speed_and_cost(tmp_path, capsys):
    """tuning.check on a sound file: the parameter count, the samples and the folder they come
    from, samples per second, the run's estimated cost, and ok."""
    from trainables.data import default_data_dir

    check.main(["--space", str(task_file(tmp_path))])
    out = capsys.readouterr().out
    assert "Task my_task (" in out and ": 10 parameters; 100 training samples (tensors) and 20 " \
        f"validation samples (tensors) from {default_data_dir()}; metric val_accuracy, higher " \
        "is better." in out
    assert " training samples/s on 1 CPU: about " in out and " epochs expected, about " in out
    assert "trial 0 is the task's BASELINE" in out
    assert out.strip().endswith("ok: the task and its space are ready for python -m tuning.run")


def test_the_check_runs_in_a_fresh_process_and_fails_in_one_line(tmp_path):
    """As a command: the task imported in a process of its own, a defect one line on stderr."""
    path = task_file(tmp_path, DEFECTS["a model that raises"][0])
    done = subprocess.run([sys.executable, "-m", "tuning.check", "--space", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("python -m tuning.check: error: my_task.py: build_model(params) "
                           "raised KeyError: 'width'\n")


def test_the_check_leaves_the_process_its_torch_threads(tmp_path):
    """The check measures speed with a trial's threads (--cpus-per-trial 1), then gives this
    process its own back: final training runs in it later (it ran on one thread, 1.6x slower)."""
    import torch

    from search_spaces import get_space
    from trainables.task import load_task
    from tuning.settings import parse_args, resolve

    path = task_file(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        space = get_space(str(path))
        s = resolve(parse_args("x", "", ["--space", str(path), "--cpus-per-trial", "1"]), space)
        dry_run.dry_run(space, load_task(s.task), s)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_warm_start_from_a_run_of_another_space_is_one_line_before_ray_starts(
        tmp_path, monkeypatch, capsys):
    """--warm-start RUN_DIR of a run of another space: exit code 2, one line naming both
    spaces, no run directory, Ray never started."""
    import json

    import ray

    path = task_file(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"space": "sgd_vs_adam",
                                                "space_ref": "sgd_vs_adam"}))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run.main(["--space", str(path), "--warm-start", str(other),
                  "--storage-path", str(tmp_path / "runs")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"python -m tuning.run: error: --warm-start {other} is a run of space "
                     f"'sgd_vs_adam', not '{path}'; warm-start from a run of the same space"]
    assert not (tmp_path / "runs").exists() and not ray.is_initialized()
