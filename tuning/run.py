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
import datetime
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from search_spaces import (SPACES, Space, baseline_params, compare_choices, describe_parameters,
                           fixed_settings, get_space)
from results.files import write_json
from tuning.cli import UsageError, fail

PROG = "python -m tuning.run"
METRIC, MODE = "val_accuracy", "max"
RUN_FILE = "run.json"
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds 127.0.0.1, as on a laptop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", help="search space to run (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="list the spaces and their parameters")
    p.add_argument("--num-samples", type=int, help="trials to run (default: the space's budget)")
    p.add_argument("--max-epochs", type=int, help="epochs of the longest trial, ASHA's max_t "
                                                  "(default: the space's budget)")
    p.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial "
                                                    "(default: the space's budget)")
    p.add_argument("--reduction-factor", type=int, help="ASHA keeps 1 in this many trials at each "
                                                        "rung (default: the space's budget)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (torch threads)")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractions allowed (default: 1 when CUDA is available, else 0)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    p.add_argument("--time-budget", type=float, help="stop the search after this many seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"],
                   help="dataset")
    p.add_argument("--model", default=None, help="model, where the space leaves it open "
                                                 "(default: the space's, else mlp)")
    p.add_argument("--data-dir", type=Path, help="folder with the dataset's IDX files "
                                                 "(default: a per-user cache folder)")
    p.add_argument("--val-size", type=int, default=10_000,
                   help="images split off the training set for validation")
    p.add_argument("--storage-path", default="runs",
                   help="folder runs are written to; on a cluster one every node mounts")
    p.add_argument("--name", help="run name (default: SPACE-DATE-TIME; with --resume: the newest run "
                                  "of the space)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--address", default=None,
                   help="join an existing Ray cluster at HOST:PORT or 'auto' (default: $RAY_ADDRESS, "
                        "else start Ray on this machine)")
    p.add_argument("--confirm-seeds", type=int, default=3,
                   help="runs per confirmed config, the search's own counting, after the search "
                        "(0: no confirmation)")
    p.add_argument("--final", action="store_true",
                   help="then train the best config on the whole training set and test it")
    p.add_argument("--smoke-test", action="store_true",
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


def newest_run(storage: Path, space: str) -> Path:
    runs = sorted(storage.glob(f"{space}-*/{RUN_FILE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UsageError(f"no run of space {space!r} to resume under {storage}; pass --name")
    return runs[-1].parent


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


def validate(args: argparse.Namespace, space: Space) -> None:
    """Turn every mistake a user can make into one line before anything starts."""
    b = space.budget
    args.num_samples = args.num_samples if args.num_samples is not None else b.num_samples
    args.max_epochs = args.max_epochs if args.max_epochs is not None else b.max_epochs
    args.grace_period = args.grace_period if args.grace_period is not None else min(
        b.grace_period, args.max_epochs)
    if args.reduction_factor is None:
        args.reduction_factor = b.reduction_factor
    if args.smoke_test:
        args.num_samples, args.max_epochs, args.grace_period = 4, 2, 1
    checks = [
        (args.num_samples > 0, f"--num-samples must be at least 1, got {args.num_samples}"),
        (args.max_epochs > 0, f"--max-epochs must be at least 1, got {args.max_epochs}"),
        (args.grace_period > 0, f"--grace-period must be at least 1, got {args.grace_period}"),
        (args.grace_period <= args.max_epochs,
         f"--grace-period {args.grace_period} is above --max-epochs {args.max_epochs}"),
        (args.reduction_factor >= 2, f"--reduction-factor must be 2 or more, got {args.reduction_factor}"),
        (args.cpus_per_trial > 0, f"--cpus-per-trial must be above 0, got {args.cpus_per_trial}"),
        (args.gpus_per_trial is None or args.gpus_per_trial >= 0,
         f"--gpus-per-trial must be 0 or more, got {args.gpus_per_trial}"),
        (args.max_concurrent is None or args.max_concurrent > 0,
         f"--max-concurrent must be at least 1, got {args.max_concurrent}"),
        (args.time_budget is None or args.time_budget > 0,
         f"--time-budget must be above 0 seconds, got {args.time_budget}"),
        (args.val_size > 0, f"--val-size must be at least 1, got {args.val_size}"),
        (args.confirm_seeds >= 0, f"--confirm-seeds must be 0 or more, got {args.confirm_seeds}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if "://" in str(args.storage_path):
        raise UsageError(f"--storage-path {args.storage_path}: URIs are not supported; give a "
                         "folder (on a cluster, one that every node mounts at the same path)")
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_address(address)
    elif args.cpus_per_trial > (os.cpu_count() or 1):  # a Ray of our own has this machine's CPUs
        raise UsageError(f"--cpus-per-trial {args.cpus_per_trial:g} is more than this machine has "
                         f"({os.cpu_count()} CPUs)")
    if args.gpus_per_trial and not address:
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g} asked for, but this machine "
                             "has no CUDA device; pass --gpus-per-trial 0")
    fixed_model = fixed_settings(space, args.max_epochs).get("model")
    if args.model is not None:
        from trainables.models import MODELS

        if args.model not in MODELS:
            raise UsageError(f"--model {args.model!r} is not one of: {', '.join(MODELS)}")
        if fixed_model is not None and fixed_model != args.model:
            raise UsageError(f"space {space.name!r} trains model {fixed_model!r}; "
                             f"--model {args.model} applies to spaces that leave it open")
    args.model = args.model or fixed_model  # None: the space leaves it open and none was given


def resolve_run_dir(args: argparse.Namespace) -> Path:
    """The run directory, absolute: trials run in directories of their own."""
    storage = Path(args.storage_path).expanduser().resolve()
    if not args.resume:
        name = args.name or f"{args.space}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        run_dir = storage / name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UsageError(f"{run_dir} already holds a run; pass --resume to continue it, "
                             "or another --name")
        return run_dir
    run_dir = storage / args.name if args.name else newest_run(storage, args.space)
    from ray.tune import Tuner

    # tuner.pkl is written when the Tuner is built, the experiment state only once trials started
    restorable = Tuner.can_restore(str(run_dir)) and any(run_dir.glob("experiment_state-*.json"))
    if not (run_dir / RUN_FILE).is_file() or not restorable:
        raise UsageError(f"{run_dir} is not a tuning run that can be resumed")
    recorded = json.loads((run_dir / RUN_FILE).read_text())
    if recorded["space"] != args.space:
        raise UsageError(f"{run_dir} is a run of space {recorded['space']!r}, not {args.space!r}")
    return run_dir


def run_record(args: argparse.Namespace, space: Space, run_dir: Path) -> dict:
    from trainables.config import TrainConfig
    from tuning.search import STUDY_FILE

    return {
        "name": run_dir.name, "space": space.name, "description": space.description,
        "question": space.question, "compare": space.compare, "metric": METRIC, "mode": MODE,
        "dataset": args.dataset, "model": args.model or TrainConfig.model,
        "max_epochs": args.max_epochs, "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor, "num_samples": args.num_samples,
        "seed": args.seed, "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial, "max_concurrent": args.max_concurrent,
        "time_budget": args.time_budget, "confirm_seeds": args.confirm_seeds,
        "val_size": args.val_size, "study_name": run_dir.name, "storage": STUDY_FILE,
        "status": "running", "phase": "search", "started_at": _now(), "finished_at": None,
    }


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def start_ray(args: argparse.Namespace) -> None:
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except Exception as err:  # ray raises ConnectionError, RuntimeError, ValueError here
            raise UsageError(f"cannot join the Ray cluster at {address}: "
                             f"{str(err).strip().splitlines()[0]}") from None
    else:
        # "local": always a fresh instance, never a cluster some other process left running
        ray.init(address="local", include_dashboard=False)
    gpus_available = ray.cluster_resources().get("GPU", 0)
    if args.gpus_per_trial is None:
        args.gpus_per_trial = 1.0 if gpus_available else 0.0
    if args.gpus_per_trial > 0 and not gpus_available:
        ray.shutdown()
        raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g} asked for, but the Ray cluster "
                         "has no GPUs; pass --gpus-per-trial 0")
    # a trial no node can hold would wait for ever on Ray's insufficient-resources warning
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for flag, key, want in (("--cpus-per-trial", "CPU", args.cpus_per_trial),
                            ("--gpus-per-trial", "GPU", args.gpus_per_trial)):
        most = max((n.get(key, 0) for n in nodes), default=0)
        if want > most:
            ray.shutdown()
            raise UsageError(f"{flag} {want:g} is more than any node of the Ray cluster has "
                             f"({most:g} {key}s)")


def make_trainable(args: argparse.Namespace, data: dict):
    from ray import tune

    from trainables.trainable import train_trial

    return tune.with_resources(tune.with_parameters(train_trial, data=data),
                               {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})


def build_tuner(args: argparse.Namespace, space: Space, run_dir: Path, settings: dict, data: dict):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tuning.progress import Progress, asha_epochs
    from tuning.race import RaceScheduler
    from tuning.search import StudySearch

    trainable = make_trainable(args, data)
    if args.resume:
        return tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    choices = compare_choices(space, args.max_epochs)
    study = StudySearch(args.space, args.max_epochs, settings, run_dir, METRIC, MODE, args.seed,
                        study_name=run_dir.name, compare=space.compare if choices else None,
                        choices=choices,
                        baseline=baseline_params(space, args.max_epochs, settings.get("model")))
    searcher = ConcurrencyLimiter(study, max_concurrent=args.max_concurrent) \
        if args.max_concurrent else study
    # each compared value races in its own ASHA rungs; the study hears every ASHA stop
    scheduler = RaceScheduler(space.compare if choices else None, METRIC, MODE, args.max_epochs,
                              args.grace_period, args.reduction_factor, on_stop=study.record_stop)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=args.num_samples, time_budget_s=args.time_budget,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=run_dir.name, storage_path=str(run_dir.parent),
            # a trial resumes from its last checkpoint; keeping 2 halves the experiment snapshots
            # Ray forces whenever a checkpoint it may delete is still referenced
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=1),  # e.g. a lost node: retry once
            callbacks=[Progress("search", args.num_samples, METRIC, asha_epochs(
                args.max_epochs, args.grace_period, args.reduction_factor))],
            verbose=1,
        ),
    )


def load_data(args: argparse.Namespace) -> dict:
    from trainables.data import load_dataset, split_validation

    train, _ = load_dataset(args.dataset, args.data_dir)
    if args.smoke_test:
        train = type(train)(train.images[:2000], train.labels[:2000])
        args.val_size = min(args.val_size, 500)
    train, val = split_validation(train, args.val_size)
    return {"train": train, "val": val}


def run(args: argparse.Namespace) -> Path:
    if args.space not in SPACES:
        raise UsageError(f"unknown space {args.space!r}; known spaces: {', '.join(SPACES)}")
    space = get_space(args.space)
    validate(args, space)
    run_dir = resolve_run_dir(args)
    settings = {"dataset": args.dataset, **({"model": args.model} if args.model else {})}
    if args.resume:
        record = json.loads((run_dir / RUN_FILE).read_text())
        args.dataset, args.val_size = record["dataset"], record["val_size"]
    data = load_data(args)
    start_ray(args)
    if args.resume:
        record.update(status="running", resumed_at=_now())
    else:
        record = run_record(args, space, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_FILE, record)
    if record.get("phase", "search") == "search":
        search(args, space, run_dir, record, settings, data)
    if record.get("phase") == "confirm":
        confirm(args, run_dir, record, data)
    return run_dir


def _spent(record: dict, key: str, seconds: float) -> None:
    record[key] = round(record.get(key, 0) + seconds, 1)
    record["wall_seconds"] = round(record.get("wall_seconds", 0) + seconds, 1)


def search(args: argparse.Namespace, space: Space, run_dir: Path, record: dict, settings: dict,
           data: dict) -> None:
    """The search phase; on to confirmation (record["phase"]) once every trial has ended."""
    from tuning.search import ended_trials

    started = time.perf_counter()
    results = build_tuner(args, space, run_dir, settings, data).fit()
    elapsed = time.perf_counter() - started
    ended, running = ended_trials(run_dir, record["study_name"])
    errored = results.num_errors
    if not running and len(ended) >= record["num_samples"]:
        status, advice = "finished", ""
    elif record["time_budget"] and elapsed >= record["time_budget"]:
        status, advice = "stopped_at_time_budget", "; the time budget ran out: --resume continues"
    else:
        status, advice = "interrupted", "; interrupted: continue with --resume"
    if status == "finished" and record.get("confirm_seeds"):
        status, record["phase"] = "running", "confirm"
    record.update(status=status, finished_at=_now())
    _spent(record, "search_seconds", elapsed)
    write_json(run_dir / RUN_FILE, record)
    print(f"\n{len(ended)} of {record['num_samples']} trials ended ({errored} errored), "
          f"{running} cut short{advice}.")


def confirm(args: argparse.Namespace, run_dir: Path, record: dict, data: dict) -> None:
    """Train the best config of each compared choice again with more seeds (tuning.confirm)."""
    from results.confirmation import CONFIRM_DIR
    from tuning.confirm import build_confirmation, configs, finished
    from tuning.progress import Progress

    planned = configs(run_dir, record["confirm_seeds"])
    print(f"\nConfirmation: {len(planned)} more runs, {record['confirm_seeds']} per config "
          "counting the search's own")
    started = time.perf_counter()
    if planned:
        build_confirmation(run_dir, make_trainable(args, data), planned,
                           args.resume and (run_dir / CONFIRM_DIR).is_dir(),
                           [Progress("confirmation", len(planned), METRIC,
                                     sum(c["epochs"] for c in planned) / len(planned))],
                           trial_dirname).fit()
    done = finished(run_dir, len(planned))
    record.update(status="finished" if done else "interrupted", finished_at=_now())
    _spent(record, "confirm_seconds", time.perf_counter() - started)
    write_json(run_dir / RUN_FILE, record)
    if not done:
        print("Confirmation interrupted: continue with --resume.")


def report(run_dir: Path) -> dict[str, Path]:
    from results.report import top_rows, write_reports

    paths = write_reports(run_dir)
    print(top_rows(run_dir, 5))
    for label, path in paths.items():
        print(f"  {label:<12} {path}")
    return paths


def final_training(args: argparse.Namespace, run_dir: Path) -> bool:
    """Train best_config.json on the whole training set, for a finished run only: a half-finished
    search's best is not the answer yet."""
    from tuning.train import default_device, read_config, train

    status = json.loads((run_dir / RUN_FILE).read_text())["status"]
    if status != "finished":
        print(f"\nNo final training: the run is {status}; --resume --final finishes it first")
        return False
    config = read_config(run_dir / "best_config.json")
    print(f"\nFinal training of the best config for {config.epochs} epochs on the whole training set")
    result = train(config, run_dir / "final", args.data_dir, default_device())
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
    from trainables.config import ConfigError

    try:
        run_dir = run(args)
        report(run_dir)
        if args.final and final_training(args, run_dir):
            report(run_dir)
    except (UsageError, ConfigError) as err:
        fail(PROG, str(err))
    except Exception as err:
        from results.report import ReportError
        from trainables.data import DataError  # imported here: torch is slow to import

        if isinstance(err, (DataError, ReportError)):
            fail(PROG, str(err))
        raise


if __name__ == "__main__":
    main()
