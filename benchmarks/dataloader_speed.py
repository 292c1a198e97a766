"""One training epoch of a map-style dataset through the task path against the DataLoader loop a
user writes by hand: same model, batch size, workers, data and process, by turns.

    python benchmarks/dataloader_speed.py [--workers 0 1] [--repeat 3] [--batch-size 64]

The dataset is torchvision's FashionMNIST with ToTensor (a PIL image per sample), read from the
system copy; this file is itself the task (load_data, build_model), as a user would write it. The
hand loop is the tutorial's train_loop over DataLoader(shuffle=True, num_workers=W); the task path
is the Trainer's epoch over its Feed (a seeded DataLoader with W workers), what a trial runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from trainables.config import parse_config
from trainables.loop import Trainer
from trainables.models import MLP
from trainables.task import load_task


def load_data(data_dir: Path) -> dict:
    from torchvision import datasets
    from torchvision.transforms import ToTensor

    return {"train": datasets.FashionMNIST(data_dir, train=True, transform=ToTensor())}


def build_model(params: dict) -> nn.Module:
    return MLP()


def hand_epoch(dataset, batch_size: int, workers: int) -> float:
    """The loop a user writes: seconds of one shuffled training epoch."""
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def task_epoch(task, dataset, batch_size: int, workers: int) -> float:
    """The trial's loop: seconds of one shuffled training epoch through the Trainer."""
    config = parse_config({"optimizer": "sgd", "lr": 1e-3, "batch_size": batch_size, "epochs": 1})
    trainer = Trainer(config, task, workers=workers)
    return trainer.fit_epoch(trainer.feed(dataset, train=True), None)["seconds"]


def main() -> None:
    from epoch_speed import torchvision_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                        help="DataLoader worker processes, each compared (default: 0 1)")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each (default: 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, a trial's with 1 CPU (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task(__file__)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = task.splits(torchvision_root(Path(tmp)))["train"]
        print(f"FashionMNIST, {len(dataset)} images through ToTensor, MLP, batch "
              f"{args.batch_size}, {args.threads} torch thread(s)")
        for workers in args.workers:
            hand, ours = [], []
            for _ in range(args.repeat):
                hand.append(hand_epoch(dataset, args.batch_size, workers))
                ours.append(task_epoch(task, dataset, args.batch_size, workers))
            h, o = statistics.median(hand), statistics.median(ours)
            print(f"{workers} workers: by hand {h:.2f} s, task path {o:.2f} s (medians of "
                  f"{args.repeat}; by hand {', '.join(f'{t:.2f}' for t in hand)}; task path "
                  f"{', '.join(f'{t:.2f}' for t in ours)}): {o / h:.2f}x the hand loop's time")


if __name__ == "__main__":
    main()
