"""A test space racing Adam against SGD on faint generated images (faint_split): Adam learns
fast, then its exponential schedule freezes it near 80%; SGD warms up (its lr multiplied by 10
after epoch 2) and ends at 100% by epoch 4, far behind Adam at epoch 2 (measured over seeds 0-3:
SGD 20-33% at epoch 2, 100% at 4 to 6; Adam 77-84% from epoch 2 on)."""

from __future__ import annotations

import torch

from search_spaces import Budget, Space
from trainables.idx import Split


def faint_split(n: int, seed: int = 0, lift: int = 40) -> Split:
    """Like conftest.make_split, but the class patch is only `lift` grey levels above the noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 100, (n, 28, 28), generator=g, dtype=torch.int16)
    for k in range(10):
        row, col = divmod(k, 4)
        images[labels == k, 7 * row:7 * row + 7, 7 * col:7 * col + 7] += lift
    return Split(images.clamp(0, 255).to(torch.uint8), labels)


def _settings(optimizer: str, trial, max_epochs: int) -> dict:
    fixed = {"batch_size": 32, "epochs": max_epochs}
    if optimizer == "adam":
        trial.suggest_float("lr", 6e-5, 9e-5, log=True)
        return {**fixed, "schedule": "exponential", "gamma": 0.1}
    trial.suggest_float("lr", 1.5e-3, 2.5e-3, log=True)
    return {**fixed, "momentum": 0.9, "schedule": "multistep", "milestones": [2], "gamma": 10.0}


def raced(trial, max_epochs: int) -> dict:
    return _settings(trial.suggest_categorical("optimizer", ["adam", "sgd"]), trial, max_epochs)


BUDGET = Budget(max_epochs=6, grace_period=2, reduction_factor=2, num_samples=4)
SPACES = {
    "slow_starter": Space("slow_starter", "Adam against a slow-starting SGD", "Adam or SGD?",
                          "optimizer", BUDGET, raced),
}
