"""A task and its space checked before a run spends hours on them: a dry run of one batch
(`python -m tuning.check` is its command; `python -m tuning.run` runs it before it starts Ray).

Imports the task, builds its data and the first trial's model, runs its parts on one batch
(tuning.one_batch: the training and evaluation steps, the loss, the metric, the optimizer),
pickles what Ray will ship to a worker, and measures the samples per second that price the whole
run. Every defect of a task file is one line naming
the file and the function (TaskError).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces import Space, baseline_params, compare_choices, describe_parameters
from trainables.cli import UsageError
from trainables.config import KEYS, TRIAL_KEYS, ConfigError, TrainConfig
from trainables.data import DataError, Part, for_tuning, is_pair, size
from trainables.optim import training_loss
from trainables.task import Task, TaskError, describe, shown
from tuning.one_batch import one_step
from tuning.progress import asha_epochs, duration
from tuning.settings import SMOKE_SAMPLES, Settings

MAX_DAYS = 30  # a run or a training estimated to take longer is refused (check_feasible)


@dataclass
class Checked:
    """What the dry run found: the task as trials get it, its splits, the search's parts."""

    task: Task  # its hyperparameters: the task's own and every name its space sets
    splits: dict[str, Part]  # what load_data returned
    parts: dict[str, Part]  # "train" and "val", as the search tunes on them
    baseline: dict[str, Any] | None  # trial 0's parameters, where the space holds the baseline
    baseline_note: str  # why there is no trial 0, where there is none
    choices: list[Any] | None  # the compared values
    parameters: int
    samples_per_second: float
    shipped_mb: float
    starts: tuple[dict[str, Any], ...] = ()  # the space's STARTS of the compared values, as params
    compare: str | None = None  # the space's COMPARE, where it has values to compare

    def epoch_seconds(self) -> float:
        """Training and validation of one epoch, evaluation at a third of training's cost."""
        return (size(self.parts["train"]) + size(self.parts["val"]) / 3) / self.samples_per_second


def known_hyperparameters(task: Task, space: Space | None, max_epochs: int) -> dict[str, Any]:
    """The task's own hyperparameters with their defaults, and every other name its space sets
    (no default): with the training core's keys, what a trial's config may hold. A TaskError
    where the space sets label_smoothing and the task's loss cannot take it."""
    names = describe_parameters(space, max_epochs) if space is not None else {}
    if "label_smoothing" in names:
        try:
            training_loss(task.loss, TrainConfig("sgd", 1.0, label_smoothing=0.1))
        except ConfigError as err:
            raise TaskError(f"{space.where()} sets label_smoothing: {err}") from None
    return {**{name: None for name in names if name not in KEYS}, **task.hyperparameters}


def first_config(space: Space, task: Task, max_epochs: int, baseline: dict[str, Any] | None
                 ) -> TrainConfig:
    """The config of the search's first trial: the baseline where the space holds it, else a
    random draw of the space."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    if baseline:
        study.enqueue_trial(baseline)
    trial = study.ask()
    fixed = space.define(trial, max_epochs) or {}
    config = {**trial.params, **fixed}
    try:
        return task.parse(config, ignore=TRIAL_KEYS)
    except ConfigError as err:
        raise TaskError(f"{space.where()} gives a config that cannot train: {err}") from None


def shipped(task: Task, parts: dict[str, Part]) -> float:
    """MB that Ray ships to a worker: the task (a file's functions by value) and the tensor
    splits; a TaskError naming what cannot be pickled."""
    import ray.cloudpickle

    task.picklable()
    try:
        size_task = len(ray.cloudpickle.dumps(task))
    except Exception as err:
        raise task.error("the task", f"cannot be sent to Ray's workers: pickling it raised "
                                     f"{describe(err)}; keep objects such as open files, locks "
                                     "and connections out of its functions' reach") from None
    tensors = sum(t.numel() * t.element_size() for p in parts.values() if is_pair(p) for t in p)
    return (size_task + tensors) / 2**20


def dry_run(space: Space, task: Task, s: Settings) -> Checked:
    """Everything a search needs from the task, checked on one batch; TaskError (one line naming
    the file and the function) or DataError otherwise."""
    choices = compare_choices(space, s.max_epochs)
    task = dataclasses.replace(task, hyperparameters=known_hyperparameters(task, space,
                                                                           s.max_epochs))
    if task.baseline:
        try:
            task.parse(task.baseline)
        except ConfigError as err:
            raise task.error("BASELINE", f"is not a config that trains: {err}") from None
    baseline, why = baseline_params(space, s.max_epochs, task.baseline, task.hyperparameters)
    if task.baseline and baseline is None and space.task == task.ref:
        raise task.error("BASELINE", f"is outside the space: {why}")
    starts = start_params(space, task, s.max_epochs, choices)
    splits = task.splits(Path(s.data_dir))
    parts = for_tuning(splits, s.val_size, SMOKE_SAMPLES if s.smoke_test else None)
    config = first_config(space, task, s.max_epochs, baseline)
    with trial_threads(s.cpus_per_trial):
        model, rate = one_step(task, config, parts, "cuda" if s.gpus_per_trial != 0
                               and torch.cuda.is_available() else "cpu")
    checked = Checked(task, splits, parts, baseline, why, choices,
                      sum(p.numel() for p in model.parameters()), rate, shipped(task, parts), starts,
                      space.compare if choices else None)
    check_feasible(config.batch_size, size(parts["train"]), estimate(checked, s)[1],
                   f"the run ({s.num_samples} trials of up to {s.max_epochs:,} epochs)")
    return checked


def start_params(space: Space, task: Task, max_epochs: int, choices: list[Any] | None
                 ) -> tuple[dict[str, Any], ...]:
    """The space's STARTS as the search's parameters, those of values the run compares; a
    TaskError naming the space's file for one the space cannot express."""
    out = []
    for i, start in enumerate(space.starts):
        params, why = baseline_params(space, max_epochs, start, task.hyperparameters)
        if params is None:
            raise TaskError(f"{space.where(f'STARTS[{i}]')} is outside the space: {why}")
        if not space.compare or choices is None or params.get(space.compare) in choices:
            out.append(params)
    return tuple(out)


@contextlib.contextmanager
def trial_threads(cpus: float) -> Iterator[None]:
    """Torch threads as a trial with `cpus` CPUs has them, within; this process's as they were
    after (final training runs in it later)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, math.floor(cpus)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_feasible(batch_size: int, samples: int, seconds: float, what: str) -> None:
    """A batch no larger than the training split, and a training that ends within MAX_DAYS on this
    machine (`seconds`: its estimate): anything else is a typo, refused in one line (UsageError)."""
    if batch_size > samples:
        raise UsageError(f"batch_size {batch_size:,} is larger than the training split "
                         f"({samples:,} samples): every epoch would be one batch of them all")
    if seconds > MAX_DAYS * 86_400:
        raise UsageError(f"{what} would take about {seconds / 86_400:,.0f} days on this machine, "
                         f"more than {MAX_DAYS}; lower it")


def estimate(checked: Checked, s: Settings) -> tuple[float, float, int]:
    """(epochs the search and the confirmation are expected to train, seconds, trials at once)
    on this machine: ASHA's average epochs per trial, the confirmed configs' extra seeds."""
    epochs = s.num_samples * asha_epochs(s.max_epochs, s.grace_period, s.reduction_factor)
    confirmed = len(checked.choices) if checked.choices else 3
    epochs += confirmed * max(0, s.confirm_seeds - 1) * s.max_epochs
    at_once = max(1, int((os.cpu_count() or 1) // s.cpus_per_trial))
    at_once = min(at_once, s.max_concurrent or at_once, s.num_samples)
    return epochs, epochs * checked.epoch_seconds() / at_once, at_once


def data_folder(task: Task, data_dir: str) -> str:
    """Where the task's data are read from: for a built-in dataset the folder its files were
    found in (the system's copy, where the default data directory has none), else the folder
    handed to load_data."""
    from trainables.idx import DATASETS, folder_of

    found = folder_of(task.ref, data_dir) if task.ref in DATASETS else None
    return shown(found or Path(data_dir))


def summary(checked: Checked, s: Settings) -> str:
    """Two lines: the task, its model and data; its speed and the run's estimated cost."""
    task, parts = checked.task, checked.parts
    kinds = {name: "tensors" if is_pair(p) else type(p).__name__ for name, p in parts.items()}
    epochs, seconds, at_once = estimate(checked, s)
    return (f"Task {task.name} ({shown(Path(task.path))}): {checked.parameters:,} parameters; "
            f"{size(parts['train']):,} training samples ({kinds['train']}) and "
            f"{size(parts['val']):,} validation samples ({kinds['val']}) from "
            f"{data_folder(task, s.data_dir)}; metric val_{task.metric.name}, "
            f"{task.metric.better}.\n"
            f"{checked.samples_per_second:,.0f} training samples/s on {s.cpus_per_trial:g} CPU: "
            f"about {checked.epoch_seconds():.2g} s an epoch, {epochs:.0f} epochs expected, about "
            f"{duration(seconds)} of training at {at_once} trial{'s' if at_once > 1 else ''} at "
            f"once; {checked.shipped_mb:.1f} MB shipped to each worker.")
