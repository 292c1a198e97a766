"""A task and its space checked before a run spends hours on them: a dry run of one batch
(`python -m tuning.check` is its command; `python -m tuning.run` runs it before it starts Ray).

Imports the task, builds its data and the first trial's model, pushes one batch forward and
backward, computes the loss and the metric, pickles what Ray will ship to a worker, and measures
the samples per second that price the whole run. Every defect of a task file is one line naming
the file and the function (TaskError).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_spaces import Space, baseline_params, compare_choices, describe_parameters
from trainables.cli import UsageError, first_line
from trainables.config import KEYS, TRIAL_KEYS, ConfigError, TrainConfig, parse_config
from trainables.data import DataError, Part, for_tuning, head, is_pair, size
from trainables.loop import Feed, autocast, check_precision, evaluate, seed_everything
from trainables.metrics import batch_total, finish, loss_kind
from trainables.optim import as_optimizers, build_optimizer, build_scheduler, training_loss
from trainables.steps import Steps, inputs, pair, to_device
from trainables.steps import batch_size as samples_in
from trainables.task import Task, TaskError, describe, shown
from tuning.progress import asha_epochs, duration
from tuning.settings import SMOKE_SAMPLES, Settings

TIMED_SECONDS, TIMED_BATCHES = 0.5, 50  # the speed is measured for at most these, after one batch
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


def _shape(tensor: Any) -> str:
    if not isinstance(tensor, torch.Tensor):
        return type(tensor).__name__
    return f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


def batches(config: TrainConfig, part: Part, task: Task | None = None) -> Iterator[Any]:
    """Training batches of a split, shuffled (and collated by the task's collate_fn) as a
    trial's are."""
    return iter(Feed(part, "cpu", config.batch_size, torch.Generator().manual_seed(config.seed),
                     shuffle=config.shuffle,
                     collate_fn=task.collate_fn if task is not None else None))


def steps_of(task: Task) -> Steps:
    return Steps(task.loss, task.training_step, task.evaluation_step)


def _loss(task: Task, out: Any, y: Any) -> torch.Tensor:
    """The task's loss of one batch's outputs, a single number; a TaskError naming the loss where
    it fails, returns anything else, or would broadcast outputs against targets of another shape
    (torch warns, and scores every output against every target)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = task.loss(out, y)
        broadcast = [w for w in caught if "target size" in str(w.message)]
        if broadcast:
            raise ValueError(f"it would broadcast them: {first_line(broadcast[0].message)}")
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"it returned {_shape(loss)}, not a single number (a 0-d tensor)")
    except Exception as err:
        raise task.error("loss(outputs, targets)", f"does not fit the model's outputs "
                                                   f"{_shape(out)} and targets {_shape(y)}: "
                                                   f"{describe(err)}") from None
    return loss


def one_batch(task: Task, model: torch.nn.Module, feed: Iterator, precision: str = "fp32"
              ) -> tuple[Any, Any]:
    """The first batch forward and backward through the training step, then through the
    evaluation step (an optimizer's step adds nothing to check, and the first one costs a
    process seconds of torch imports), each failure a TaskError naming the part of the task that
    failed; the evaluation step's (outputs, targets)."""
    try:
        batch = next(feed)
    except Exception as err:
        raise task.error("collate_fn(items)" if task.collate_fn else "load_data(data_dir)",
                         f"gave a split whose items do not batch: {describe(err)}") from None
    model.train()
    with autocast(torch.device("cpu"), precision):
        loss = train_step(task, model, batch)
    try:
        loss.backward()
    except Exception as err:
        part = "training_step(model, batch)" if task.training_step else "loss(outputs, targets)"
        raise task.error(part, f"gave a loss that does not backpropagate: {describe(err)}") \
            from None
    model.zero_grad(set_to_none=True)
    if not math.isfinite(loss.item()):  # every trial would diverge at its first step
        if task.training_step is not None:
            raise task.error("training_step(model, batch)", f"is {loss.item()} on the first "
                             "batch; check the model's weights, the inputs' scale and the "
                             "targets' values")
        out = _forward(task, model, batch)[0]
        why = ("the model's outputs are not finite either: check build_model's weights and the "
               "inputs' scale" if not torch.isfinite(out).all() else
               "the model's outputs are finite: check the loss on outputs like these and the "
               "targets' values")
        raise task.error("loss(outputs, targets)", f"is {loss.item()} on the first batch; {why}")
    model.eval()
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        if task.evaluation_step is None:
            return _forward(task, model, batch)
        try:
            out, y = task.evaluation_step(model, batch)
        except Exception as err:
            raise task.error("evaluation_step(model, batch)", f"failed on the first batch: "
                                                              f"{describe(err)}; it returns "
                                                              "(outputs, targets)") from None
        _loss(task, out, y)
    return out, y


def _forward(task: Task, model: torch.nn.Module, batch: Any) -> tuple[Any, Any]:
    """The default step's outputs and targets of a batch: (inputs, targets) batches only."""
    try:
        x, y = pair(batch, "training_step")
    except TypeError as err:
        raise task.error("load_data(data_dir)", f"gave batches the default step cannot take: "
                                                f"{err}") from None
    try:
        out = model(inputs(x))
    except Exception as err:
        raise task.error("build_model(params)", f"made a model that fails on a batch of inputs "
                                                f"{_shape(x)}: {describe(err)}") from None
    return out, y


def train_step(task: Task, model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """The training step's loss of one batch, checked to be a single number."""
    if task.training_step is None:
        return _loss(task, *_forward(task, model, batch))
    try:
        loss = task.training_step(model, batch)
    except Exception as err:
        raise task.error("training_step(model, batch)", f"failed on the first batch: "
                                                        f"{describe(err)}") from None
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise task.error("training_step(model, batch)", f"returned {_shape(loss)}, not the "
                                                        "batch's loss (a 0-d tensor)")
    return loss


def check_metric(task: Task, out: Any, y: Any) -> None:
    """The metric computes a finite number from the evaluation step's outputs and targets."""
    name = task.metric.name
    try:
        if task.metric.fn is not None:
            value = float(task.metric.fn(out, y))
        elif name != "loss":
            total, count = batch_total(name, out.float(), y, loss_kind(task.loss))
            value = finish(name, float(total), count)
        else:
            return
    except Exception as err:
        part = "metric(outputs, targets)" if task.metric.fn else f"METRIC {name!r}"
        raise task.error(part, f"cannot be computed from outputs {_shape(out)} and targets "
                               f"{_shape(y)}: {describe(err)}") from None
    if not math.isfinite(value):
        raise task.error("metric(outputs, targets)", f"returned {value} on the first batch")


def check_optimizer(task: Task, model: torch.nn.Module, config: TrainConfig, device: str) -> None:
    """The first trial's optimizer and schedule built as a trial builds them (the task's
    configure_optimizers where it has one), in a precision the trials' device has; a TaskError
    naming the hook, or a ConfigError, otherwise."""
    check_precision(config.precision, torch.device(device))
    if task.configure_optimizers is not None:
        hook = "configure_optimizers(model, params)"
        try:
            value = task.configure_optimizers(model, config.to_dict())
        except Exception as err:
            raise task.error(hook, f"raised {describe(err)}") from None
        try:
            as_optimizers(value, config)
        except TypeError as err:
            raise task.error(hook, str(err)) from None
        return
    try:
        build_scheduler(build_optimizer(model.parameters(), config), config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"the optimizer or schedule of {config.optimizer!r} cannot be built: "
                          f"{describe(err)}") from None


def speed(task: Task, model: torch.nn.Module, config: TrainConfig, part: Part) -> float:
    """Training samples per second, forward and backward, for at most TIMED_SECONDS or
    TIMED_BATCHES, after a first batch that warms up (where the split has more than one)."""
    timed = list(itertools.islice(batches(config, part, task), TIMED_BATCHES + 1))
    timed = timed[1:] or timed
    device = next(model.parameters(), torch.empty(0)).device
    steps, seen, start = steps_of(task), 0, time.perf_counter()
    for batch in timed:
        batch = to_device(batch, device)
        with autocast(device, config.precision):
            loss = steps.train(model, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        seen += samples_in(batch)
        if time.perf_counter() - start > TIMED_SECONDS:
            break
    return seen / (time.perf_counter() - start)


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


def one_step(task: Task, config: TrainConfig, parts: dict[str, Part], device: str = "cpu"
             ) -> tuple[torch.nn.Module, float]:
    """The first trial's model built, its optimizer, one batch through it, its metric and its
    validation checked (`device`: where trials train, for the precision); (the model, training
    samples per second)."""
    seed_everything(config.seed)
    try:
        model = task.build_model(config.to_dict())
    except Exception as err:
        raise task.error("build_model(params)", f"raised {describe(err)}") from None
    try:
        check_optimizer(task, model, config, device)
    except ConfigError as err:
        raise TaskError(f"{task.where('the first config')} cannot train: {err}") from None
    out, y = one_batch(task, model, batches(config, parts["train"], task), config.precision)
    check_metric(task, out, y)
    try:  # the first samples: the whole split may take a while
        evaluate(model, task.loss, Feed(head(parts["val"], 256), "cpu", config.batch_size,
                                        collate_fn=task.collate_fn),
                 task.metric, steps=steps_of(task))
    except Exception as err:
        raise task.error("load_data(data_dir)", f"gave a validation split the model cannot be "
                                                f"scored on: {describe(err)}") from None
    return model, speed(task, model, config, parts["train"])


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
