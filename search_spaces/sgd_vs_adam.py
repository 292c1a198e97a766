"""SGD (with or without momentum) against Adam on the task's model (the built-in task's MLP, or
that of the task --task names)."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = "SGD (with momentum tuned) against Adam: which optimizer wins, and at what learning rate?"
QUESTION = "SGD or Adam, and at what learning rate?"
COMPARE = "optimizer"
BUDGET = Budget(max_epochs=12, grace_period=2, reduction_factor=3, num_samples=24)
# what a practitioner tries first for each (Adam's default lr; SGD with heavy momentum): the
# search starts each lane there, so that it finds at least as much as trying them would
STARTS = [{"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128},
          {"optimizer": "adam", "lr": 1e-3, "batch_size": 128}]


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 1e-3, 0.3, log=True)
        trial.suggest_categorical("momentum", [0.0, 0.5, 0.9])
    else:
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return {"epochs": max_epochs}  # ASHA decides who trains how long
