"""FashionMNIST cut to 6,000 training and 5,000 validation images: the built-in task's network,
loss and baseline, on data small enough for a benchmark to search it many times over.

    python -m tuning.run --space sgd_vs_adam --task benchmarks/fashion_mnist_subset.py
"""

from pathlib import Path

from trainables.tasks.fashion_mnist import BASELINE, HYPERPARAMETERS, build_model  # noqa: F401
from trainables.tasks.fashion_mnist import load_data as load_everything

TRAIN, VAL = 6_000, 5_000  # 5,000 validation images: a 0.5-point standard error at 85%


def load_data(data_dir: Path) -> dict:
    splits = load_everything(data_dir)
    images, labels = splits["train"]
    return {"train": (images[:TRAIN], labels[:TRAIN]),
            "val": (images[-VAL:], labels[-VAL:]), "test": splits["test"]}
