"""How far the tutorial's MLP goes, and how long it must train: each training length raced on
its own, with everything that moves this network's accuracy tuned within it."""

from __future__ import annotations

import optuna

from search_spaces import Budget

DESCRIPTION = ("The tutorial's MLP at 5, 10, 20 and 30 epochs, each length with its own optimizer, "
               "lr, weight decay, batch, schedule, label smoothing, dropout and width")
QUESTION = "How far can the tutorial's MLP go, and how many epochs does it take?"
COMPARE = "epochs"  # a 10-epoch schedule is judged against 10-epoch schedules only
BUDGET = Budget(max_epochs=30, grace_period=5, reduction_factor=3, num_samples=24)

EPOCHS = (5, 10, 20, 30)
# what a careful practitioner tries first at each length: Adam at its default lr, batch 128, a
# cosine schedule, the tutorial's width and no regularization (weight decay at the space's
# floor), the `hand.json` of docs/benchmarks.md; each lane starts there, so that the search finds
# at least what that recipe does
STARTS = [{"epochs": epochs, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6,
           "batch_size": 128, "schedule": "cosine", "warmup_epochs": 0, "label_smoothing": 0.0,
           "dropout": 0.0, "width": 512} for epochs in EPOCHS]


def define(trial: optuna.Trial, max_epochs: int) -> dict:
    epochs = trial.suggest_categorical("epochs", [e for e in EPOCHS if e <= max_epochs]
                                       or [max_epochs])
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam", "adamw"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 1e-3, 0.3, log=True)
        if trial.suggest_categorical("momentum", [0.0, 0.9]):
            trial.suggest_categorical("nesterov", [False, True])
    else:
        trial.suggest_float("lr", 2e-4, 3e-3, log=True)
    # AdamW decays by lr x weight_decay each step, decoupled from the gradient; the others add
    # weight_decay x weights to it, where much above 1e-3 starves the gradient on this network
    trial.suggest_float("weight_decay", *((1e-3, 0.3) if optimizer == "adamw" else (1e-6, 1e-3)),
                        log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    schedule = trial.suggest_categorical("schedule", ["none", "cosine", "onecycle"])
    if schedule == "cosine" and epochs >= 5:
        trial.suggest_int("warmup_epochs", 0, 2)
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_float("dropout", 0.0, 0.5)
    trial.suggest_categorical("width", [256, 512, 1024])
    return {"model": "mlp"}
