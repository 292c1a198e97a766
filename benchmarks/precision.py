"""One epoch of the built-in FashionMNIST MLP in fp32 and in bf16 (`precision`: autocast on the
CPU), alternately in one process: seconds and test accuracy of each.

    python benchmarks/precision.py [--repeat 3] [--threads 2] [--batch-size 64] [--model mlp]

Each round trains a fresh model for one epoch (60,000 images, then the 10,000 test images) from
the same seed, first in fp32, then in bf16; the medians are compared. On a CPU without bf16
matrix instructions autocast converts every operand and computes slower than fp32; with them
(AVX512-BF16, AMX) it may be faster. The accuracy shows what the lower precision costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.config import parse_config  # noqa: E402
from trainables.data import default_data_dir  # noqa: E402
from trainables.loop import Trainer  # noqa: E402
from trainables.models import MODELS  # noqa: E402
from trainables.task import load_task  # noqa: E402


def epoch(task, splits, precision: str, batch_size: int, model: str
          ) -> tuple[float, float, float]:
    config = parse_config({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                           "batch_size": batch_size, "epochs": 1, "precision": precision,
                           "model": model}, hyperparameters=task.hyperparameters)
    trainer = Trainer(config, task)
    train, test = trainer.feed(splits["train"], True), trainer.feed(splits["test"], False)
    row = trainer.fit_epoch(train, test, holdout_name="test")
    return row["seconds"], row["test_accuracy"], row["test_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--model", default="mlp", choices=list(MODELS), help="model (default: mlp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task()
    splits = task.splits(default_data_dir())
    seen: dict[str, list[tuple[float, float, float]]] = {"fp32": [], "bf16": []}
    for round_ in range(1, args.repeat + 1):
        for precision in seen:
            seconds, accuracy, loss = epoch(task, splits, precision, args.batch_size, args.model)
            seen[precision].append((seconds, accuracy, loss))
            print(f"round {round_} {precision}: {seconds:6.2f} s, test accuracy {accuracy:.4f}, "
                  f"test loss {loss:.4f}", flush=True)
    median = {p: statistics.median(r[0] for r in rows) for p, rows in seen.items()}
    for precision, rows in seen.items():
        print(f"{precision}: median {median[precision]:.2f} s an epoch, test accuracy "
              f"{rows[0][1]:.4f}, test loss {rows[0][2]:.4f} (each round the same seed)")
    print(f"bf16 / fp32 time: {median['bf16'] / median['fp32']:.2f}x "
          f"(model {args.model}, batch {args.batch_size}, {args.threads} threads)")


if __name__ == "__main__":
    main()
