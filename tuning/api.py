"""tuning.tune(): what `python -m tuning.run` runs, from Python (a notebook, a script)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd


@dataclasses.dataclass
class Tuned:
    """What tuning.tune() returns: the run directory, its leaderboard, the answer to its question
    (the first paragraph of summary.md) and the config with the best confirmed score."""

    run_dir: Path
    leaderboard: pd.DataFrame
    answer: str
    best_config: dict | None
    status: str


def tune(space: str, *, task: str | None = None, data_dir: str | Path | None = None,
         final: bool = False, **flags: Any) -> Tuned:
    """Search `space` (a built-in space's name, or a file or module of your own) for `task`,
    confirm, write the reports (and with final=True train the winner), and return the leaderboard
    and the answer.

        result = tuning.tune("examples/diabetes_regression.py", num_samples=8, max_epochs=20)
        result.leaderboard.head(); print(result.answer)

    `flags` are tuning.run's other flags by their Python names (num_samples, max_epochs,
    grace_period, reduction_factor, cpus_per_trial, gpus_per_trial, max_concurrent, time_budget,
    seed, val_size, storage_path, name, resume, address, confirm_seeds, max_seeds, margin,
    equal_shares, full_budget, warm_start, smoke_test, verbose, mlflow). A mistake raises an exception
    whose message is one line (UsageError, TaskError, ...). Ray, where this process has started it
    already, is used as it is.
    """
    from trainables.rundir import (BEST_CONFIG_FILE, LEADERBOARD_FILE, RUN_FILE, read_answer,
                                   read_json)
    from tuning.cluster import quiet
    from tuning.run import build_parser, conclude, run

    args = build_parser().parse_args([])
    unknown = sorted(set(flags) - set(vars(args)) - {"list_spaces"})
    if unknown:
        raise TypeError(f"tune() got an unknown flag {unknown[0]!r}; its flags are tuning.run's: "
                        f"{', '.join(k for k in vars(args) if k != 'list_spaces')}")
    vars(args).update(flags, space=str(space), task=str(task) if task else None,
                      data_dir=data_dir, final=final)
    quiet(args.address, bool(args.verbose))
    run_dir = run(args)
    conclude(run_dir, final, data_dir)
    board, best = run_dir / LEADERBOARD_FILE, run_dir / BEST_CONFIG_FILE
    return Tuned(run_dir, pd.read_csv(board) if board.is_file() else pd.DataFrame(),
                 read_answer(run_dir) or "", read_json(best) if best.is_file() else None,
                 read_json(run_dir / RUN_FILE)["status"])
