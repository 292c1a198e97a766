"""The MNIST example's CNN with SGD+momentum (its own optimizer) against Adam."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = "The MNIST example's CNN with SGD+momentum against Adam"
QUESTION = "SGD with momentum or Adam for the CNN, and at what learning rate?"
COMPARE = "optimizer"
BUDGET = Budget(max_epochs=6, grace_period=1, reduction_factor=3, num_samples=16)


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 3e-3, 0.1, log=True)
        trial.suggest_float("momentum", 0.5, 0.95)
    else:
        trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    return {"model": "cnn", "epochs": max_epochs}  # ASHA decides who trains how long
