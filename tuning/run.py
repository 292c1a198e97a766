"""Search a space with Optuna and ASHA on Ray Tune, then write the leaderboard and report.

    python -m tuning.run --space sgd_vs_adam
    python -m tuning.run --list-spaces
    python -m tuning.run --space sgd_vs_adam --resume          # continue the newest sgd_vs_adam run
    python -m tuning.run --space sgd_vs_adam --final           # then train the winner on the test set
    python -m tuning.run --space my_task.py                    # your own model and data

Each run is a directory under --storage-path holding Ray's trial directories, the Optuna study
(optuna.journal), run.json, leaderboard.csv and the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from trainables.cli import UsageError, fail
from trainables.rundir import (BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE, REPORT_FILE,
                            RUN_FILE, STUDY_FILE)
from search_spaces import SPACES, Space, describe_parameters, get_space
from tuning import record
from tuning.settings import CHANGEABLE, SMOKE_SAMPLES, Settings, parse_args, resolve
from tuning.cluster import quiet

if TYPE_CHECKING:
    from trainables.task import Task
    from trainables.trainable import TrialData
    from tuning.check import Checked
    from tuning.storage import Trials

PROG = "python -m tuning.run"


def list_spaces() -> None:
    for space in SPACES.values():
        b = space.budget
        print(f"{space.name}: {space.description}")
        print(f"  budget: {b.num_samples} trials, up to {b.max_epochs} epochs, ASHA grace period "
              f"{b.grace_period}, reduction factor {b.reduction_factor}")
        parameters = describe_parameters(space)
        width = max(map(len, parameters), default=0)
        for name, kind in parameters.items():
            print(f"  {name:<{width}} {kind}")


def open_run(args: argparse.Namespace) -> tuple[Space, Settings, Path, dict | None, Task]:
    """The space, the settings, the run directory, its record (a resume's, None for a new run)
    and the task; a resume whose task or space file changed is refused."""
    from trainables.task import load_task

    space = get_space(args.space)
    if not args.resume:
        s = resolve(args, space)
        return space, s, record.new_run_dir(s, space), None, load_task(s.task)
    run_dir = record.resumable_run_dir(args.storage_path or "runs", space, args.name)
    run = record.read(run_dir)
    s = resolve(args, space, run)
    task = load_task(s.task)
    record.check_sources(run_dir, space, task)
    if not nothing_to_resume(run_dir, run):
        run.update(status="running", resumed_at=record.now(), time_budget=s.time_budget)
    return space, s, run_dir, run, task


def nothing_to_resume(run_dir: Path, run: dict) -> bool:
    """A finished run none of whose trials or confirmation runs errored: a resume would neither
    train on nor retry anything."""
    from results.confirmation import confirmation_runs
    from tuning.search import ended_trials

    if run["status"] != "finished":
        return False
    _, _, errored = ended_trials(run_dir, run["study_name"])
    return not errored and all(r["status"] != "errored" for r in confirmation_runs(run_dir))


def run(args: argparse.Namespace) -> Path:
    """Resolve the settings, check the task on one batch, start Ray, then the phases still to do."""
    from trainables.data import fingerprint, is_pair
    from trainables.trainable import TrialData
    from tuning import storage
    from tuning.check import dry_run, summary
    from tuning.cluster import start_ray

    space, s, run_dir, run, task = open_run(args)
    if run is not None and run["status"] == "finished":  # and nothing errored (open_run)
        print(f"{run_dir} is finished: nothing to resume")
        return run_dir
    # the bucket of this command's --storage-path, else the one the run started with
    uri = s.storage_path if storage.is_uri(s.storage_path) else (run or {}).get("trials")
    trials = storage.at(run_dir, uri)  # a bucket that cannot be written to: one line, now
    checked = dry_run(space, task, s)  # a task's defect is one line, before Ray's output
    if s.warm_start and run is None:
        from tuning.warm import check_warm_start

        check_warm_start(s.warm_start, space.ref or space.name, f"val_{checked.task.metric.name}",
                         checked.task.metric.mode)
    print(summary(checked, s))
    if task.baseline and checked.baseline is None:
        print(f"No trial 0 of the task's baseline settings: {checked.baseline_note}")
    s = dataclasses.replace(s, gpus_per_trial=start_ray(s))
    if run is None:
        run = record.new_record(s, run_dir, space, checked.task)
        record.keep_sources(run_dir, space, checked.task)
    else:
        run.update({key: getattr(s, key) for key in CHANGEABLE})  # as this command has them
        run["trials"] = uri
    record.check_data(run, fingerprint(checked.parts))
    record.write(run_dir, run)
    data = TrialData({name: part if is_pair(part) else None for name, part in checked.parts.items()},
                     s.data_dir, s.val_size, SMOKE_SAMPLES if s.smoke_test else None)
    phases(s, space, run_dir, trials, run, checked, data)
    return run_dir


def phases(s: Settings, space: Space, run_dir: Path, trials: Trials, run: dict,
           checked: Checked, data: TrialData) -> None:
    """The search, then the confirmation, each where the run has not done it yet."""
    from tuning.confirm import confirm
    from tuning.search import search
    from tuning.storage import restorable

    deadline = None if s.time_budget is None else time.monotonic() + s.time_budget
    if run.get("phase", "search") == "search":
        restore = s.resume and restorable(trials)
        if s.resume and not restore:
            print(f"{run_dir} stopped before Ray saved its search: starting the search over")
            record.clear_search(run_dir, trials)
        search(s, space, run_dir, trials, run, checked, data, deadline, restore)
    if run.get("phase") == "confirm":
        confirm(s, run_dir, trials, run, checked, data, deadline)


def report(run_dir: Path) -> dict[str, Path]:
    """Write the reports and print the top trials; a run cut before any trial finished an epoch
    (a short time budget, Ctrl-C) has nothing to report yet, which is no error."""
    from results.report import ReportError, top_rows, write_reports, wrote

    if reports_current(run_dir):
        print(top_rows(run_dir, 5))
        print(f"  report       {run_dir / REPORT_FILE} (current)")
        return {}
    try:
        paths = write_reports(run_dir)
    except ReportError as err:
        if record.read(run_dir).get("status") == "finished":
            raise
        print(f"No report yet: {err}")
        return {}
    print(f"\n{top_rows(run_dir, 5)}")
    print("\n".join(wrote(run_dir, paths)))
    return paths


def reports_current(run_dir: Path) -> bool:
    """The reports were written after what they read last changed: run.json (written as each phase
    ends), the study and the final training's metrics. Only a resume of a finished run finds them
    so; results.report writes them again at any time."""
    written = run_dir / REPORT_FILE  # the last one build_reports writes
    read = [run_dir / RUN_FILE, run_dir / STUDY_FILE, run_dir / FINAL_DIR / FINAL_METRICS_FILE]
    return written.is_file() and all(written.stat().st_mtime >= path.stat().st_mtime
                                     for path in read if path.is_file())


def final_training(run_dir: Path) -> bool:
    """Train best_config.json on the whole training set, for a finished run only: a half-finished
    search's best is not the answer yet."""
    from tuning.train import default_device, final_words, read_config, train

    run = record.read(run_dir)
    if run["status"] != "finished":
        print(f"\nNo final training: the run is {run['status']}; --resume --final finishes it first")
        return False
    config, task = read_config(run_dir / BEST_CONFIG_FILE)
    print(f"\nFinal training of the best config for {config.epochs} epochs on the whole training set")
    result = train(config, task, run_dir / FINAL_DIR, run.get("data_dir"), default_device())
    print(f"Final: {final_words(result)}")
    return True


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
    """Run what `python -m tuning.run` runs, from Python (a notebook, a script): search `space`
    (a built-in space's name, or a file or module of your own) for `task`, confirm, write the
    reports (and with final=True train the winner), and return the leaderboard and the answer.

        result = tuning.tune("examples/diabetes_regression.py", num_samples=8, max_epochs=20)
        result.leaderboard.head(); print(result.answer)

    `flags` are tuning.run's other flags by their Python names (num_samples, max_epochs,
    grace_period, reduction_factor, cpus_per_trial, gpus_per_trial, max_concurrent, time_budget,
    seed, val_size, storage_path, name, resume, address, confirm_seeds, max_seeds, margin,
    equal_shares, full_budget, warm_start, smoke_test). A mistake
    raises an exception whose message is one line (UsageError, TaskError, ...). Ray, where this
    process has started it already, is used as it is.
    """
    import json

    from trainables.rundir import LEADERBOARD_FILE, RUN_FILE, SUMMARY_FILE

    args = parse_args(PROG, "", [])
    unknown = sorted(set(flags) - set(vars(args)) - {"list_spaces"})
    if unknown:
        raise TypeError(f"tune() got an unknown flag {unknown[0]!r}; its flags are tuning.run's: "
                        f"{', '.join(k for k in vars(args) if k != 'list_spaces')}")
    vars(args).update(flags, space=str(space), task=str(task) if task else None,
                      data_dir=data_dir, final=final)
    quiet(args.address, bool(args.verbose))
    run_dir = run(args)
    report(run_dir)
    if final and final_training(run_dir):
        report(run_dir)
    board, summary, best = (run_dir / name for name in (LEADERBOARD_FILE, SUMMARY_FILE,
                                                          BEST_CONFIG_FILE))
    return Tuned(run_dir, pd.read_csv(board) if board.is_file() else pd.DataFrame(),
                 summary.read_text().split("\n\n")[0] if summary.is_file() else "",
                 json.loads(best.read_text()) if best.is_file() else None,
                 json.loads((run_dir / RUN_FILE).read_text())["status"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(PROG, __doc__.splitlines()[0], argv)
    quiet(args.address, args.verbose)
    if args.list_spaces:
        list_spaces()
        return
    if not args.space:
        fail(PROG, f"--space is required; known spaces: {', '.join(SPACES)} (see --list-spaces)")
    from results.report import ReportError
    from trainables.config import ConfigError
    from trainables.data import DataError
    from trainables.task import TaskError

    try:
        run_dir = run(args)
        report(run_dir)
        if args.final and final_training(run_dir):
            report(run_dir)
    except (UsageError, ConfigError, DataError, TaskError, ReportError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    main()
