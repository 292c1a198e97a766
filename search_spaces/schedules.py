"""SGD with momentum and Adam crossed with the learning-rate schedules of the core."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = "SGD+momentum and Adam crossed with the none/step/multistep/exponential/cosine schedules"
QUESTION = "Which learning-rate schedule helps most, and for which optimizer?"
COMPARE = "schedule"
BUDGET = Budget(max_epochs=12, grace_period=3, reduction_factor=2, num_samples=30)


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 1e-2, 0.3, log=True)
        trial.suggest_float("momentum", 0.8, 0.95)
    else:
        trial.suggest_float("lr", 3e-4, 3e-3, log=True)
    schedule = trial.suggest_categorical("schedule", ["none", "step", "multistep", "exponential", "cosine"])
    fixed = {"epochs": max_epochs}  # a schedule is planned over the whole run
    if schedule == "step":
        trial.suggest_int("step_size", 1, max(1, max_epochs // 2))
        trial.suggest_float("gamma", 0.1, 0.7)
    elif schedule == "multistep":
        trial.suggest_float("gamma", 0.1, 0.7)
        fixed["milestones"] = sorted({max(1, max_epochs // 2), max(1, 3 * max_epochs // 4)})
    elif schedule == "exponential":
        trial.suggest_float("gamma", 0.7, 0.99)
    return fixed
