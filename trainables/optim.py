"""Optimizers, learning-rate schedules and losses built from a TrainConfig."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from trainables.config import TrainConfig


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    lr, wd = config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The schedule, stepped once per epoch; None for a constant learning rate."""
    sched = torch.optim.lr_scheduler
    if config.schedule == "none":
        return None
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.schedule == "multistep":
        return sched.MultiStepLR(optimizer, milestones=config.milestones, gamma=config.gamma)
    if config.schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=config.gamma)
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def _nll_of_log_softmax(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.nll_loss(F.log_softmax(logits, dim=1), target, reduction=reduction)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": F.cross_entropy,
    "nll": _nll_of_log_softmax,  # the MNIST example's log_softmax + NLL
}


def build_loss(name: str) -> Callable[..., torch.Tensor]:
    """A loss taking (logits, targets, reduction="mean")."""
    return LOSSES[name]
