"""The epoch loop: the tutorial's train/test semantics over batches sliced from in-memory tensors."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainables.config import TrainConfig
from trainables.data import Split
from trainables.models import build_model
from trainables.optim import build_loss, build_optimizer, build_scheduler

EVAL_BATCH_SIZE = 2_000
OnBatch = Callable[[int, torch.Tensor, int, int], None]  # (batch, loss, samples seen, epoch size)


def to_device(split: Split, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) and labels on the device; images stay uint8 until batched (see inputs),
    a quarter of the memory of a float copy in every trial."""
    return split.images.to(device).unsqueeze(1), split.labels.to(device)


def inputs(images: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images as float in [0, 1], scaled exactly as torchvision's ToTensor does."""
    return images.to(torch.float32).div_(255) if images.dtype == torch.uint8 else images


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    generator: torch.Generator | None = None,
    on_batch: OnBatch | None = None,
) -> dict[str, float]:
    """One pass over the data; shuffled with `generator` when given, in stored order otherwise.

    Returns the mean of the per-batch training losses, as the tutorial averages them.
    """
    model.train()
    x, y = data
    size = len(y)
    # shuffled batches are gathered by index, batch by batch: no shuffled copy of the whole set
    order = torch.randperm(size, generator=generator).to(x.device) if generator is not None else None
    num_batches = math.ceil(size / batch_size)
    total = torch.zeros((), device=x.device)
    for batch in range(num_batches):
        rows = slice(batch * batch_size, (batch + 1) * batch_size)
        xb, yb = (x[rows], y[rows]) if order is None else (x[order[rows]], y[order[rows]])
        loss = loss_fn(model(inputs(xb)), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.detach()  # no .item() per batch: it would sync a GPU every step
        if on_batch is not None:
            on_batch(batch, loss.detach(), batch * batch_size + len(yb), size)
    return {"train_loss": (total / num_batches).item()}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float]:
    """Average loss per sample and accuracy (correct / size) over the data."""
    model.eval()
    x, y = data
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(y), batch_size):
        logits = model(inputs(x[start:start + batch_size]))
        target = y[start:start + batch_size]
        loss_sum += loss_fn(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    return {"loss": loss_sum.item() / len(y), "accuracy": correct.item() / len(y)}


class Trainer:
    """Model, optimizer, schedule and shuffling state built from one config, stepped an epoch at a time."""

    def __init__(self, config: TrainConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)  # the same config starts from the same weights
        self.model = build_model(config.model).to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.loss_fn = build_loss(config.loss)
        self.generator = torch.Generator().manual_seed(config.seed) if config.shuffle else None
        self.epoch = 0  # epochs completed

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def fit_epoch(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        holdout: tuple[torch.Tensor, torch.Tensor],
        on_batch: OnBatch | None = None,
        holdout_name: str = "val",
    ) -> dict[str, float]:
        """Train one epoch, evaluate on the held-out data, step the schedule; return the epoch's
        metrics under the names callers report: epoch, lr, train_loss, {holdout_name}_loss,
        {holdout_name}_accuracy and seconds."""
        start = time.perf_counter()
        lr = self.lr
        metrics = train_epoch(self.model, self.optimizer, self.loss_fn, train, self.config.batch_size,
                              self.generator, on_batch)
        scores = evaluate(self.model, self.loss_fn, holdout)
        if self.scheduler is not None:
            self.scheduler.step()
        self.epoch += 1
        return {"epoch": self.epoch, "lr": lr, **metrics,
                **{f"{holdout_name}_{key}": value for key, value in scores.items()},
                "seconds": time.perf_counter() - start}

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "generator": self.generator.get_state() if self.generator else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])


def is_diverged(metrics: dict[str, float]) -> bool:
    """Whether any of the epoch's losses (train_loss, val_loss, ...) is NaN or infinite."""
    return not all(math.isfinite(value) for key, value in metrics.items() if key.endswith("loss"))
