"""The Ray Tune trainable: the one function Ray calls for a trial. The rest of trainables/ is the
torch core it builds on (config, data, models, optim, loop), shared with final training.

Config in, epochs out, each epoch reported to Tune with a checkpoint, as in Ray's own examples.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables.config import TRIAL_KEYS, parse_config
from trainables.data import Split
from trainables.loop import Trainer, is_diverged, to_device
from trainables.memory import memory_mb, release_memory

STATE_FILE = "state.pt"


def train_trial(config: dict[str, Any], data: dict[str, Split]) -> None:
    """Train one trial's config for its epochs, reporting validation metrics after each epoch.

    `data` holds the "train" and "val" splits, put in Ray's object store once per experiment
    by tune.with_parameters. A trial that was paused, migrated or retried resumes from its
    last checkpoint. A trial whose loss becomes NaN or infinite reports that epoch with
    diverged=True and ends.
    """
    try:
        train_config = parse_config(config, ignore=TRIAL_KEYS)
        device = set_up_process()
        trainer = Trainer(train_config, device)
        restore(trainer)
        train_xy, val_xy = to_device(data["train"], device), to_device(data["val"], device)
        where = {"epochs_planned": train_config.epochs, "device": device,
                 "node_id": ray.get_runtime_context().get_node_id()}
        while trainer.epoch < train_config.epochs:
            metrics = trainer.fit_epoch(train_xy, val_xy)  # epoch, lr, train_loss, val_loss, ...
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


def set_up_process() -> str:
    """Torch threads for the CPUs Ray gave the trial; the device it trains on."""
    # Ray logs a line for every checkpoint of every epoch; the progress table says enough
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, math.floor(cpus)))
    return trial_device()


def trial_device() -> str:
    """The GPU Ray assigned this trial, if any; Ray sets CUDA_VISIBLE_DEVICES to it."""
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def restore(trainer: Trainer) -> None:
    """Load the trial's last checkpoint into the trainer, when Tune has one (a resumed trial)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_state_dict(load_state(Path(directory)))


def load_state(directory: Path) -> dict[str, Any]:
    """A trial's checkpoint, read onto the CPU: the shuffling generator's state must stay there
    (Generator.set_state refuses a CUDA tensor), and the model and optimizer states move to the
    trial's device as Trainer.load_state_dict copies them into its parameters."""
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
