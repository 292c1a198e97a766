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
from torch.optim import swa_utils
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from trainables.config import TrainConfig
from trainables.data import Pair, Part, is_pair
from trainables.metrics import Metric, batch_total, finish, loss_kind
from trainables.optim import build_optimizer, build_scheduler, configured, training_loss
from trainables.steps import (Stepping, Steps, autocast, check_precision, inputs, to_device,
                              update_bn)
from trainables.steps import batch_size as samples_in

if TYPE_CHECKING:
    from trainables.task import Task

__all__ = ["Feed", "Trainer", "evaluate", "inputs", "is_diverged", "train_epoch"]

EVAL_BATCH_SIZE = 2_000  # for tensors; a DataLoader evaluates at the training batch size
OnBatch = Callable[[int, torch.Tensor, int, int], None]  # (batch, loss, samples seen, epoch size)


class Feed:
    """One split ready to batch on a device: tensors moved there once, or a DataLoader over a
    map-style Dataset with `workers` worker processes, seeded by `generator` (its shuffling, and the
    seeds of its workers, so that a seed reproduces augmentation too), batched by the task's
    `collate_fn` where it has one, its workers started by `start` (multiprocessing's "fork",
    "forkserver" or "spawn"; the platform's default without); its batches of any nesting moved to
    the device."""

    def __init__(self, part: Part, device: torch.device | str, batch_size: int,
                 generator: torch.Generator | None = None, shuffle: bool = False,
                 workers: int = 0, collate_fn: Callable[[list], Any] | None = None,
                 start: str | None = None) -> None:
        self.device, self.batch_size = torch.device(device), batch_size
        self.generator = generator if shuffle else None
        if is_pair(part):
            self.data: Pair | DataLoader = (part[0].to(self.device), part[1].to(self.device))
        else:
            self.data = DataLoader(part, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                   num_workers=workers, pin_memory=self.device.type == "cuda",
                                   collate_fn=collate_fn,
                                   multiprocessing_context=start if workers else None)

    def __len__(self) -> int:
        return len(self.data[1]) if isinstance(self.data, tuple) else len(self.data.dataset)

    @property
    def batches(self) -> int:
        return math.ceil(len(self) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.data, DataLoader):
            for batch in self.data:
                yield to_device(batch, self.device, non_blocking=True)
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
    loss_fn: Callable[..., torch.Tensor] | Steps,
    data: Feed | Pair,
    batch_size: int | None = None,
    on_batch: OnBatch | None = None,
    stepping: Stepping | None = None,
) -> dict[str, float]:
    """One pass over the data, in the Feed's order: each batch's loss (`loss_fn(outputs,
    targets)`, or a task's Steps) backward, an optimizer step every `stepping.accumulate` batches
    and after the last. Returns the mean of the per-batch training losses, as the tutorial
    averages them."""
    model.train()
    feed = as_feed(data, batch_size or 64)
    steps = loss_fn if isinstance(loss_fn, Steps) else Steps(loss_fn)
    stepping = stepping or Stepping()
    every, last = stepping.accumulate, feed.batches - 1
    total = torch.zeros((), device=feed.device)
    seen = batches = 0
    for batch, data_batch in enumerate(feed):
        with autocast(feed.device, stepping.precision):
            loss = steps.train(model, data_batch)
        scaled = loss / every if every > 1 else loss
        (stepping.scaler.scale(scaled) if stepping.scaler is not None else scaled).backward()
        if every == 1 or (batch + 1) % every == 0 or batch == last:
            stepping.step(model, optimizer)
        total += loss.detach().float()  # no .item() per batch: it would sync a GPU every step
        seen, batches = seen + samples_in(data_batch), batches + 1
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
    steps: Steps | None = None,
    precision: str = "fp32",
) -> dict[str, float]:
    """Average loss per sample over the data, and the metric (accuracy by default) under its name,
    of the (outputs, targets) the evaluation step gives (`steps`; the default step without). A
    loss reduced by its mean counts each batch by its size, so that a short last batch weighs what
    its samples weigh."""
    model.eval()
    metric = metric or Metric("accuracy", "max")
    steps = steps or Steps(loss_fn)
    builtin = metric.fn is None and metric.name != "loss"
    kind = loss_kind(loss_fn)
    loss_sum, total = None, None
    samples = count = 0
    kept: list[tuple[Any, Any]] = []
    feed = as_feed(data, batch_size)
    for batch in feed:
        with autocast(feed.device, precision):
            out, yb = steps.outputs(model, batch)
            n = samples_in(yb)
            loss = loss_fn(out, yb).float() * n
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            out = out.float()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        if builtin:
            part, scored = batch_total(metric.name, out, yb, kind)
            total, count = (part if total is None else total + part), count + scored
        elif metric.fn is not None:
            kept.append((to_device(out, torch.device("cpu")), to_device(yb, torch.device("cpu"))))
        samples += n
    scores = {"loss": loss_sum.item() / samples}
    if builtin:
        scores[metric.name] = finish(metric.name, total.item(), count)
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
    epoch at a time: the task's steps (trainables.steps), its configure_optimizers where it has
    one, mixed precision, clipping, accumulation, and stochastic weight averaging (SWA: from epoch
    swa_start on, the average of each epoch's weights is the model evaluated, checkpointed and
    kept, its batch-norm statistics computed again on the training data)."""

    def __init__(self, config: TrainConfig, task: Task, device: torch.device | str = "cpu",
                 workers: int = 0) -> None:
        self.config, self.task = config, task
        self.device = torch.device(device)
        check_precision(config.precision, self.device)
        # weights and Adam's moments that weight decay drives past float32's smallest normal
        # number (1.2e-38) turn denormal, and the CPU slows down on each of them, an Adam trial's
        # epochs many times over (benchmarks/denormals.py); flushed to 0 they cost nothing, and
        # change the run from there on as a change of seed would
        torch.set_flush_denormal(True)
        self.workers = workers  # DataLoader worker processes for map-style splits
        seed_everything(config.seed)  # the same config starts from the same weights
        self.model = task.build_model(config.to_dict()).to(self.device)
        hook = task.configure_optimizers
        if hook is not None:
            self.optimizer, self.scheduler, interval = configured(hook, self.model, config)
        else:
            self.optimizer, self.scheduler, interval = build_optimizer(
                self.model.parameters(), config), None, config.schedule_interval
        self.interval = interval
        self._built = hook is not None and self.scheduler is not None  # the schedule is built
        if not self._built and interval == "epoch":
            self.scheduler, self._built = build_scheduler(self.optimizer, config), True
        self._pending: dict[str, Any] | None = None  # a state to load once the schedule is built
        self.steps = Steps.of(task, training_loss(task.loss, config))
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.swa = swa_utils.AveragedModel(self.model) if config.swa_start else None
        # SWALR steps from swa_start on, the lr there annealed to swa_lr within an epoch
        self.swa_scheduler = swa_utils.SWALR(self.optimizer, swa_lr=config.swa_lr,
                                             anneal_epochs=1) if config.swa_lr else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0  # epochs completed

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def averaging(self) -> bool:
        """Whether SWA has begun: the averaged model is the one scored."""
        return self.swa is not None and self.epoch >= self.config.swa_start

    @property
    def scored_model(self) -> nn.Module:
        """The model evaluated and kept: SWA's average once it has begun, else the model."""
        return self.swa.module if self.averaging else self.model

    def feed(self, part: Part, train: bool) -> Feed:
        """The split ready to batch: for training, shuffled by the trainer's seeded generator
        (when the config shuffles); for evaluation in stored order."""
        how = {"workers": self.workers, "collate_fn": self.task.collate_fn,
               "start": self.task.worker_start}
        if train:
            return Feed(part, self.device, self.config.batch_size, self.generator,
                        shuffle=self.config.shuffle, **how)
        batch = EVAL_BATCH_SIZE if is_pair(part) else self.config.batch_size
        # its own generator: evaluation draws nothing from the training's random streams
        return Feed(part, self.device, batch, torch.Generator().manual_seed(self.config.seed),
                    **how)

    def _build_schedule(self, train: Feed) -> None:
        """A schedule stepped once a batch, built once the optimizer steps an epoch are known;
        then the state a checkpoint held, where one was loaded before."""
        if not self._built:
            steps = math.ceil(train.batches / self.config.accumulate_grad_batches)
            self.scheduler, self._built = build_scheduler(self.optimizer, self.config, steps), True
        if self._pending is not None:
            self._load_steps(self._pending)
            self._pending = None

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
        self._build_schedule(train)
        lr, config = self.lr, self.config
        per_batch = self.scheduler if self.interval == "batch" and not (
            self.averaging and self.swa_scheduler is not None) else None
        stepping = Stepping(config.precision, config.max_grad_norm,
                            config.accumulate_grad_batches, self.scaler, per_batch)
        metrics = train_epoch(self.model, self.optimizer, self.steps, train, on_batch=on_batch,
                              stepping=stepping)
        self.epoch += 1
        if self.averaging:
            self.swa.update_parameters(self.model)
            update_bn(self.swa.module, train, self.steps, train.device, config.precision)
        scores = (evaluate(self.scored_model, self.task.loss, holdout, self.task.metric,
                           steps=self.steps, precision=config.precision)
                  if holdout is not None else {})
        self._step_schedule(scores.get("loss", metrics["train_loss"]))
        return {"epoch": self.epoch, "lr": lr, **metrics,
                **{f"{holdout_name}_{key}": value for key, value in scores.items()},
                "seconds": time.perf_counter() - start}

    def _step_schedule(self, loss: float) -> None:
        """After an epoch: SWALR from swa_start on where the config sets swa_lr, else the schedule
        (ReduceLROnPlateau on the epoch's validation loss), where it steps once an epoch."""
        if self.averaging and self.swa_scheduler is not None:
            self.swa_scheduler.step()
        elif isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(loss if math.isfinite(loss) else math.inf)
        elif self.scheduler is not None and self.interval == "epoch":
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "swa_scheduler": self.swa_scheduler.state_dict() if self.swa_scheduler else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "generator": self.generator.get_state(),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        if self.swa is not None and state.get("swa") is not None:
            self.swa.load_state_dict(state["swa"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        if self._built:
            self._load_steps(state)
        else:  # a schedule stepped once a batch is built at the first epoch
            self._pending = state

    def _load_steps(self, state: dict[str, Any]) -> None:
        """The optimizer's and the schedules' states, after the schedules are built (building one
        sets the optimizer's learning rate)."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.swa_scheduler is not None:
            self.swa_scheduler.load_state_dict(state["swa_scheduler"])


def is_diverged(metrics: dict[str, float]) -> bool:
    """Whether any of the epoch's losses (train_loss, val_loss, ...) is NaN or infinite."""
    return not all(math.isfinite(value) for key, value in metrics.items() if key.endswith("loss"))
