"""The tutorial's own setting, SGD without momentum for 10 epochs, with only lr and batch size free."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = "The tutorial's SGD setting (no momentum, no shuffling) with only lr and batch size tuned"
QUESTION = "What does tuning the learning rate and batch size alone buy over the tutorial's lr 1e-3, batch 64?"
COMPARE = "batch_size"
BUDGET = Budget(max_epochs=10, grace_period=2, reduction_factor=3, num_samples=24)


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    trial.suggest_float("lr", 1e-3, 1.0, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256])
    return {"optimizer": "sgd", "momentum": 0.0, "shuffle": False, "epochs": max_epochs, "model": "mlp"}
