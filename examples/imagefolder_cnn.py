"""A small CNN on a folder of images with one subfolder per class (torchvision's ImageFolder),
augmented by random crops and flips while it trains.

    DATA/train/<class>/*.png, DATA/val/<class>/*.png and (final training) DATA/test/<class>/*.png

    python -m tuning.check --space examples/imagefolder_cnn.py --data-dir DATA
    python -m tuning.run --space examples/imagefolder_cnn.py --data-dir DATA --final

The images are read in each trial's own process through a DataLoader; its shuffling and the random
crops and flips are seeded, so that a seed reproduces a run.
"""

from pathlib import Path

from torch import nn
from torchvision import datasets, transforms

CLASSES = 3  # the class folders under DATA/train
SIZE = 32  # images are resized to SIZE x SIZE pixels

BASELINE = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 10, "width": 16,
            "dropout": 0.0}
HYPERPARAMETERS = {"width": 16, "dropout": 0.0}

QUESTION = "SGD with momentum or Adam for this CNN, and how wide?"
COMPARE = "optimizer"
BUDGET = {"max_epochs": 10, "grace_period": 2, "reduction_factor": 3, "num_samples": 16}


def load_data(data_dir: Path) -> dict:
    plain = [transforms.Resize((SIZE, SIZE)), transforms.ToTensor()]
    augment = transforms.Compose([transforms.RandomResizedCrop(SIZE, scale=(0.7, 1.0)),
                                  transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    root = Path(data_dir)
    splits = {"train": datasets.ImageFolder(root / "train", augment),
              "val": datasets.ImageFolder(root / "val", transforms.Compose(plain))}
    if (root / "test").is_dir():
        splits["test"] = datasets.ImageFolder(root / "test", transforms.Compose(plain))
    return splits


def build_model(params: dict) -> nn.Module:
    width = params["width"]
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(params["dropout"]),
        nn.Linear(2 * width * (SIZE // 4) ** 2, CLASSES),
    )


def define(trial, max_epochs: int) -> dict:
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 1e-3, 0.1, log=True)
        trial.suggest_categorical("momentum", [0.5, 0.9])
    else:
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32])
    trial.suggest_categorical("width", [8, 16, 32])
    trial.suggest_float("dropout", 0.0, 0.5)
    return {"epochs": max_epochs}
