"""The epoch loop: the tutorial's train/test semantics for any task, over batches sliced from
in-memory tensors or read from a map-style Dataset through a DataLoader."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from trainables.config import TrainConfig
from trainables.data import Pair, Part, is_pair
from trainables.metrics import Metric, batch_total, finish
from trainables.optim import build_optimizer, build_scheduler, training_loss

if TYPE_CHECKING:
    from trainables.task import Task

EVAL_BATCH_SIZE = 2_000  # for tensors; a DataLoader evaluates at the training batch size
OnBatch = Callable[[int, torch.Tensor, int, int], None]  # (batch, loss, samples seen, epoch size)


def inputs(batch: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images as float in [0, 1], scaled exactly as torchvision's ToTensor does;
    any other inputs as they are. Images stay uint8 in memory until batched: a quarter of the memory
    of a float copy in every trial."""
    return batch.to(torch.float32).div_(255) if batch.dtype == torch.uint8 else batch


class Feed:
    """One split ready to batch on a device: tensors moved there once, or a DataLoader over a
    map-style Dataset with `workers` worker processes, seeded by `generator` (its shuffling, and the
    seeds of its workers, so that a seed reproduces augmentation too)."""

    def __init__(self, part: Part, device: torch.device | str, batch_size: int,
                 generator: torch.Generator | None = None, shuffle: bool = False,
                 workers: int = 0) -> None:
        self.device, self.batch_size = torch.device(device), batch_size
        self.generator = generator if shuffle else None
        if is_pair(part):
            self.data: Pair | DataLoader = (part[0].to(self.device), part[1].to(self.device))
        else:
            self.data = DataLoader(part, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                   num_workers=workers, pin_memory=self.device.type == "cuda")

    def __len__(self) -> int:
        return len(self.data[1]) if isinstance(self.data, tuple) else len(self.data.dataset)

    def __iter__(self) -> Iterator[Pair]:
        if isinstance(self.data, DataLoader):
            for x, y in self.data:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        x, y = self.data
        size = len(y)
        # shuffled batches are gathered by index, batch by batch: no shuffled copy of the whole set
        order = (torch.randperm(size, generator=self.generator).to(x.device)
                 if self.generator is not None else None)
        for start in range(0, size, self.batch_size):
            rows = slice(start, start + self.batch_size)
            yield (x[rows], y[rows]) if order is None else (x[order[rows]], y[order[rows]])


def as_feed(data: Feed | Pair, batch_size: int) -> Feed:
    """A Feed of tensors already on their device, unshuffled (for callers holding plain tensors)."""
    return data if isinstance(data, Feed) else Feed(data, data[0].device, batch_size)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor],
    data: Feed | Pair,
    batch_size: int | None = None,
    on_batch: OnBatch | None = None,
) -> dict[str, float]:
    """One pass over the data, in the Feed's order. Returns the mean of the per-batch training
    losses, as the tutorial averages them."""
    model.train()
    feed = as_feed(data, batch_size or 64)
    total = torch.zeros((), device=feed.device)
    seen = batches = 0
    for batch, (xb, yb) in enumerate(feed):
        loss = loss_fn(model(inputs(xb)), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += loss.detach()  # no .item() per batch: it would sync a GPU every step
        seen, batches = seen + len(yb), batches + 1
        if on_batch is not None:
            on_batch(batch, loss.detach(), seen, len(feed))
    return {"train_loss": (total / batches).item() if batches else math.nan}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Feed | Pair,
    metric: Metric | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, float]:
    """Average loss per sample over the data, and the metric (accuracy by default) under its name.
    A loss reduced by its mean counts each batch by its size, so that a short last batch weighs
    what its samples weigh."""
    model.eval()
    metric = metric or Metric("accuracy", "max")
    builtin = metric.fn is None and metric.name != "loss"
    loss_sum, total = None, None
    samples = elements = 0
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    for xb, yb in as_feed(data, batch_size):
        out = model(inputs(xb))
        loss = loss_fn(out, yb) * len(yb)
        loss_sum = loss if loss_sum is None else loss_sum + loss
        if builtin:
            part = batch_total(metric.name, out, yb)
            total = part if total is None else total + part
        elif metric.fn is not None:
            kept.append((out.cpu(), yb.cpu()))
        samples, elements = samples + len(yb), elements + yb.numel()
    scores = {"loss": loss_sum.item() / samples}
    if builtin:
        scores[metric.name] = finish(metric.name, total.item(), samples, elements)
    elif metric.fn is not None:
        outputs, targets = (torch.cat(t) for t in zip(*kept))
        scores[metric.name] = float(metric.fn(outputs, targets))
    return scores


def rng_state() -> dict[str, Any]:
    """The random number generators a trial draws from besides its shuffling generator: torch's
    (dropout, augmentation in the trial's own process), Python's and NumPy's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
            "python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class Trainer:
    """Model, optimizer, schedule and shuffling state built from one config and a task, stepped an
    epoch at a time."""

    def __init__(self, config: TrainConfig, task: Task, device: torch.device | str = "cpu",
                 workers: int = 0) -> None:
        self.config, self.task = config, task
        self.device = torch.device(device)
        # weights and Adam's moments that weight decay drives past float32's smallest normal
        # number (1.2e-38) turn denormal, and the CPU slows down on each of them, an Adam trial's
        # epochs many times over (benchmarks/denormals.py); flushed to 0 they cost nothing, and
        # change the run from there on as a change of seed would
        torch.set_flush_denormal(True)
        self.workers = workers  # DataLoader worker processes for map-style splits
        seed_everything(config.seed)  # the same config starts from the same weights
        self.model = task.build_model(config.to_dict()).to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.loss = training_loss(task.loss, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0  # epochs completed

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def feed(self, part: Part, train: bool) -> Feed:
        """The split ready to batch: for training, shuffled by the trainer's seeded generator
        (when the config shuffles); for evaluation in stored order."""
        if train:
            return Feed(part, self.device, self.config.batch_size, self.generator,
                        shuffle=self.config.shuffle, workers=self.workers)
        batch = EVAL_BATCH_SIZE if is_pair(part) else self.config.batch_size
        # its own generator: evaluation draws nothing from the training's random streams
        return Feed(part, self.device, batch, torch.Generator().manual_seed(self.config.seed),
                    workers=self.workers)

    def fit_epoch(
        self,
        train: Feed,
        holdout: Feed | None,
        on_batch: OnBatch | None = None,
        holdout_name: str = "val",
    ) -> dict[str, float]:
        """Train one epoch, evaluate on the held-out data (where there is some), step the schedule;
        return the epoch's metrics under the names callers report: epoch, lr, train_loss,
        {holdout_name}_loss, {holdout_name}_{metric} and seconds."""
        start = time.perf_counter()
        lr = self.lr
        metrics = train_epoch(self.model, self.optimizer, self.loss, train, on_batch=on_batch)
        scores = (evaluate(self.model, self.task.loss, holdout, self.task.metric)
                  if holdout is not None else {})
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
            "generator": self.generator.get_state(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])


def is_diverged(metrics: dict[str, float]) -> bool:
    """Whether any of the epoch's losses (train_loss, val_loss, ...) is NaN or infinite."""
    return not all(math.isfinite(value) for key, value in metrics.items() if key.endswith("loss"))
