"""What one batch does: the task's own training_step and evaluation_step where it writes them,
else the default step of (inputs, targets) batches: inputs scaled as ToTensor scales images, the
model's outputs scored by the task's loss against the targets; and how its gradients become an
optimizer step (mixed precision, clipping, accumulation, a schedule stepped once a batch).

    def training_step(model, batch) -> loss            # a scalar tensor to minimise
    def evaluation_step(model, batch) -> (outputs, targets)   # what the loss and metric score

A batch is whatever the task's data give (a dict of tensors, a tuple of several inputs and a
target, any nesting), moved to the trial's device tensor by tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainables.config import ConfigError

if TYPE_CHECKING:
    from trainables.task import Task


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

    @classmethod
    def of(cls, task: Task, loss: Callable[[Any, Any], torch.Tensor] | None = None) -> Steps:
        """A task's steps: its hooks, and `loss` (default: the task's) for the default training
        step (a trial's is the task's loss with the config's label smoothing)."""
        return cls(loss if loss is not None else task.loss, task.training_step,
                   task.evaluation_step)

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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision's autocast on the device ("bf16", "fp16"); nothing for "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else
                          torch.float16)


@dataclass
class Stepping:
    """How a batch's gradients become an optimizer step: mixed precision (with a gradient scaler
    for fp16), clipping to max_grad_norm, accumulate batches a step, and the schedule stepped
    after each optimizer step (a "batch" schedule_interval)."""

    precision: str = "fp32"
    max_grad_norm: float = 0.0
    accumulate: int = 1
    scaler: Any = None  # torch.amp.GradScaler
    scheduler: Any = None

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.max_grad_norm:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
        skipped = False
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(optimizer)
            self.scaler.update()
            skipped = self.scaler.get_scale() < scale  # inf or NaN gradients: no step was taken
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not skipped:
            self.scheduler.step()


def check_precision(precision: str, device: torch.device) -> None:
    """A precision the device computes in; a ConfigError otherwise."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA device (its gradient scaler is CUDA's); "
                          f"this trial trains on {device.type}: use bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 is not supported by this GPU: use fp16")


@torch.no_grad()
def update_bn(model: nn.Module, feed: Iterable[Any], steps: Steps, device: torch.device,
              precision: str = "fp32") -> None:
    """Batch-norm statistics of `model` (SWA's average) computed again over the training data,
    as torch.optim.swa_utils.update_bn does, through the evaluation step (any batch); nothing for
    a model without batch norm."""
    norms = [m for m in model.modules()  # batch norm, and any norm that keeps running statistics
             if hasattr(m, "reset_running_stats") and getattr(m, "running_mean", None) is not None]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    was_training = model.training
    model.train()
    for batch in feed:
        with autocast(device, precision):
            steps.outputs(model, batch)
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)
