"""Train one configuration of a task on its whole training set, testing after each epoch on the
task's test split where it has one.

    python -m tuning.train --config tutorial.json
    python -m tuning.train --config runs/sgd_vs_adam/best_config.json   # writes runs/sgd_vs_adam/final/
    python -m tuning.train --config c.json --task my_task.py

Writes model.pt (the state dict), final_metrics.json, config.json and curve.png to --output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from results.figures import training_curve
from trainables.cli import HelpFormatter, UsageError, fail
from trainables.rundir import (BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE, RUN_FILE, Status,
                               read_json, write_atomic, write_json)
from trainables.config import ConfigError, TrainConfig, bookkeeping, parse_config
from trainables.data import DataError, concat, default_data_dir, size
from trainables.loop import Trainer, is_diverged
from trainables.task import Task, TaskError, load_module, load_task

PROG = "python -m tuning.train"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None


def known_hyperparameters(task: Task, run_file: Path) -> dict[str, Any]:
    """The task's own hyperparameters, and every name its file's space, or the space of the run
    whose run.json is `run_file`, sets."""
    from search_spaces import get_space
    from tuning.dry_run import known_hyperparameters as of_space

    refs = []
    if callable(getattr(load_module(task.ref, "trainables.tasks"), "define", None)):
        refs.append(task.ref)
    if run_file.is_file():
        run = json.loads(run_file.read_text())
        refs.append(run.get("space_ref"))
    known = dict(task.hyperparameters)
    for ref in refs:
        space = get_space(ref)
        known = {**of_space(task, space, space.budget.max_epochs), **known}
    return known


def read_config(path: Path, task_ref: str | None = None) -> tuple[TrainConfig, Task]:
    """The config in a JSON file and the task it trains: --task, else the file's "task" (a run's
    best_config.json names it), else the default task."""
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object of settings, got {type(raw).__name__}")
    # "dataset": how configs named the built-in task before there were tasks
    task = load_task(task_ref or raw.get("task") or raw.get("dataset"))
    ignore = (*bookkeeping(raw), "dataset")
    config = parse_config(raw, ignore=ignore,
                          hyperparameters=known_hyperparameters(task, path.parent / RUN_FILE),
                          own_optimizers=task.configure_optimizers is not None)
    return config, task


def default_output(config_path: Path) -> Path:
    """A run's best_config.json trains into the run's final/; any other config into runs/<name>/."""
    if (config_path.parent / RUN_FILE).is_file():
        return config_path.parent / FINAL_DIR
    return Path("runs") / f"train-{config_path.stem}"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """A one-line ConfigError for a device this machine does not have."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but no CUDA device is available")
    index = device.partition(":")[2]
    count = torch.cuda.device_count()
    if index and (not index.isdigit() or int(index) >= count):
        have = ", ".join(f"cuda:{i}" for i in range(count))
        raise ConfigError(f"--device {device} asked for, but this machine has {count} CUDA "
                          f"device{'s' if count != 1 else ''} ({have})")


def fit_with_progress(trainer: Trainer, train: Any, test: Any) -> dict[str, float]:
    """One epoch, printing the tutorial's loss line every 100 batches (beside a progress bar on a
    terminal)."""
    size, batch_size = len(train), trainer.config.batch_size
    bar = None
    if sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(total=size, unit="img", leave=False, dynamic_ncols=True)

    def on_batch(batch: int, loss: torch.Tensor, current: int, size: int) -> None:
        if bar is not None:
            bar.update(min(batch_size, size - bar.n))
        if batch % 100 == 0:
            line = f"loss: {loss.item():>7f}  [{current:>5d}/{size:>5d}]"
            bar.write(line) if bar is not None else print(line, flush=True)

    metrics = trainer.fit_epoch(train, test, on_batch, holdout_name="test")
    if bar is not None:
        bar.close()
    return metrics


def workers() -> int:
    """DataLoader worker processes for a map-style split: the CPUs beside the training one, up
    to 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def test_line(metrics: dict[str, float], metric: str) -> str:
    """The tutorial's "Test Error" line, in the task's metric."""
    from results.metric import Score

    score = Score(f"test_{metric}")
    value = metrics[score.column]
    shown = f"{score.scale(value):>0.1f}%" if score.percent else f"{value:>8f}"
    return (f"Test Error: \n {score.words[0].upper()}{score.words[1:]}: {shown}, "
            f"Avg loss: {metrics['test_loss']:>8f} \n")


def train(config: TrainConfig, task: Task, output: Path, data_dir: Path | str | None,
          device: str, brief: bool = False) -> dict[str, Any]:
    """Train on the task's whole training set (its training and validation splits), test on its
    test split after each epoch where it has one, print the tutorial's familiar lines (`brief`:
    a line an epoch, as a run's final training does), and write the results."""
    splits = task.splits(Path(data_dir) if data_dir else default_data_dir())
    whole = concat(splits["train"], splits["val"]) if "val" in splits else splits["train"]
    trainer = Trainer(config, task, device, workers())
    feasible(trainer, splits["train"], size(whole))
    train_feed = trainer.feed(whole, train=True)
    test_feed = trainer.feed(splits["test"], train=False) if "test" in splits else None
    if test_feed is None:
        print(f"The task {task.name} has no test split: training on its {len(train_feed)} "
              "samples, testing nothing")
    metric = task.metric.name
    history = []
    for epoch in range(1, config.epochs + 1):
        if brief:
            metrics = trainer.fit_epoch(train_feed, test_feed, None, holdout_name="test")
            print(f"[final] epoch {epoch} of {config.epochs}: "
                  f"{final_words({**metrics, 'metric': metric}).lower()}", flush=True)
        else:
            print(f"Epoch {epoch}\n-------------------------------")
            metrics = fit_with_progress(trainer, train_feed, test_feed)
            print(test_line(metrics, metric) if test_feed is not None else
                  f"Train loss: {metrics['train_loss']:>8f} \n", flush=True)
        history.append({**metrics, "seconds": round(metrics["seconds"], 3)})
        if is_diverged(metrics):
            print(f"Stopped: the loss is {metrics['train_loss']} after epoch {epoch} (diverged); "
                  "lower the learning rate.")
            break
    last = history[-1]
    result = {
        "config": config.to_dict(),
        "task": task.ref,
        "metric": metric,
        "device": str(device),
        "epochs": history,
        **({f"test_{metric}": last[f"test_{metric}"], "test_loss": last["test_loss"]}
           if test_feed is not None else {}),
        "diverged": is_diverged(last),
        "seconds": round(sum(e["seconds"] for e in history), 3),
    }
    write_results(result, trainer, output)
    return result


def feasible(trainer: Trainer, part: Any, samples: int) -> None:
    """Refuse in one line, before the first epoch, a batch larger than the training set or a
    training that would not end in a month at the speed of a few batches (tuning.dry_run)."""
    from tuning.dry_run import check_feasible
    from tuning.one_batch import speed

    config = trainer.config
    seconds = 0.0
    if config.batch_size <= samples:
        seconds = config.epochs * samples / speed(trainer.task, trainer.model, config, part)
    check_feasible(config.batch_size, samples, seconds, f"epochs {config.epochs:,}")


def write_results(result: dict[str, Any], trainer: Trainer, output: Path) -> None:
    """model.pt, config.json, curve.png, then final_metrics.json: its presence means the rest is
    there."""
    config = trainer.config
    write_atomic(output / "model.pt",
                 lambda tmp: torch.save(trainer.scored_model.state_dict(), tmp))
    write_json(output / "config.json", {**config.to_dict(), "task": trainer.task.ref})
    training_curve(result["epochs"], output / "curve.png",
               f"{trainer.task.name} / {config.optimizer} lr={config.lr:g} "
               f"batch={config.batch_size}", result["metric"])
    write_json(output / FINAL_METRICS_FILE, result)


def final_training(run_dir: Path, data_dir: Path | str | None = None) -> bool:
    """The run's last phase: train best_config.json on the whole training set (on `data_dir`,
    else the run's), for a finished run only: a half-finished search's best is not the answer
    yet."""
    run = read_json(run_dir / RUN_FILE)
    if run["status"] != Status.FINISHED:
        print(f"\nNo final training: the run is {run['status']}; --resume --final finishes it first")
        return False
    config, task = read_config(run_dir / BEST_CONFIG_FILE)
    print(f"\nFinal training of the best config for {config.epochs} epochs on the whole training set")
    result = train(config, task, run_dir / FINAL_DIR, data_dir or run.get("data_dir"),
                   default_device(), brief=True)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", type=Path, required=True,
                        help="JSON file of settings: optimizer and lr, and optionally batch_size, "
                             "epochs, momentum, weight_decay, schedule, warmup_epochs, label_smoothing, "
                             "shuffle, seed, the task "
                             "and the task's own hyperparameters")
    parser.add_argument("--task", help="the task to train: a built-in task's name, a file or a "
                                       "module (default: the config's task, else fashion_mnist)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the results (default: the run's {FINAL_DIR}/ for a "
                             f"{BEST_CONFIG_FILE}, else runs/train-<config name>)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder handed to the task's load_data (default: the run's, for a "
                             "best_config.json; else a per-user cache folder)")
    parser.add_argument("--device", default=default_device(),
                        help="cpu or cuda (default: cuda when available, else cpu)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        config, task = read_config(args.config, args.task)
        check_device(args.device)
        output = args.output or default_output(args.config)
        started = time.perf_counter()
        result = train(config, task, output, args.data_dir or run_data_dir(args.config),
                       args.device)
    except (ConfigError, DataError, TaskError, UsageError) as err:
        fail(PROG, str(err))
    print(f"{final_words(result)} after {len(result['epochs'])} epochs "
          f"({time.perf_counter() - started:.0f} s); results in {output}/")


def run_data_dir(config_path: Path) -> str | None:
    """The data folder of the run a best_config.json belongs to, where it sits in one."""
    run_file = config_path.parent / RUN_FILE
    return json.loads(run_file.read_text()).get("data_dir") if run_file.is_file() else None


def final_words(result: dict[str, Any]) -> str:
    """'Test accuracy 89.12%', 'Test RMSE 53.21', or 'Not tested (no test split)'."""
    from results.metric import Score

    score = Score(f"test_{result['metric']}")
    if score.column not in result:
        return "Not tested (the task has no test split)"
    return f"Test {score.words} {score.format(result[score.column], digits=2)}"


if __name__ == "__main__":
    main()
