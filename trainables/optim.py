"""Optimizers and learning-rate schedules, each found by name in its registry.

The registries are the one list of names: TrainConfig validates against their keys. Adding an
optimizer is one line in OPTIMIZERS (and a search space that suggests it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler

from trainables.config import TrainConfig

# name: (class, the TrainConfig fields it takes beside lr and weight_decay)
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], tuple[str, ...]]] = {
    "sgd": (torch.optim.SGD, ("momentum", "nesterov")),
    "adam": (torch.optim.Adam, ()),
    "adamw": (torch.optim.AdamW, ()),
    "rmsprop": (torch.optim.RMSprop, ("momentum",)),
    "adagrad": (torch.optim.Adagrad, ()),
}

Schedule = Callable[[torch.optim.Optimizer, TrainConfig], lr_scheduler.LRScheduler]
SCHEDULES: dict[str, Schedule | None] = {  # stepped once per epoch; "none": a constant lr
    "none": None,
    "step": lambda opt, c: lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma),
    "multistep": lambda opt, c: lr_scheduler.MultiStepLR(opt, milestones=c.milestones,
                                                         gamma=c.gamma),
    "exponential": lambda opt, c: lr_scheduler.ExponentialLR(opt, gamma=c.gamma),
    "cosine": lambda opt, c: lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs),
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
    """The schedule, stepped once per epoch; None for a constant learning rate."""
    make = SCHEDULES[config.schedule]
    return make(optimizer, config) if make is not None else None

