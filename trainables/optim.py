"""Optimizers and learning-rate schedules, each built by name from its registry.

The names a config may give, and the settings each optimizer takes, are trainables.config's
(OPTIMIZER_SETTINGS, SCHEDULE_NAMES), which validates configs against them; the registries here
hold what each name builds, and must name the same. Adding an optimizer is a line in each (and a
search space that suggests it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from trainables.config import OPTIMIZER_SETTINGS, ConfigError, TrainConfig

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}

Schedule = Callable[[torch.optim.Optimizer, TrainConfig], lr_scheduler.LRScheduler]
SCHEDULES: dict[str, Schedule | None] = {  # stepped once per epoch; "none": a constant lr
    "none": None,
    "step": lambda opt, c: lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma),
    "multistep": lambda opt, c: lr_scheduler.MultiStepLR(opt, milestones=c.milestones,
                                                         gamma=c.gamma),
    "exponential": lambda opt, c: lr_scheduler.ExponentialLR(opt, gamma=c.gamma),
    "cosine": lambda opt, c: lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs),
    # from lr / 25 up to lr over the first 30% of its steps, then down on a cosine to lr / 25e4
    # (Smith, 2018); one step more than epochs, so that the last epoch, as cosine's, keeps some lr
    "onecycle": lambda opt, c: lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=c.epochs + 1),
}


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](
        params, lr=config.lr, weight_decay=config.weight_decay,
        **{name: getattr(config, name) for name in OPTIMIZER_SETTINGS[config.optimizer]})


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> lr_scheduler.LRScheduler | None:
    """The schedule, stepped once per epoch; None for a constant learning rate. With
    warmup_epochs, the lr climbs linearly to config.lr over those epochs (from lr / (warmup + 1)),
    and the schedule runs over the epochs after them."""
    make, warmup = SCHEDULES[config.schedule], config.warmup_epochs
    main = make(optimizer, replace(config, epochs=config.epochs - warmup)) if make else None
    if not warmup:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    if main is None:
        return warm
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])


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

