"""Search a named space with Optuna and ASHA on Ray Tune, then write the leaderboard and report.

    python -m tuning.run --space sgd_vs_adam
    python -m tuning.run --list-spaces
    python -m tuning.run --space sgd_vs_adam --resume          # continue the newest sgd_vs_adam run
    python -m tuning.run --space sgd_vs_adam --final           # then train the winner on the test set

Each run is a directory under --storage-path holding Ray's trial directories, the Optuna study
(optuna.journal), run.json, leaderboard.csv and the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from results.cli import UsageError, fail
from results.rundir import BEST_CONFIG_FILE, FINAL_DIR
from search_spaces import SPACES, describe_parameters, get_space
from tuning import record
from tuning.settings import CHANGEABLE, Settings, parse_args, resolve
from tuning.tuner import LOOPBACK_ONLY

PROG = "python -m tuning.run"


def list_spaces() -> None:
    for space in SPACES.values():
        b = space.budget
        print(f"{space.name}: {space.description}")
        print(f"  budget: {b.num_samples} trials, up to {b.max_epochs} epochs, ASHA grace period "
              f"{b.grace_period}, reduction factor {b.reduction_factor}")
        for name, kind in describe_parameters(space).items():
            print(f"  {name:<13} {kind}")


def load_data(s: Settings) -> dict:
    from trainables.data import load_dataset, split_validation

    train, _ = load_dataset(s.dataset, s.data_dir)
    if s.smoke_test:
        train = type(train)(train.images[:2000], train.labels[:2000])
    train, val = split_validation(train, s.val_size)
    return {"train": train, "val": val}


def run(args: argparse.Namespace) -> Path:
    """Resolve the settings, start Ray, load the data, then the phases still to do."""
    space = get_space(args.space)
    if args.resume:
        run_dir = record.resumable_run_dir(args.storage_path or "runs", args.space, args.name)
        run = record.read(run_dir)
        s = resolve(args, space, run)
        run.update(status="running", resumed_at=record.now(), time_budget=s.time_budget)
    else:
        s = resolve(args, space)
        run_dir = record.new_run_dir(s)
    from trainables.data import find_dataset
    from tuning.tuner import start_ray

    find_dataset(s.dataset, s.data_dir)  # a missing dataset is one line, before Ray's output
    s = dataclasses.replace(s, gpus_per_trial=start_ray(s))  # the cluster before the data
    data = load_data(s)
    if args.resume:
        run.update({key: getattr(s, key) for key in CHANGEABLE})  # as this command has them
    else:
        run = record.new_record(s, run_dir)
    record.check_data(run, data)
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write(run_dir, run)
    from tuning.phases import confirm, search

    deadline = None if s.time_budget is None else time.monotonic() + s.time_budget
    if run.get("phase", "search") == "search":
        restore = s.resume and record.restorable(run_dir)
        if s.resume and not restore:
            print(f"{run_dir} stopped before Ray saved its search: starting the search over")
            record.clear_search(run_dir)
        search(s, space, run_dir, run, data, deadline, restore)
    if run.get("phase") == "confirm":
        confirm(s, run_dir, run, data, deadline)
    return run_dir


def report(run_dir: Path) -> dict[str, Path]:
    from results.report import top_rows, write_reports

    paths = write_reports(run_dir)
    print(top_rows(run_dir, 5))
    for label, path in paths.items():
        print(f"  {label:<12} {path}")
    return paths


def final_training(run_dir: Path) -> bool:
    """Train best_config.json on the whole training set, for a finished run only: a half-finished
    search's best is not the answer yet."""
    from tuning.train import default_device, read_config, train

    run = record.read(run_dir)
    if run["status"] != "finished":
        print(f"\nNo final training: the run is {run['status']}; --resume --final finishes it first")
        return False
    config = read_config(run_dir / BEST_CONFIG_FILE)
    print(f"\nFinal training of the best config for {config.epochs} epochs on the whole training set")
    result = train(config, run_dir / FINAL_DIR, run.get("data_dir"), default_device())
    print(f"Final test accuracy {100 * result['test_accuracy']:.2f}%")
    return True


def main(argv: list[str] | None = None) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args = parse_args(PROG, __doc__.splitlines()[0], argv)
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        # a Ray of our own listens on the loopback address only; read when ray is first imported
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    # the snapshots after each epoch's checkpoint cost ~50 ms; Ray's warning about them is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if args.list_spaces:
        list_spaces()
        return
    if not args.space:
        fail(PROG, f"--space is required; known spaces: {', '.join(SPACES)} (see --list-spaces)")
    from results.report import ReportError
    from trainables.config import ConfigError
    from trainables.data import DataError

    try:
        run_dir = run(args)
        report(run_dir)
        if args.final and final_training(run_dir):
            report(run_dir)
    except (UsageError, ConfigError, DataError, ReportError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    main()
