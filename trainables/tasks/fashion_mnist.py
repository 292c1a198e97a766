"""FashionMNIST with the "Optimizing Model Parameters" tutorial's network: the default task.

The MLP's width and dropout, and the model itself (`model`: "mlp", or the MNIST example's "cnn"),
are hyperparameters a space may tune beside the optimizer's. The images stay uint8 in memory; the
training loop scales each batch to [0, 1] as ToTensor would.
"""

from pathlib import Path

from torch import nn

from trainables.idx import load_dataset
from trainables.models import MODELS

BASELINE = {"optimizer": "sgd", "lr": 1e-3, "batch_size": 64, "momentum": 0.0, "epochs": 10,
            "model": "mlp"}  # the tutorial's settings
HYPERPARAMETERS = {"model": "mlp", "width": 512, "dropout": 0.0}


def load_data(data_dir: Path, dataset: str = "fashion_mnist") -> dict:
    train, test = load_dataset(dataset, data_dir)
    # (N, 1, 28, 28) views: one grey channel, as ToTensor gives the networks
    return {"train": (train.images.unsqueeze(1), train.labels),
            "test": (test.images.unsqueeze(1), test.labels)}


def build_model(params: dict) -> nn.Module:
    name = params.get("model", "mlp")
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not one of: {', '.join(MODELS)}")
    if name == "mlp":
        return MODELS[name](width=params.get("width", 512), dropout=params.get("dropout", 0.0))
    return MODELS[name]()
