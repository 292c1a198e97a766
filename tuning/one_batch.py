"""A task's parts run on one batch, as a trial runs them (tuning.dry_run checks a task with them):
its training step forward and backward, its evaluation step, its loss and metric on what that
returns, its optimizer and schedule (or its configure_optimizers) built, its precision on the
trials' device, and the training samples per second. Each failure is a TaskError, one line naming
the file and the part of the task that failed.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from trainables.cli import first_line
from trainables.config import ConfigError, TrainConfig
from trainables.data import Part, head
from trainables.loop import Feed, evaluate, seed_everything
from trainables.metrics import batch_total, finish, loss_kind
from trainables.optim import as_optimizers, build_optimizer, build_scheduler
from trainables.steps import Steps, autocast, check_precision, inputs, pair, to_device
from trainables.steps import batch_size as samples_in
from trainables.task import Task, TaskError, describe

TIMED_SECONDS, TIMED_BATCHES = 0.5, 50  # the speed is measured for at most these, after one batch


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
                 task.metric, steps=Steps.of(task))
    except Exception as err:
        raise task.error("load_data(data_dir)", f"gave a validation split the model cannot be "
                                                f"scored on: {describe(err)}") from None
    return model, speed(task, model, config, parts["train"])


def _shape(tensor: Any) -> str:
    if not isinstance(tensor, torch.Tensor):
        return type(tensor).__name__
    return f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


def batches(config: TrainConfig, part: Part, task: Task) -> Iterator[Any]:
    """Training batches of a split, shuffled (and collated by the task's collate_fn) as a
    trial's are."""
    return iter(Feed(part, "cpu", config.batch_size, torch.Generator().manual_seed(config.seed),
                     shuffle=config.shuffle, collate_fn=task.collate_fn))


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
    steps, seen, start = Steps.of(task), 0, time.perf_counter()
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
