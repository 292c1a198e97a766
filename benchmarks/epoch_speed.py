"""One epoch of the tutorial's loop against one of ours: same model, config, data and process.

    python benchmarks/epoch_speed.py [--threads 2] [--batch-size 64] [--model mlp] [--optimizer sgd]
    python benchmarks/epoch_speed.py --against REV [--repeat 5]   # our epoch, REV's code and this

The tutorial's loop is a DataLoader over torchvision's FashionMNIST with ToTensor (a PIL image
and a tensor per sample, then collation); ours, the built-in FashionMNIST task's path through the
training core, slices batches from tensors loaded once. Both run train_loop + test_loop over the
full 60,000 / 10,000 images. Also prints what share of the machine's fp32 matrix-multiply
throughput, measured here in the same run, our epoch reaches. With --against, this script runs
twice at once, once on the package of git revision REV and once on this tree's, each in a process
of its own with one torch thread, round after round, and their "our loop" seconds are compared
round by round.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor

from trainables.config import TrainConfig, optimizer_classes, parse_config
from trainables.data import default_data_dir
from trainables.idx import SYSTEM_DIRS, candidate_dirs, find_files
from trainables.loop import Trainer
from trainables.models import MODELS
from trainables.task import load_task


def tutorial_epoch(model: nn.Module, train: DataLoader, test: DataLoader, lr: float,
                   optimizer_class: type = torch.optim.SGD) -> float:
    """The tutorial's train_loop and test_loop, without their prints, its optimizer built as the
    tutorial builds SGD; returns test accuracy."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optimizer_class(model.parameters(), lr=lr)
    model.train()
    for X, y in train:
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    correct = 0
    with torch.no_grad():
        for X, y in test:
            correct += (model(X).argmax(1) == y).type(torch.float).sum().item()
    return correct / len(test.dataset)


def torchvision_root(tmp: Path) -> Path:
    """Lay the IDX files out the way torchvision's FashionMNIST class reads them."""
    dirs = candidate_dirs("fashion_mnist", default_data_dir(), SYSTEM_DIRS["fashion_mnist"])
    found = find_files(dirs)
    if found is None:
        raise SystemExit("FashionMNIST not found: apt-get install dataset-fashion-mnist")
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for src in (path for split in found for path in split):
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(raw / src.name.removesuffix(".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return tmp


def matmul_gflops(n: int = 1024, repeat: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def mlp_flops_per_sample() -> int:
    """Forward multiply-adds of the MLP's linear layers, times 2 for FLOPs."""
    return 2 * (784 * 512 + 512 * 512 + 512 * 10)


def time_tutorial_epoch(config: TrainConfig) -> tuple[float, float]:
    """Seconds and test accuracy of one epoch of the tutorial's loop, from the same start as ours."""
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        train_ds = datasets.FashionMNIST(root, train=True, transform=ToTensor())
        test_ds = datasets.FashionMNIST(root, train=False, transform=ToTensor())
        trainer = Trainer(config, load_task())
        start = time.perf_counter()
        accuracy = tutorial_epoch(trainer.model, DataLoader(train_ds, batch_size=config.batch_size),
                                  DataLoader(test_ds, batch_size=config.batch_size), config.lr,
                                  optimizer_classes()[config.optimizer])
        return time.perf_counter() - start, accuracy


OURS = re.compile(r"^our loop\s*:\s*([\d.]+) s", re.M)


def against(revision: str, repeat: int, argv: list[str]) -> None:
    """This script on REVISION's package and on this tree's, each in a process of its own,
    started together on the machine's cores (one torch thread each), so that whatever else slows
    the machine slows both alike; `repeat` rounds. The medians of their "our loop" seconds, and
    the ratio of their speeds."""
    root = Path(__file__).resolve().parents[1]
    old_tree = Path(tempfile.mkdtemp(prefix="epoch-speed-")) / "old"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(old_tree),
                    revision], check=True, capture_output=True)
    trees = {revision: old_tree, "this tree": root}
    seconds: dict[str, list[float]] = {label: [] for label in trees}
    try:
        for _ in range(repeat):
            running = {label: subprocess.Popen(
                [sys.executable, __file__, *argv], cwd=tree,
                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
                for label, tree in trees.items()}
            for label, process in running.items():
                out, _ = process.communicate()
                seconds[label].append(float(OURS.search(out).group(1)))
            print("  ".join(f"{label} {s[-1]:.2f} s" for label, s in seconds.items()), flush=True)
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(old_tree)],
                       check=False, capture_output=True)
    old, new = (statistics.median(v) for v in seconds.values())
    ratios = [o / n for o, n in zip(*seconds.values())]
    print(f"median of {repeat}: {revision} {old:.2f} s, this tree {new:.2f} s; round by round this "
          f"tree runs at {statistics.median(ratios):.2f}x the speed of {revision} (median; "
          f"{min(ratios):.2f}x to {max(ratios):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    parser.add_argument("--model", default="mlp", choices=list(MODELS), help="model (default: mlp)")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                        help="our loop's optimizer (default: sgd, the tutorial's)")
    parser.add_argument("--against", metavar="REV", help="compare our epoch with git revision REV's")
    parser.add_argument("--repeat", type=int, default=5, help="rounds with --against (default: 5)")
    args = parser.parse_args()
    if args.against:  # the two processes share the machine: a thread each
        against(args.against, args.repeat, ["--threads", "1", "--batch-size",
                                            str(args.batch_size), "--model", args.model,
                                            "--optimizer", args.optimizer])
        return
    torch.set_num_threads(args.threads)
    task = load_task()
    config = parse_config({"optimizer": args.optimizer, "lr": 1e-3, "batch_size": args.batch_size,
                           "epochs": 1, "shuffle": False, "model": args.model},
                          hyperparameters=task.hyperparameters)

    tutorial_s, tutorial_acc = time_tutorial_epoch(config)
    start = time.perf_counter()
    splits = task.splits(default_data_dir())
    trainer = Trainer(config, task)
    train, test = trainer.feed(splits["train"], train=True), trainer.feed(splits["test"], train=False)
    load_s = time.perf_counter() - start
    ours = trainer.fit_epoch(train, test, holdout_name="test")
    ours_s = ours["seconds"]
    samples = len(train) + len(test)
    peak = matmul_gflops()

    print(f"model {args.model}, {args.optimizer}, batch {args.batch_size}, {args.threads} threads, "
          f"{len(train)} train + {len(test)} test images")
    print(f"tutorial loop : {tutorial_s:6.2f} s  {samples / tutorial_s:8.0f} samples/s  "
          f"test accuracy {tutorial_acc:.4f}")
    print(f"our loop      : {ours_s:6.2f} s  {samples / ours_s:8.0f} samples/s  "
          f"test accuracy {ours['test_accuracy']:.4f}  (+{load_s:.2f} s to load the data once)")
    print(f"speed-up      : {tutorial_s / ours_s:.2f}x")
    if args.model == "mlp":
        flops = mlp_flops_per_sample() * (3 * len(train) + len(test))  # backward ~ 2x forward
        achieved = flops / ours_s / 1e9
        print(f"throughput    : {achieved:.1f} GFLOP/s of {peak:.1f} GFLOP/s measured fp32 matmul "
              f"(1024x1024) = {achieved / peak:.0%}")
    else:
        print(f"fp32 matmul   : {peak:.1f} GFLOP/s (1024x1024)")


if __name__ == "__main__":
    main()
