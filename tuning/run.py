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

from results.cli import HelpFormatter, UsageError, fail
from results.rundir import BEST_CONFIG_FILE, FINAL_DIR
from search_spaces import SPACES, describe_parameters, get_space
from trainables.data import DATASETS
from tuning import record
from tuning.settings import Settings, resolve
from tuning.tuner import LOOPBACK_ONLY

PROG = "python -m tuning.run"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Every flag defaults to None: a resume tells the flags given from the run's record."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    add = p.add_argument
    add("--space", help="search space to run (see --list-spaces)")
    add("--list-spaces", action="store_true", help="list the spaces and their parameters")
    add("--num-samples", type=int, help="trials to run (default: the space's budget)")
    add("--max-epochs", type=int, help="epochs of the longest trial, ASHA's max_t (default: the "
                                       "space's budget)")
    add("--grace-period", type=int, help="epochs before ASHA may stop a trial (default: the "
                                         "space's budget)")
    add("--reduction-factor", type=int, help="ASHA keeps 1 in this many trials at each rung "
                                             "(default: the space's budget)")
    add("--cpus-per-trial", type=float, help="CPUs per trial, its torch threads (default: 1)")
    add("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (default: 1 where "
                                             "the Ray cluster has GPUs, else 0)")
    add("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    add("--time-budget", type=float, help="seconds this command may run trials; --resume goes on "
                                          "(default: no limit)")
    add("--seed", type=int, help="seed of the TPE sampler (default: 0)")
    add("--dataset", choices=list(DATASETS), help="dataset (default: fashion_mnist)")
    add("--model", help="model, where the space leaves it open (default: the space's, else mlp)")
    add("--data-dir", type=Path, help="folder with the dataset's IDX files (default: a per-user "
                                      "cache folder, then the system's copy)")
    add("--val-size", type=int, help="images split off the training set for validation "
                                     "(default: 10000)")
    add("--storage-path", help="folder runs are written to; on a cluster one every node mounts "
                               "(default: runs)")
    add("--name", help="run name (default: SPACE-DATE-TIME; with --resume: the newest run of the "
                       "space)")
    add("--resume", action="store_true", help="continue a run: interrupted, killed, cut by its "
                                              "time budget, or with errored trials to retry")
    add("--address", help="join a Ray cluster at HOST:PORT or 'auto' (default: $RAY_ADDRESS, else "
                          "start Ray on this machine)")
    add("--confirm-seeds", type=int, help="runs per confirmed config after the search, the "
                                          "search's own counting; 0: none (default: 3)")
    add("--final", action="store_true", help="then train the best config on the whole training "
                                             "set and test it")
    add("--smoke-test", action="store_true", default=None,
        help="a run of seconds: 4 trials of 2 epochs on 2,000 images")
    return p.parse_args(argv)


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
    if not args.resume:
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
    args = parse_args(argv)
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
