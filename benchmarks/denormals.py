"""Epoch times with denormal floats flushed to zero (as the Trainer sets it) and without, side by
side in one process: Adam with weight decay drives the first layer's weights of FashionMNIST's
always-blank border pixels, and their moments, below float32's smallest normal number, where the
CPU slows down on every multiply that touches them.

    python benchmarks/denormals.py              # 20 epochs of 10,000 images, each way, 1 thread
    python benchmarks/denormals.py --epochs 30 --samples 20000

Each way trains the same config from the same seed; with --rounds, the ways alternate (flush on,
off, on, off) so that the machine's drift falls on both. Prints each way's seconds per epoch, the last epochs'
ratio, the denormal values left in the weights and optimizer state, and the final validation
accuracy of both (flushing changes the trajectory from the epoch denormals appear, as a change
of seed would).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainables.config import parse_config
from trainables.data import default_data_dir, for_tuning, head
from trainables.loop import Trainer
from trainables.task import load_task

CONFIG = {"optimizer": "adam", "lr": 2e-3, "weight_decay": 1e-3, "batch_size": 64}


def denormals(trainer: Trainer) -> int:
    tiny = torch.finfo(torch.float32).tiny
    tensors = [*trainer.model.parameters(),
               *(v for state in trainer.optimizer.state.values() for v in state.values()
                 if torch.is_tensor(v) and v.dim())]
    return sum(int(((t.abs() < tiny) & (t != 0)).sum()) for t in tensors)


def run(flush: bool, epochs: int, parts: dict) -> tuple[list[float], float, int]:
    task = load_task("fashion_mnist")
    trainer = Trainer(parse_config({**CONFIG, "epochs": epochs}), task)
    torch.set_flush_denormal(flush)  # after the Trainer, which turns it on
    train, val = trainer.feed(parts["train"], train=True), trainer.feed(parts["val"], train=False)
    seconds, metrics = [], {}
    for _ in range(epochs):
        start = time.perf_counter()
        metrics = trainer.fit_epoch(train, val)
        seconds.append(time.perf_counter() - start)
    return seconds, metrics["val_accuracy"], denormals(trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10_000, help="training images")
    parser.add_argument("--rounds", type=int, default=1, help="runs each way, alternating")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = load_task("fashion_mnist")
    parts = for_tuning(task.splits(default_data_dir()), None)
    parts["train"] = head(parts["train"], args.samples)
    found: dict[bool, list] = {True: [], False: []}
    for _ in range(args.rounds):
        for flush in (True, False):
            found[flush].append(run(flush, args.epochs, parts))
            seconds, accuracy, left = found[flush][-1]
            print(f"flush {'on ' if flush else 'off'}: {sum(seconds):6.1f} s for {args.epochs} "
                  f"epochs, per epoch " + " ".join(f"{s:.1f}" for s in seconds)
                  + f"; {left} denormal values left; validation accuracy {100 * accuracy:.2f}%",
                  flush=True)
    tail = max(1, args.epochs // 4)
    on = statistics.median(sum(s[-tail:]) / tail for s, _, _ in found[True])
    off = statistics.median(sum(s[-tail:]) / tail for s, _, _ in found[False])
    total_on = statistics.median(sum(s) for s, _, _ in found[True])
    total_off = statistics.median(sum(s) for s, _, _ in found[False])
    print(f"last {tail} epochs: {off:.2f} s an epoch without flushing, {on:.2f} s with it: "
          f"{off / on:.1f}x; whole run {total_off:.0f} s against {total_on:.0f} s: "
          f"{total_off / total_on:.1f}x")


if __name__ == "__main__":
    main()
