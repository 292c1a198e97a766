"""The five optimizers of the core, each with its own learning-rate range, plus weight decay."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = "SGD, Adam, AdamW, RMSprop and Adagrad with weight decay"
QUESTION = "Which optimizer trains the MLP best, and at what learning rate?"
COMPARE = "optimizer"
BUDGET = Budget(max_epochs=9, grace_period=1, reduction_factor=3, num_samples=50)

LR_RANGES = {
    "sgd": (1e-3, 0.3),
    "adam": (1e-4, 1e-2),
    "adamw": (1e-4, 1e-2),
    "rmsprop": (1e-5, 3e-3),
    "adagrad": (1e-3, 0.3),
}


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", list(LR_RANGES))
    trial.suggest_float("lr", *LR_RANGES[optimizer], log=True)
    if optimizer == "sgd":
        trial.suggest_categorical("momentum", [0.0, 0.5, 0.9])
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return {"epochs": max_epochs}  # ASHA decides who trains how long
