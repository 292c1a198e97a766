"""Optimizers and learning-rate schedules, built from a config (or by the task's own
configure_optimizers).

The names a config may give, and each one's keyword arguments, are trainables.config's
(optimizer_classes, schedule_classes): any torch.optim optimizer by its name in lower case, any
torch.optim.lr_scheduler schedule by its class name, and six schedules by a short name, built
here. A schedule steps once an epoch, or once a batch (`schedule_interval`: "batch", the field's
way for warm-up and one-cycle); the short names' settings count epochs either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from trainables.config import (ConfigError, TrainConfig, optimizer_arguments, optimizer_classes,
                               schedule_arguments, schedule_classes, SHARED_SCHEDULE_ARGS)

CORE_OPTIMIZER_ARGS = ("momentum", "nesterov", "weight_decay")  # the core's own fields
# built with fused=True where torch has the kernel: they refuse sparse gradients either way (fused
# SGD would fail on them only at its first step)
FUSED = ("adam", "adamw")

Schedule = Callable[[torch.optim.Optimizer, TrainConfig, int], Any]
SCHEDULES: dict[str, Schedule | None] = {  # (optimizer, config, steps an epoch); "none": constant
    "none": None,
    "step": lambda opt, c, n: lr_scheduler.StepLR(opt, step_size=c.step_size * n, gamma=c.gamma),
    "multistep": lambda opt, c, n: lr_scheduler.MultiStepLR(
        opt, milestones=[m * n for m in c.milestones], gamma=c.gamma),
    "exponential": lambda opt, c, n: lr_scheduler.ExponentialLR(opt, gamma=c.gamma ** (1 / n)),
    "cosine": lambda opt, c, n: lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs * n),
    # from lr / 25 up to lr over the first 30% of its steps, then down on a cosine to lr / 25e4
    # (Smith, 2018); one step more than it takes, so that the last epoch, as cosine's, keeps some lr
    "onecycle": lambda opt, c, n: lr_scheduler.OneCycleLR(opt, max_lr=c.lr,
                                                          total_steps=c.epochs * n + 1),
}


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The config's optimizer: its lr, the core's momentum, nesterov and weight_decay where it
    takes them, and its other keyword arguments. Adam and AdamW run torch's fused kernel where
    the parameters' device and dtype have one and the config names no implementation (`fused`,
    `foreach`): the same update, up to float rounding, in a quarter of the time of the default
    loop over the parameters on a CPU (benchmarks/epoch_speed.py --optimizer adam)."""
    takes = optimizer_arguments(config.optimizer)
    core = {name: getattr(config, name) for name in CORE_OPTIMIZER_ARGS if name in takes}
    make = partial(optimizer_classes()[config.optimizer], lr=config.lr, **core,
                   **config.optimizer_args)
    params = list(params)
    if config.optimizer in FUSED and not {"fused", "foreach"} & set(config.optimizer_args):
        try:
            return make(params, fused=True)
        except RuntimeError:  # no fused kernel for these parameters (their device or dtype)
            pass
    return make(params)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int = 1
                    ) -> Any:
    """The schedule, stepped once an epoch (`steps` 1) or once a batch (`steps` the optimizer
    steps an epoch); None for a constant learning rate. With warmup_epochs, the lr climbs linearly
    to config.lr over those epochs (from lr / (warmup + 1)), and the schedule runs over the epochs
    after them."""
    warmup = config.warmup_epochs
    rest = replace(config, epochs=config.epochs - warmup)
    if config.schedule in schedule_classes():
        takes = schedule_arguments(config.schedule)
        shared = {k: getattr(config, k) for k in SHARED_SCHEDULE_ARGS if k in takes}
        main = schedule_classes()[config.schedule](optimizer, **shared, **config.schedule_args)
    else:
        make = SCHEDULES[config.schedule]
        main = make(optimizer, rest, steps) if make else None
    if not warmup:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup * steps + 1),
                                 total_iters=warmup * steps)
    if main is None:
        return warm
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup * steps])


def configured(hook: Callable[[nn.Module, dict[str, Any]], Any], model: nn.Module,
               config: TrainConfig) -> tuple[torch.optim.Optimizer, Any, str]:
    """(optimizer, schedule or None, interval) from a task's configure_optimizers(model, params),
    in Lightning's shapes: an optimizer; (optimizer, schedule); or {"optimizer": ...,
    "lr_scheduler": schedule or {"scheduler": ..., "interval": "epoch" or "step"}}. Without a
    schedule of its own, the config's is built on its optimizer. A TypeError saying what came
    back otherwise (as_optimizers)."""
    return as_optimizers(hook(model, config.to_dict()), config)


def as_optimizers(value: Any, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any, str]:
    """What configure_optimizers returned, as (optimizer, schedule or None, interval); a TypeError
    whose message begins "returned" otherwise."""
    schedule, interval = None, config.schedule_interval
    if isinstance(value, dict):
        schedule = value.get("lr_scheduler")
        if isinstance(schedule, dict):
            interval = {"step": "batch"}.get(schedule.get("interval"),
                                             schedule.get("interval", interval))
            schedule = schedule.get("scheduler")
        value = value.get("optimizer")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value, schedule = value
    if not isinstance(value, torch.optim.Optimizer):
        raise TypeError(f"returned {type(value).__name__}, not an optimizer, (optimizer, "
                        "schedule) or {\"optimizer\": ..., \"lr_scheduler\": ...}")
    if interval not in ("epoch", "batch"):
        raise TypeError(f"returned a schedule interval {interval!r}, not 'epoch' or 'step'")
    if schedule is not None and not hasattr(schedule, "step"):
        raise TypeError(f"returned a schedule that is a {type(schedule).__name__}, not a "
                        "learning-rate schedule")
    return value, schedule, interval


def training_loss(loss: Callable[..., torch.Tensor], config: TrainConfig
                  ) -> Callable[..., torch.Tensor]:
    """The loss minimised in training: the task's, with the config's label smoothing where it has
    some (the default cross-entropy only; evaluation keeps the task's loss as it is)."""
    if not config.label_smoothing:
        return loss
    if loss is not F.cross_entropy:
        raise ConfigError("label_smoothing applies to the default cross-entropy loss only; this "
                          "task has a loss of its own")
    return partial(F.cross_entropy, label_smoothing=config.label_smoothing)
