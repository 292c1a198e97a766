"""`python -m tuning.train` run for real, in a subprocess, on generated data."""

import json
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from trainables.config import parse_config
from trainables.loop import evaluate
from trainables.models import MLP
from trainables.task import load_task
from tuning.train import main

COMMAND = [sys.executable, "-m", "tuning.train"]


def test_train_writes_results(tmp_path, generate, write_dataset):
    """A real run on generated data writes model.pt, per-epoch metrics, the config, a PNG curve."""
    train, test = generate(600, seed=1), generate(100, seed=2)
    write_dataset(tmp_path / "gen_dir", train, test, gz=True)
    raw = {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 2, "momentum": 0.5}
    (tmp_path / "cfg.json").write_text(json.dumps(raw))
    args = ["--config", "cfg.json", "--output", "out", "--data-dir", "gen_dir", "--device", "cpu"]
    done = subprocess.run([*COMMAND, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    written = sorted(p.name for p in out.iterdir())
    assert written == ["config.json", "curve.png", "final_metrics.json", "model.pt"]

    config = parse_config(raw, hyperparameters=load_task().hyperparameters).to_dict()
    assert config["model"] == "mlp" and config["dropout"] == 0.0  # the task's own, as trained
    assert json.loads((out / "config.json").read_text()) == {**config, "task": "fashion_mnist"}
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert metrics["config"] == config
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for epoch in metrics["epochs"]:
        assert {"train_loss", "test_loss", "test_accuracy", "seconds", "lr"} <= set(epoch)
        assert 0 <= epoch["test_accuracy"] <= 1 and epoch["seconds"] > 0
    last = metrics["epochs"][-1]
    assert metrics["test_accuracy"] == last["test_accuracy"]
    assert metrics["test_loss"] == last["test_loss"]
    assert metrics["diverged"] is False
    assert last["test_accuracy"] >= 0.8  # the generated patches are learnable in two epochs

    model = MLP()
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    scores = evaluate(model, F.cross_entropy, (test.images.unsqueeze(1), test.labels))
    assert scores["accuracy"] == last["test_accuracy"]  # the model saved is the one measured last
    assert scores["loss"] == pytest.approx(last["test_loss"], rel=1e-5)

    png = (out / "curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert not list(out.glob(".*"))  # no temporary files left by the atomic writes

    # the tutorial's printout, over the 600 generated images rather than any other copy of the data
    assert "Epoch 1\n-------------------------------\n" in done.stdout
    assert "/  600]" in done.stdout
    assert f"Accuracy: {100 * last['test_accuracy']:>0.1f}%" in done.stdout


BAD_CONFIGS = {
    "unknown key": ('{"optimizer": "sgd", "lr": 0.1, "lr_decay": 0.5}',
                    "unknown key 'lr_decay'; allowed keys: optimizer, lr, batch_size, "),
    "not the task's": ('{"optimizer": "sgd", "lr": 0.1, "dropuot": 0.5}',
                       "; the task's own: model, width, dropout"),
    "unknown task": ('{"optimizer": "sgd", "lr": 0.1, "task": "imagenet"}',
                     "imagenet: no such file or module"),
    "lr 0": ('{"optimizer": "sgd", "lr": 0}', "lr must be greater than 0, got 0"),
    "unknown optimizer": ('{"optimizer": "lion", "lr": 0.1}',
                          "optimizer 'lion' is not one of: sgd, adam, adamw, rmsprop, adagrad, "
                          "adadelta"),
    "missing file": (None, "does not exist"),
    "invalid JSON": ('{"optimizer": "sgd", lr: 0.1}', "is not valid JSON"),
    # on the machine's FashionMNIST: refused before the first epoch, from the speed of a few batches
    "a billion epochs": ('{"optimizer": "sgd", "lr": 0.1, "epochs": 1e9}',
                         "epochs 1,000,000,000 would take about "),
    "a batch of them all": ('{"optimizer": "sgd", "lr": 0.1, "batch_size": 10000000}',
                            "batch_size 10,000,000 is larger than the training split (60,000 "
                            "samples)"),
}


def write_config(folder, text):
    if text is not None:  # None: the missing-file case
        (folder / "cfg.json").write_text(text)


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2(tmp_path, monkeypatch, capsys, case):
    """A bad config exits with code 2 and one stderr line saying what is wrong; nothing written."""
    text, expected = BAD_CONFIGS[case]
    write_config(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    # in-process: a real run spends seconds importing torch; the subprocess test below covers one
    with pytest.raises(SystemExit) as caught:
        main(["--config", "cfg.json", "--output", "out", "--device", "cpu"])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert captured.err.startswith("python -m tuning.train: error: ")
    assert expected in captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == ([tmp_path / "cfg.json"] if text is not None else [])


def test_bad_config_process_exits_2_without_traceback(tmp_path):
    """As a real process, a bad config exits with code 2 and one stderr line, and no output dir."""
    write_config(tmp_path, BAD_CONFIGS["lr 0"][0])
    done = subprocess.run([*COMMAND, "--config", "cfg.json", "--output", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr == "python -m tuning.train: error: lr must be greater than 0, got 0\n"
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_a_cuda_device_the_machine_lacks_is_one_line(tmp_path, monkeypatch, capsys):
    """--device cuda:7 on a machine with one GPU is a one-line error, exit 2, before training."""
    import torch

    write_config(tmp_path, '{"optimizer": "sgd", "lr": 0.1}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit) as caught:
        main(["--config", "cfg.json", "--output", "out", "--device", "cuda:7"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "python -m tuning.train: error: --device cuda:7 asked for, but this machine has 1 CUDA "
        "device (cuda:0)\n")
    assert not (tmp_path / "out").exists()


def test_a_hyperparameter_of_the_tasks_model_trains(tmp_path, generate, write_dataset, capsys):
    """{"optimizer": "adam", "lr": 0.001, "dropout": 0.2}: the built-in task's MLP takes its
    dropout from the config (once an unknown key), and the config written says so."""
    write_dataset(tmp_path / "data", generate(200, seed=1), generate(50, seed=2))
    (tmp_path / "c.json").write_text('{"optimizer": "adam", "lr": 0.001, "dropout": 0.2, '
                                     '"width": 64, "epochs": 1}')
    main(["--config", str(tmp_path / "c.json"), "--output", str(tmp_path / "out"),
          "--data-dir", str(tmp_path / "data"), "--device", "cpu"])
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (written["dropout"], written["width"], written["model"]) == (0.2, 64, "mlp")
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert state["linear_relu_stack.0.weight"].shape == (64, 784)
    assert "Test accuracy" in capsys.readouterr().out
