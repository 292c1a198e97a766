"""Regression: disease progression one year on, from ten measurements of 442 diabetes patients
(scikit-learn's diabetes table, which ships inside the package: nothing is downloaded).

Scored by RMSE on the validation split, lower is better. The network's width and dropout are tuned
beside the optimizer: SGD with momentum against Adam, each at its own learning rate.

    python -m tuning.check --space examples/diabetes_regression.py
    python -m tuning.run --space examples/diabetes_regression.py --final
"""

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

METRIC = "rmse"  # lower is better
BASELINE = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 60, "width": 64,
            "dropout": 0.0}  # what we train with today
HYPERPARAMETERS = {"width": 64, "dropout": 0.0}

QUESTION = "SGD with momentum or Adam for this regression, and at what learning rate?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 60, "grace_period": 10, "reduction_factor": 3, "num_samples": 16}


def load_data(data_dir: Path) -> dict:
    """A seeded 60/20/20 split into training, validation and test rows; the targets (about 25 to
    346) stay in their own units, so that the RMSE reads in them."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    val, test, train = order[:88], order[88:176], order[176:]
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}


def build_model(params: dict) -> nn.Module:
    width, dropout = params["width"], params["dropout"]
    model = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(width, 1))
    nn.init.constant_(model[-1].bias, 150.0)  # start at the targets' middle, not at 0
    return model


loss = F.mse_loss


def define(trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":  # the squared error of raw targets is large: so are its gradients
        trial.suggest_float("lr", 1e-5, 1e-3, log=True)
        trial.suggest_categorical("momentum", [0.0, 0.9])
    else:
        trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64])
    trial.suggest_categorical("width", [32, 64, 128])
    trial.suggest_float("dropout", 0.0, 0.3)
    return {"epochs": max_epochs}
