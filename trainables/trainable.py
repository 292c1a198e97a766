"""The Ray Tune trainable: the one function Ray calls for a trial. The rest of trainables/ is the
torch core it builds on (config, task, data, models, optim, loop), shared with final training.

Config in, epochs out, each epoch reported to Tune with a checkpoint, as in Ray's own examples.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.config import TRIAL_KEYS
from trainables.data import Part, for_tuning
from trainables.loop import Trainer, is_diverged
from trainables.memory import memory_mb, release_memory
from trainables.task import Task

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class TrialData:
    """What a trial trains and validates on. Tensor splits come through Ray's object store, put
    there once per experiment (tune.with_parameters); a map-style split is None here and built in
    the trial's own process by the task's load_data, from the absolute data folder, cut and split
    as the driver did."""

    parts: dict[str, Part | None]  # "train" and "val"
    data_dir: str
    val_size: int | None
    limit: int | None  # the smoke test's first samples

    def resolve(self, task: Task) -> dict[str, Part]:
        if all(part is not None for part in self.parts.values()):
            return self.parts
        built = for_tuning(task.splits(Path(self.data_dir)), self.val_size, self.limit)
        return {name: part if part is not None else built[name] for name, part in self.parts.items()}


def train_trial(config: dict[str, Any], task: Task, data: TrialData) -> None:
    """Train one trial's config for its epochs, reporting validation metrics after each epoch.

    A trial that was paused, migrated or retried resumes from its last checkpoint. A trial whose
    loss becomes NaN or infinite reports that epoch with diverged=True and ends.
    """
    try:
        train_config = task.parse(config, ignore=TRIAL_KEYS)
        device, workers = set_up_process()
        trainer = Trainer(train_config, task, device, workers)
        restore(trainer)
        parts = data.resolve(task)
        train, val = trainer.feed(parts["train"], train=True), trainer.feed(parts["val"], train=False)
        where = {"epochs_planned": train_config.epochs, "device": device,
                 "node_id": ray.get_runtime_context().get_node_id()}
        while trainer.epoch < train_config.epochs:
            metrics = trainer.fit_epoch(train, val)  # epoch, lr, train_loss, val_loss, val_<metric>
            diverged = is_diverged(metrics)
            report = {**metrics, "diverged": diverged, **where, **memory_mb()}
            if diverged:  # NaN weights are not worth a checkpoint
                tune.report(report)
                return
            with tempfile.TemporaryDirectory() as directory:
                torch.save(trainer.state_dict(), Path(directory) / STATE_FILE)
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        release_memory()  # Ray runs the next trial in this process


def set_up_process() -> tuple[str, int]:
    """Torch threads for the CPUs Ray gave the trial; the device it trains on, and the DataLoader
    workers a map-style split gets: one per CPU beyond the one that trains."""
    # Ray logs a line for every checkpoint of every epoch; the progress table says enough
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cpus = max(1, math.floor(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(cpus)
    return trial_device(), cpus - 1


def trial_device() -> str:
    """The GPU Ray assigned this trial, if any; Ray sets CUDA_VISIBLE_DEVICES to it."""
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def restore(trainer: Trainer) -> None:
    """Load the trial's last checkpoint into the trainer, when Tune has one (a resumed trial).
    One deleted meanwhile (an ended trial's, tuning.checkpoints, where a crash kept Tune from
    recording its end) is trained again from the start, not failed."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return
    try:
        with checkpoint.as_directory() as directory:
            state = load_state(Path(directory))
    except FileNotFoundError:
        logging.getLogger(__name__).warning("checkpoint %s is gone: training from the start",
                                            checkpoint.path)
        return
    trainer.load_state_dict(state)


def load_state(directory: Path) -> dict[str, Any]:
    """A trial's checkpoint, read onto the CPU: the random generators' states must stay there
    (Generator.set_state refuses a CUDA tensor), and the model and optimizer states move to the
    trial's device as Trainer.load_state_dict copies them into its parameters."""
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
