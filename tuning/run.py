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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import SPACES, Space, describe_parameters, get_space
from trainables.cli import UsageError, fail
from trainables.rundir import Phase, Status
from tuning import record
from tuning.cluster import quiet
from tuning.settings import SMOKE_SAMPLES, Settings, parser_for, resolve

if TYPE_CHECKING:
    from tuning.dry_run import Checked

PROG = "python -m tuning.run"


def build_parser() -> argparse.ArgumentParser:
    return parser_for(PROG, __doc__.splitlines()[0])


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


def open_run(args: argparse.Namespace) -> tuple[Space, Settings, Path, dict[str, Any] | None]:
    """The space, the settings, the run directory and, for a resume, its run.json."""
    space = get_space(args.space)
    if not args.resume:
        s = resolve(args, space)
        return space, s, record.new_run_dir(s, space), None
    run_dir = record.resumable_run_dir(args.storage_path or "runs", space, args.name)
    recorded = record.read(run_dir)
    return space, resolve(args, space, recorded), run_dir, recorded


def nothing_to_resume(run_dir: Path, recorded: dict[str, Any]) -> bool:
    """A finished run none of whose trials or confirmation runs errored: a resume would neither
    train on nor retry anything."""
    from results.confirmation import confirmation_runs
    from tuning.search import ended_trials

    if recorded["status"] != Status.FINISHED:
        return False
    _, _, errored = ended_trials(run_dir, recorded["study_name"])
    return not errored and all(r["status"] != "errored" for r in confirmation_runs(run_dir))


def run(args: argparse.Namespace) -> Path:
    """Resolve the settings, check the task on one batch, start Ray, then the phases still to do;
    a resume whose task or space file changed is refused."""
    from trainables.data import fingerprint, is_pair
    from trainables.task import load_task
    from trainables.trainable import TrialData
    from tuning import storage, tracking
    from tuning.dry_run import dry_run, summary
    from tuning.cluster import start_ray

    space, s, run_dir, recorded = open_run(args)
    task = load_task(s.task)
    if recorded is not None:
        record.check_sources(run_dir, space, task)
        if nothing_to_resume(run_dir, recorded):
            print(f"{run_dir} is finished: nothing to resume")
            return run_dir
    # the bucket of this command's --storage-path, else the one the run started with
    uri = s.storage_path if storage.is_uri(s.storage_path) else (recorded or {}).get("trials")
    trials = storage.at(run_dir, uri)  # a bucket that cannot be written to: one line, now
    checked = dry_run(space, task, s)  # a task's defect is one line, before Ray's output
    if s.warm_start and recorded is None:
        from tuning.warm import check_warm_start

        check_warm_start(s.warm_start, space.ref or space.name, f"val_{checked.task.metric.name}",
                         checked.task.metric.mode)
    print(summary(checked, s))
    if task.baseline and checked.baseline is None:
        print(f"No trial 0 of the task's baseline settings: {checked.baseline_note}")
    s = dataclasses.replace(s, gpus_per_trial=start_ray(s))
    if recorded is None:
        current = record.new_run(s, run_dir, space, checked.task, trials)
        record.keep_sources(run_dir, space, checked.task)
    else:
        current = record.load(run_dir, s, trials)
        current.status, current.record["resumed_at"] = Status.RUNNING, record.now()
    record.check_data(current.record, fingerprint(checked.parts))
    current.save()
    tracking.start(s.mlflow, run_dir, s.resume)
    data = TrialData({name: part if is_pair(part) else None for name, part in checked.parts.items()},
                     s.data_dir, s.val_size, SMOKE_SAMPLES if s.smoke_test else None)
    phases(current, checked, data)
    return run_dir


def phases(run: record.Run, checked: Checked, data: Any) -> None:
    """The search, then the confirmation, each where the run has not done it yet."""
    from tuning.confirm import confirm
    from tuning.search import search
    from tuning.storage import restorable

    s = run.settings
    deadline = None if s.time_budget is None else time.monotonic() + s.time_budget
    if run.phase == Phase.SEARCH:
        restore = s.resume and restorable(run.trials)
        if s.resume and not restore:
            print(f"{run.dir} stopped before Ray saved its search: starting the search over")
            record.clear_search(run.dir, run.trials)
        search(run, checked, data, deadline, restore)
    if run.phase == Phase.CONFIRM:
        confirm(run, checked, data, deadline)


def conclude(run_dir: Path, final: bool, data_dir: str | Path | None) -> None:
    """What follows a run's phases: its reports, and with `final` the winner trained (the reports
    printed once, after it); then the run's MLflow parent run ended (where it logs to MLflow)."""
    from results.report import report_run
    from tuning import tracking
    from tuning.train import final_training

    report_run(run_dir, show=not final)
    if final:
        final_training(run_dir, data_dir)
        report_run(run_dir)
    tracking.finish(run_dir)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
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
        conclude(run(args), args.final, args.data_dir)
    except (UsageError, ConfigError, DataError, TaskError, ReportError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    main()
