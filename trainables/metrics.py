"""The metric a task is scored by: a built-in one by name, or a function of the task's own.

A built-in metric is summed batch by batch on the device (no copy of the outputs is kept); a task's
own `metric(outputs, targets)` sees the outputs and targets of the whole held-out split at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# name: (mode, what it measures); "max": higher is better
BUILTIN = {
    "accuracy": ("max", "the share of samples whose largest output is the target class"),
    "rmse": ("min", "root mean squared error over every output"),
    "mae": ("min", "mean absolute error over every output"),
    "loss": ("min", "the task's loss, averaged over the samples"),
}
MODES = ("max", "min")


@dataclass(frozen=True)
class Metric:
    name: str  # reported as val_<name> while tuning, test_<name> by final training
    mode: str  # "max" or "min"
    fn: Callable[[Any, Any], Any] | None = None  # a task's own: fn(outputs, targets) -> number

    @property
    def better(self) -> str:
        return "higher is better" if self.mode == "max" else "lower is better"


def batch_total(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """What one batch adds to a built-in metric's running total (a tensor on the device)."""
    if name == "accuracy":
        return (outputs.argmax(1) == targets).sum()
    error = outputs.reshape(targets.shape) - targets  # (B, 1) outputs against (B,) targets
    return error.pow(2).sum() if name == "rmse" else error.abs().sum()


def finish(name: str, total: float, samples: int, elements: int) -> float:
    """A built-in metric from its running total over the split (not "loss": that is the loss)."""
    if name == "accuracy":
        return total / samples
    mean = total / elements
    return math.sqrt(mean) if name == "rmse" else mean
