"""A run's settings: the command line and the space's budget resolved once into a frozen object.

A resume takes what it does not get from the command line from run.json, and refuses a flag that
would change the run it continues: its space, task, data, split, budget or search.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.cli import HelpFormatter, UsageError
from search_spaces import Space


@dataclass(frozen=True)
class Settings:
    space: str  # what loads it: a built-in space's name, a module's dotted name or a file's path
    num_samples: int
    max_epochs: int  # ASHA's max_t, the epochs of the longest trial
    grace_period: int
    reduction_factor: int
    seed: int
    task: str  # what loads it: a built-in task's name, a module's dotted name or a file's path
    data_dir: str  # absolute: the trials' working directories are not ours
    val_size: int | None  # None: a sixth of the training split, where the task has no validation split
    smoke_test: bool
    confirm_seeds: int  # seeds at the confirmation's first look
    max_seeds: int  # the most it adds seeds to, while its verdict is open
    margin: float | None  # the equivalence margin in the metric's units (None: the metric's own)
    equal_shares: bool  # every compared value keeps an equal share of the trials
    full_budget: bool  # no stop once the search has settled
    warm_start: str | None  # the run directory whose trials seed TPE
    max_concurrent: int | None
    # of this invocation: a resume may change them
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: 1 where the Ray cluster has GPUs, else 0
    time_budget: float | None
    address: str | None
    storage_path: str
    name: str | None
    resume: bool
    final: bool
    verbose: bool  # Ray Tune's own tables as well as ours
    mlflow: str | None  # the MLflow tracking URI (tuning.tracking.tracking_uri); None: no tracking


def parse_args(prog: str, description: str, argv: list[str] | None = None
               ) -> argparse.Namespace:
    return parser_for(prog, description).parse_args(argv)


def parser_for(prog: str, description: str) -> argparse.ArgumentParser:
    """tuning.run's flags (tuning.check's too). Each defaults to None, its default stated in its
    help and filled in by `resolve`, so that a resume can tell the flags given from those left to
    the run's record. (One flat list of flags: longer than a function should be, and clearer
    whole.)"""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add = p.add_argument
    add("--space", help="search space: a built-in one's name (see --list-spaces), or a file or "
                        "module of your own, which may hold its task too")
    add("--task", help="what is trained: a built-in task's name (fashion_mnist, mnist), or a file "
                       "or module (default: the space's own, else fashion_mnist)")
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
    add("--data-dir", type=Path, help="folder handed to the task's load_data (default: a per-user "
                                      "cache folder; the built-in tasks then try the system's copy)")
    add("--val-size", type=int, help="samples split off the training split for validation, where "
                                     "the task has no validation split (default: a sixth)")
    add("--storage-path", help="folder runs are written to; on a cluster one every node mounts, "
                               "or a bucket's URI (s3://BUCKET/PREFIX) for the trials, the rest "
                               "then going to ./runs (default: runs)")
    add("--name", help="run name (default: SPACE-DATE-TIME; with --resume: the newest run of the "
                       "space)")
    add("--resume", action="store_true", help="continue a run: interrupted, killed, cut by its "
                                              "time budget, or with errored trials to retry")
    add("--address", help="join a Ray cluster at HOST:PORT or 'auto' (default: $RAY_ADDRESS, else "
                          "start Ray on this machine)")
    add("--confirm-seeds", type=int, help="runs per confirmed config at the confirmation's first "
                                          "look, the search's own counting; 0: no confirmation "
                                          "(default: 3)")
    add("--max-seeds", type=int, help="runs per confirmed config the confirmation goes up to "
                                      "while its verdict is open (default: 8)")
    add("--margin", type=float, help="the gap within which two values are even, in the answer's "
                                     "units: points for an accuracy (default: 1 point for an "
                                     "accuracy, else 1%% of the best value)")
    add("--equal-shares", action="store_true", default=None,
        help="every compared value keeps an equal share of the trials, also once it is behind")
    add("--full-budget", action="store_true", default=None,
        help="run every trial of the budget, also once the answer has settled")
    add("--warm-start", type=Path, metavar="RUN_DIR",
        help="start TPE from the trials of an earlier run of the same space")
    add("--final", action="store_true", help="then train the best config on the whole training "
                                             "set and test it")
    add("--mlflow", nargs="?", const="mlflow.db", metavar="URI",  # tuning.tracking.DEFAULT_URI
        help="log each trial and the answer to MLflow: a tracking server (http://HOST:PORT), a "
             "database (sqlite:///PATH) or a .db file; without URI ./mlflow.db, its artifacts in "
             "./mlruns; a resume logs where the run started")
    add("--verbose", action="store_true",
        help="Ray Tune's own output too: its status table, each trial's config and result")
    add("--smoke-test", action="store_true", default=None,
        help="a run of seconds: 4 trials of 2 epochs on 2,000 samples, unless those flags are given")
    return p


# what a resume continues as recorded, refusing a flag that differs; what it takes as recorded
# unless given (the data's folder may move: the data's hash in run.json says whether they are the
# same); the rest belongs to one command (time budget, address)
RECORDED = ("num_samples", "max_epochs", "grace_period", "reduction_factor", "seed", "val_size",
            "smoke_test", "confirm_seeds", "max_seeds", "margin", "equal_shares", "full_budget",
            "warm_start", "max_concurrent")
CHANGEABLE = ("cpus_per_trial", "gpus_per_trial", "data_dir")
DEFAULTS = {"seed": 0, "smoke_test": False, "confirm_seeds": 3, "max_seeds": 8,
            "equal_shares": False, "full_budget": False, "cpus_per_trial": 1.0}
SMOKE_TEST = {"num_samples": 4, "max_epochs": 2, "grace_period": 1,
              "max_seeds": 3}  # on 2,000 samples
SMOKE_SAMPLES = 2_000


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _new(args: argparse.Namespace, space: Space) -> dict[str, Any]:
    """A new run's settings: the flags given, else the space's budget and the defaults."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    smoke = SMOKE_TEST if given.get("smoke_test") else {}
    values = {**DEFAULTS, **dataclasses.asdict(space.budget), **smoke, **given}  # a flag given wins
    if "grace_period" not in given:
        values["grace_period"] = min(values["grace_period"], values["max_epochs"])
    if "max_seeds" not in given:
        values["max_seeds"] = max(values["max_seeds"], values["confirm_seeds"])
    return values


def _resumed(args: argparse.Namespace, record: dict[str, Any], space: Space) -> dict[str, Any]:
    """A resumed run's settings: as recorded, a flag given only where it changes nothing."""
    values = {**DEFAULTS, **{k: record[k] for k in (*RECORDED, *CHANGEABLE) if k in record}}
    values["task"] = record["task"]["ref"]
    for key, value in vars(args).items():
        if value is None or key not in values:
            continue
        if key == "task":
            value = task_ref(args, space)
        if key in (*RECORDED, "task") and value != values[key]:
            change = (f"{_flag(key)} differs from the run, started without it" if value is True
                      else f"{_flag(key)} {value} differs from the run's "
                      f"{'default' if values[key] is None else values[key]}")
            raise UsageError(f"{change}; a resume continues the run as it was started "
                             "(start another with a new --name)")
        values[key] = value
    return values


def task_ref(args: argparse.Namespace, space: Space) -> str:
    """The task a run trains: --task, else the space's own, else the default; a file's absolute
    path, so that the trials and a resume find it wherever they run."""
    from trainables.task import DEFAULT_TASK, is_file_ref

    if args.task and space.task and space.task == space.ref:
        raise UsageError(f"--task {args.task}: the space {space.name} brings its own task "
                         f"({space.path}); give one or the other")
    if args.task:
        ref, folder = args.task, Path.cwd()
    else:  # a file the space's TASK names lies beside the space
        ref, folder = space.task or DEFAULT_TASK, Path(space.path or ".").parent
    return str((folder / Path(ref).expanduser()).resolve()) if is_file_ref(ref) else ref


def resolve(args: argparse.Namespace, space: Space, record: dict[str, Any] | None = None
            ) -> Settings:
    """The run's settings, checked; `record` is run.json of the run a resume continues."""
    from trainables.data import default_data_dir

    args = argparse.Namespace(**vars(args))
    for key in ("data_dir", "warm_start"):  # the trials' working directories are not ours
        if getattr(args, key) is not None:
            setattr(args, key, str(Path(getattr(args, key)).expanduser().resolve()))
    if record is None:
        args.task = task_ref(args, space)
    values = _resumed(args, record, space) if record is not None else _new(args, space)
    values["data_dir"] = values.get("data_dir") or str(default_data_dir())
    values.update(space=space.ref or space.name, storage_path=str(args.storage_path or "runs"),
                  name=args.name, resume=bool(args.resume), final=bool(args.final),
                  address=args.address or os.environ.get("RAY_ADDRESS"),
                  time_budget=args.time_budget, verbose=bool(args.verbose),
                  mlflow=mlflow_uri(args.mlflow))
    settings = Settings(**{f.name: values.get(f.name) for f in dataclasses.fields(Settings)})
    check(settings, space)
    return settings


def mlflow_uri(value: str | None) -> str | None:
    """--mlflow as the URI MLflow is given (tuning.tracking.tracking_uri, which imports Ray: only
    where it is given)."""
    if not value:
        return None
    from tuning.tracking import tracking_uri

    return tracking_uri(value)


def check_name(name: str | None) -> None:
    """A run's name is one folder's name in --storage-path, not a path: no separator, no ..."""
    if name is not None and (not name or name == "." or ".." in name
                             or any(sep in name for sep in "/\\")):
        raise UsageError(f"--name {name!r} is not a name: a run is a folder of --storage-path, "
                         "named without / or ..")


def check_address(address: str) -> None:
    """Fail fast, in one line, on an address nothing listens on (ray.init would retry for minutes)."""
    if address in ("auto", "local"):
        return
    if address.startswith("ray://"):
        raise UsageError(f"--address {address}: Ray Client addresses are not supported; "
                         "give the head node's HOST:PORT (GCS port, 6379 by default)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r} is not HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


def check(s: Settings, space: Space) -> None:
    """Every mistake a user can make in the flags, as one line, before anything starts."""
    checks = [
        (s.num_samples > 0, f"--num-samples must be at least 1, got {s.num_samples}"),
        (s.max_epochs > 0, f"--max-epochs must be at least 1, got {s.max_epochs}"),
        (s.grace_period > 0, f"--grace-period must be at least 1, got {s.grace_period}"),
        (s.grace_period <= s.max_epochs,
         f"--grace-period {s.grace_period} is above --max-epochs {s.max_epochs}"),
        (s.reduction_factor >= 2, f"--reduction-factor must be 2 or more, got {s.reduction_factor}"),
        (s.cpus_per_trial > 0, f"--cpus-per-trial must be above 0, got {s.cpus_per_trial}"),
        (s.gpus_per_trial is None or s.gpus_per_trial >= 0,
         f"--gpus-per-trial must be 0 or more, got {s.gpus_per_trial}"),
        (s.max_concurrent is None or s.max_concurrent > 0,
         f"--max-concurrent must be at least 1, got {s.max_concurrent}"),
        (s.time_budget is None or s.time_budget > 0,
         f"--time-budget must be above 0 seconds, got {s.time_budget}"),
        (s.val_size is None or s.val_size > 0, f"--val-size must be at least 1, got {s.val_size}"),
        (s.confirm_seeds >= 0, f"--confirm-seeds must be 0 or more, got {s.confirm_seeds}"),
        (s.confirm_seeds != 1, "--confirm-seeds must be 0 (no confirmation) or 2 or more: one "
                               "run shows no seed noise"),
        (s.max_seeds >= s.confirm_seeds, f"--max-seeds {s.max_seeds} is below --confirm-seeds "
                                         f"{s.confirm_seeds}"),
        (s.margin is None or s.margin > 0, f"--margin must be above 0, got {s.margin}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    check_name(s.name)
    if s.address:
        check_address(s.address)
    elif s.cpus_per_trial > (os.cpu_count() or 1):  # a Ray of our own
        raise UsageError(f"--cpus-per-trial {s.cpus_per_trial:g} is more than this machine has "
                         f"({os.cpu_count()} CPUs)")
    if s.gpus_per_trial and not s.address:
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-trial {s.gpus_per_trial:g} asked for, but this machine "
                             "has no CUDA device; pass --gpus-per-trial 0")

