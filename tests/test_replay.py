"""The benchmark's table of learning curves (benchmarks/replay.py): what a replay reads and what it
scores a named config by."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from replay import Table  # noqa: E402

COLUMNS = ["optimizer", "lr", "momentum", "batch_size", "seed", "epoch", "val_accuracy",
           "val_loss", "train_loss", "seconds"]


def write(path, optimizers, seeds, level):
    """Curves at two learning rates whose final accuracy is `level` + 0.01 x the lr's index +
    0.001 x the seed, every epoch 0.1 below the next."""
    rows = [[opt, lr, 0.0, 64, seed, epoch, level + 0.01 * i + 0.001 * seed - 0.1 * (2 - epoch),
             0.5, 0.5, 1.0]
            for opt in optimizers for i, lr in enumerate((1e-3, 1e-2)) for seed in seeds
            for epoch in (1, 2)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def test_a_named_config_is_scored_on_seeds_no_replay_reads(tmp_path):
    curves = write(tmp_path / "curves.csv", ["adam", "sgd"], range(4), 0.80)
    held_out = write(tmp_path / "held_out.csv", ["adam"], range(4, 12), 0.90)
    table = Table(curves, held_out=held_out)
    adam, sgd = ({"optimizer": o, "lr": 1e-3, "batch_size": 64} for o in ("adam", "sgd"))
    # the replay reads the table's seeds ...
    assert table.curve(adam, 1)[0][-1] == pytest.approx(0.801)
    # ... the truth, Adam's held-out seeds (4 to 11), interpolated in log lr like the curves
    assert table.truth(adam) == pytest.approx(0.9075)
    assert table.truth({**adam, "lr": 10 ** -2.5}) == pytest.approx(0.9125)
    assert table.best("adam") == pytest.approx(0.9175)
    # SGD, which has no held-out seeds, on the table's own (0 to 3)
    assert table.truth(sgd) == pytest.approx(0.8015)
    assert Table(curves, held_out=None).truth(adam) == pytest.approx(0.8015)
