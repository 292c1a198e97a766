"""Learning curves of a grid over the sgd_vs_adam space, trained once, for benchmarks/searchers.py
to replay: every config of the grid trained for 12 epochs with several seeds on
benchmarks/fashion_mnist_subset.py (6,000 training and 5,000 validation images).

    python benchmarks/train_curves.py                 # ~100 min on 2 cores; resumes where it stopped
    python benchmarks/train_curves.py --held-out      # Adam's 16 further seeds, ~40 min
    python benchmarks/train_curves.py --workers 1 --out /tmp/curves.csv.gz

The grid: SGD at 16 learning rates log-spaced over [1e-3, 0.3], momentum 0, 0.5 or 0.9; Adam at
13 over [1e-4, 1e-2]; batch 64, 128 or 256 for both: the sgd_vs_adam space's ranges. SGD has 8
seeds a config and Adam 16, so that a replay can race Adam against itself reading the same 16
seeds in another order: two lanes that are truly even. `--held-out` trains every Adam config again
with seeds 16 to 31 (curves/sgd_vs_adam_held_out.csv.gz), which no replay reads: the truth a named
config is scored by. One row per config, seed and epoch: optimizer, lr, momentum, batch_size,
seed, epoch, val_accuracy, val_loss, train_loss, seconds.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import multiprocessing
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASK = ROOT / "benchmarks" / "fashion_mnist_subset.py"
OUT = ROOT / "benchmarks" / "curves" / "sgd_vs_adam_subset.csv.gz"
HELD_OUT = ROOT / "benchmarks" / "curves" / "sgd_vs_adam_held_out.csv.gz"
EPOCHS = 12
BATCHES = (64, 128, 256)
SGD_LRS = np.geomspace(1e-3, 0.3, 16)
ADAM_LRS = np.geomspace(1e-4, 1e-2, 13)
SGD_SEEDS, ADAM_SEEDS = 8, 16
COLUMNS = ["optimizer", "lr", "momentum", "batch_size", "seed", "epoch", "val_accuracy",
           "val_loss", "train_loss", "seconds"]


def grid(held_out: bool = False) -> list[dict]:
    """Every (config, seed) of the grid, each config's seeds together; `held_out`: Adam's configs
    with 16 further seeds (16 to 31), which no replay reads, to measure each config's truth on."""
    adam_seeds = range(ADAM_SEEDS, 2 * ADAM_SEEDS) if held_out else range(ADAM_SEEDS)
    sgd = [] if held_out else [
        {"optimizer": "sgd", "lr": float(lr), "momentum": m, "batch_size": b, "seed": s}
        for lr, m, b in itertools.product(SGD_LRS, (0.0, 0.5, 0.9), BATCHES)
        for s in range(SGD_SEEDS)]
    adam = [{"optimizer": "adam", "lr": float(lr), "momentum": 0.0, "batch_size": b, "seed": s}
            for lr, b in itertools.product(ADAM_LRS, BATCHES) for s in adam_seeds]
    return sgd + adam


def key(row: dict) -> tuple:
    return (row["optimizer"], f"{float(row['lr']):.6g}", float(row["momentum"]),
            int(row["batch_size"]), int(row["seed"]))


_PARTS = None


def _setup() -> None:
    global _PARTS
    import torch

    from trainables.data import default_data_dir, for_tuning
    from trainables.task import load_task

    torch.set_num_threads(1)
    task = load_task(str(TASK))
    _PARTS = (task, for_tuning(task.splits(default_data_dir()), None))


def train(point: dict) -> list[list]:
    """One config and seed for EPOCHS epochs: a row per epoch."""
    from trainables.config import parse_config
    from trainables.loop import Trainer

    task, parts = _PARTS
    settings = {k: point[k] for k in ("optimizer", "lr", "batch_size", "seed")}
    if point["optimizer"] == "sgd":
        settings["momentum"] = point["momentum"]
    config = parse_config({**settings, "epochs": EPOCHS}, hyperparameters=task.hyperparameters)
    trainer = Trainer(config, task)
    feed, val = trainer.feed(parts["train"], train=True), trainer.feed(parts["val"], train=False)
    rows = []
    for _ in range(EPOCHS):
        m = trainer.fit_epoch(feed, val)
        rows.append([point["optimizer"], f"{point['lr']:.6g}", point["momentum"],
                     point["batch_size"], point["seed"], m["epoch"], round(m["val_accuracy"], 5),
                     round(m["val_loss"], 5), round(m["train_loss"], 5), round(m["seconds"], 3)])
    return rows


def done(path: Path) -> set[tuple]:
    """The (config, seed) pairs a file already holds all epochs of."""
    if not path.is_file():
        return set()
    counts: dict[tuple, int] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            counts[key(row)] = counts.get(key(row), 0) + 1
    return {k for k, n in counts.items() if n >= EPOCHS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"(default: {OUT.relative_to(ROOT)}, or "
                             f"{HELD_OUT.relative_to(ROOT)} with --held-out)")
    parser.add_argument("--held-out", action="store_true",
                        help="Adam's configs with seeds 16 to 31, the benchmark's truth")
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    args = parser.parse_args()
    args.out = args.out or (HELD_OUT if args.held_out else OUT)
    partial = args.out.with_name(args.out.name.removesuffix(".gz") + ".partial")
    have = done(partial)
    todo = [p for p in grid(args.held_out) if key(p) not in have]
    print(f"{len(have)} curves there, {len(todo)} to train", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not partial.is_file()
    with multiprocessing.get_context("spawn").Pool(args.workers, initializer=_setup) as pool, \
            open(partial, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for n, rows in enumerate(pool.imap_unordered(train, todo), 1):
            writer.writerows(rows)
            f.flush()
            if n % 20 == 0:
                print(f"{n} of {len(todo)}", flush=True)
    # a curve cut short by a kill is left out; complete ones go into the table, sorted
    with open(partial, newline="") as f:
        rows = list(csv.DictReader(f))
    complete = done(partial)
    rows = sorted((r for r in rows if key(r) in complete),
                  key=lambda r: (key(r), int(r["epoch"])))
    with gzip.open(args.out, "wt", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    partial.unlink()
    print(f"wrote {args.out}: {len(complete)} curves")


if __name__ == "__main__":
    main()
