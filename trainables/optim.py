"""Optimizers and learning-rate schedules, each found by name in its registry.

The registries are the one list of names: TrainConfig validates against their keys. Adding an
optimizer is one line in OPTIMIZERS (and a search space that suggests it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from trainables.cli import ConfigError

if TYPE_CHECKING:
    from trainables.config import TrainConfig

# name: (class, the TrainConfig fields it takes beside lr and weight_decay)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], tuple[str, ...]]] = {
    "sgd": (torch.optim.SGD, ("momentum", "nesterov")),
    "adam": (torch.optim.Adam, ()),
    "adamw": (torch.optim.AdamW, ()),
    "rmsprop": (torch.optim.RMSprop, ("momentum",)),
    "adagrad": (torch.optim.Adagrad, ()),
}

Schedule = Callable[[torch.optim.Optimizer, "TrainConfig"], lr_scheduler.LRScheduler]
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


def optimizers_taking(setting: str) -> list[str]:
    """The optimizers that take a setting such as momentum, in registry order."""
    return [name for name, (_, extra) in OPTIMIZERS.items() if setting in extra]


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    cls, extra = OPTIMIZERS[config.optimizer]
    return cls(params, lr=config.lr, weight_decay=config.weight_decay,
               **{name: getattr(config, name) for name in extra})


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

