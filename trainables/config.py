"""The training configuration: one validated dataclass shared by final training and the Ray trainable."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any


# what best_config.json holds beside the config: parse_config(raw, ignore=BOOKKEEPING_KEYS)
# (best_epoch: in files written before the score was the last epoch's)
BOOKKEEPING_KEYS = ("trial_id", "val_accuracy", "val_accuracy_sd", "seeds", "best_epoch")
# what a tuning trial's config holds beside the settings: the search's baseline trial is marked
# "baseline": true, a confirmation run "confirms": the id of the search trial it trains again
BASELINE, CONFIRMS = "baseline", "confirms"
TRIAL_KEYS = (BASELINE, CONFIRMS)


class ConfigError(ValueError):
    """A configuration a user wrote that cannot be trained; the message is one line."""


@dataclass
class TrainConfig:
    optimizer: str
    lr: float
    dataset: str = "fashion_mnist"
    model: str = "mlp"
    batch_size: int = 64
    epochs: int = 10
    momentum: float = 0.0  # sgd and rmsprop only
    nesterov: bool = False  # sgd only, needs momentum > 0
    weight_decay: float = 0.0
    schedule: str = "none"
    gamma: float = 0.1  # decay factor of step, multistep and exponential schedules
    step_size: int = 5  # epochs between decays of the step schedule
    milestones: list[int] = field(default_factory=lambda: [5, 8])  # multistep schedule
    loss: str = "cross_entropy"
    shuffle: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choices() -> dict[str, tuple[str, ...]]:
    """The names each choice field allows: the keys of the registries that build them (imported
    here, not at the top: results/ imports this module for KEYS and need not import torch)."""
    from trainables.data import DATASETS
    from trainables.models import MODELS
    from trainables.optim import LOSSES, OPTIMIZERS, SCHEDULES

    registries = {"dataset": DATASETS, "model": MODELS, "optimizer": OPTIMIZERS,
                  "schedule": SCHEDULES, "loss": LOSSES}
    return {key: tuple(registry) for key, registry in registries.items()}

_POSITIVE = ("lr", "batch_size", "epochs", "gamma", "step_size")
_NON_NEGATIVE = ("momentum", "weight_decay")


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Convert a JSON value to the field's type, refusing lossy conversions (1.5 epochs, "abc" lr)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    # list[int]: the multistep milestones
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{name} must be a non-empty list of epochs, got {value!r}")
    return [_coerce(f"{name}[{i}]", v, int) for i, v in enumerate(value)]


# each field's type, from the annotations (list[int] -> list)
_TYPES = {name: typing.get_origin(kind) or kind
          for name, kind in typing.get_type_hints(TrainConfig).items()}
KEYS = tuple(f.name for f in fields(TrainConfig))


def parse_config(raw: dict[str, Any], ignore: tuple[str, ...] = ()) -> TrainConfig:
    """Validate a plain dict (a JSON file, a trial's config) into a TrainConfig.

    Keys in `ignore` are dropped silently (bookkeeping such as the epoch a run peaked at).
    Every error is a ConfigError naming the key and what is allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object of settings, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS) - set(ignore))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}")
    for required in ("optimizer", "lr"):
        if required not in raw:
            raise ConfigError(f"missing key {required!r}; the config needs at least optimizer and lr")
    values = {k: _coerce(k, raw[k], _TYPES[k]) for k in KEYS if k in raw}
    for key, allowed in choices().items():
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{key} {values[key]!r} is not one of: {', '.join(allowed)}")
    for key in _POSITIVE:
        if key in values and values[key] <= 0:
            raise ConfigError(f"{key} must be greater than 0, got {raw[key]!r}")
    for key in _NON_NEGATIVE:
        if key in values and values[key] < 0:
            raise ConfigError(f"{key} must be 0 or more, got {raw[key]!r}")
    config = TrainConfig(**values)
    _check_optimizer_settings(config)
    if any(m <= 0 for m in config.milestones) or config.milestones != sorted(config.milestones):
        raise ConfigError(f"milestones must be increasing epochs above 0, got {config.milestones}")
    return config


def _check_optimizer_settings(config: TrainConfig) -> None:
    """momentum and nesterov only for the optimizers that take them (trainables.optim says which)."""
    from trainables.optim import optimizers_taking

    nesterov, momentum = optimizers_taking("nesterov"), optimizers_taking("momentum")
    if config.nesterov and (config.optimizer not in nesterov or config.momentum <= 0):
        raise ConfigError(f"nesterov needs optimizer {' or '.join(map(repr, nesterov))} with "
                          "momentum greater than 0")
    if config.momentum and config.optimizer not in momentum:
        raise ConfigError(f"momentum applies to {' and '.join(momentum)} only, "
                          f"not {config.optimizer!r}")
