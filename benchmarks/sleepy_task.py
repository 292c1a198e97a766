"""A task and space whose epochs take a fixed time and almost no CPU: a linear model on 64 rows that
sleeps SLEEP seconds a training epoch, so that a search's cost beyond its trials' own time (Ray,
the searcher, the scheduler, checkpoints, snapshots) can be read on a machine with few cores and
as many trial slots as a cluster has (benchmarks/many_trials.py).

    python -m tuning.run --space benchmarks/sleepy_task.py --num-samples 20
"""

import os
import time
from pathlib import Path

import torch
from torch import nn

# seconds a training epoch; 4 epochs, a 1-second trial, as in Ray Tune's own test
SLEEP = float(os.environ.get("SLEEPY_EPOCH_SECONDS", "0.25"))

QUESTION = "SGD or Adam, and at what learning rate?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "num_samples": 1000}


def load_data(data_dir: Path) -> dict:
    """64 rows each of training and validation: 8 features, the class the sign of the first."""
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    return {"train": (x[:64], y[:64]), "val": (x[64:], y[64:])}


class Sleepy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(SLEEP)
        return self.linear(x)


def build_model(params: dict) -> nn.Module:
    return Sleepy()


def define(trial, max_epochs: int) -> dict:
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    return {"epochs": max_epochs, "batch_size": 64}
