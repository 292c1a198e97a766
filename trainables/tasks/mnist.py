"""MNIST (the handwritten digits) with the same networks as the FashionMNIST task."""

from pathlib import Path

from trainables.tasks.fashion_mnist import BASELINE, HYPERPARAMETERS, build_model  # noqa: F401
from trainables.tasks.fashion_mnist import load_data as _load_idx


def load_data(data_dir: Path) -> dict:
    return _load_idx(data_dir, "mnist")
