"""What one batch does: the task's own training_step and evaluation_step where it writes them,
else the default step of (inputs, targets) batches: inputs scaled as ToTensor scales images, the
model's outputs scored by the task's loss against the targets.

    def training_step(model, batch) -> loss            # a scalar tensor to minimise
    def evaluation_step(model, batch) -> (outputs, targets)   # what the loss and metric score

A batch is whatever the task's data give (a dict of tensors, a tuple of several inputs and a
target, any nesting), moved to the trial's device tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def inputs(batch: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images as float in [0, 1], scaled exactly as torchvision's ToTensor does;
    any other inputs as they are. Images stay uint8 in memory until batched: a quarter of the memory
    of a float copy in every trial."""
    return batch.to(torch.float32).div_(255) if batch.dtype == torch.uint8 else batch


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Every tensor of a batch of any nesting (tuples, lists, dicts) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):  # a dict, or a mapping such as Hugging Face's BatchEncoding
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        moved = [to_device(v, device, non_blocking) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def batch_size(batch: Any) -> int:
    """The samples in a batch: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch) if batch.dim() else 1
    values = batch.values() if isinstance(batch, Mapping) else \
        batch if isinstance(batch, (tuple, list)) else ()
    for value in values:
        found = batch_size(value)
        if found:
            return found
    return 0


def pair(batch: Any, hook: str) -> tuple[Any, Any]:
    """The default step's (inputs, targets); a TypeError naming the hook a batch of another shape
    needs."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    kind = type(batch).__name__ + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    raise TypeError(f"a batch is a {kind}, not (inputs, targets): write {hook}(model, batch) in "
                    "the task for batches like these")


@dataclass(frozen=True)
class Steps:
    """A task's training and evaluation steps (its hooks, or the default ones)."""

    loss: Callable[[Any, Any], torch.Tensor]  # the loss the default training step minimises
    training_step: Callable[[nn.Module, Any], torch.Tensor] | None = None
    evaluation_step: Callable[[nn.Module, Any], tuple[Any, Any]] | None = None

    def train(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The loss of one training batch."""
        if self.training_step is not None:
            return self.training_step(model, batch)
        x, y = pair(batch, "training_step")
        return self.loss(model(inputs(x)), y)

    def outputs(self, model: nn.Module, batch: Any) -> tuple[Any, Any]:
        """(outputs, targets) of one held-out batch."""
        if self.evaluation_step is not None:
            return self.evaluation_step(model, batch)
        x, y = pair(batch, "evaluation_step")
        return model(inputs(x)), y
