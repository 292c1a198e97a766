"""The training configuration: one validated dataclass shared by final training and the Ray trainable.

The training core's own settings (optimizer, lr, batch size, epochs, schedule, ...) are its fields;
the task's own hyperparameters (the model's width, dropout, ...) ride along in `params`, checked
against the names the task and its space know, and reach the task's build_model.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from trainables.cli import ConfigError


# what best_config.json holds beside the config: the task it trains, the trial it comes from, the
# run's metric and its confirmed score (val_<metric>, val_<metric>_sd, seeds: `bookkeeping`)
BOOKKEEPING_KEYS = ("task", "trial_id", "metric", "mode", "seeds")
# what a tuning trial's config holds beside the settings: the search's baseline trial is marked
# "baseline": true, a confirmation run "confirms": the id of the search trial it trains again
BASELINE, CONFIRMS = "baseline", "confirms"
TRIAL_KEYS = (BASELINE, CONFIRMS)


@dataclass
class TrainConfig:
    optimizer: str
    lr: float
    batch_size: int = 64
    epochs: int = 10
    momentum: float = 0.0  # sgd and rmsprop only
    nesterov: bool = False  # sgd only, needs momentum > 0
    weight_decay: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0  # a linear warm-up to lr before the schedule, which runs over the rest
    gamma: float = 0.1  # decay factor of step, multistep and exponential schedules
    step_size: int = 5  # epochs between decays of the step schedule
    milestones: list[int] = field(default_factory=lambda: [5, 8])  # multistep schedule
    label_smoothing: float = 0.0  # of the default cross-entropy loss, in training only
    shuffle: bool = True
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # the task's own hyperparameters

    def to_dict(self) -> dict[str, Any]:
        """One flat dict, as a trial's config holds it: the core's settings and the task's."""
        core = asdict(self)
        params = core.pop("params")
        return {**core, **params}


def bookkeeping(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a best_config.json that are not settings: BOOKKEEPING_KEYS and the score."""
    metric = raw.get("metric")
    return BOOKKEEPING_KEYS + ((metric, f"{metric}_sd") if isinstance(metric, str) else ())


# the optimizers by name, each with the settings it takes beside lr and weight_decay, and the
# learning-rate schedules by name: the one list of the names a config may give
# (trainables.optim builds each)
OPTIMIZER_SETTINGS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "nesterov"), "adam": (), "adamw": (), "rmsprop": ("momentum",),
    "adagrad": ()}
SCHEDULE_NAMES = ("none", "step", "multistep", "exponential", "cosine", "onecycle")


def optimizers_taking(setting: str) -> list[str]:
    """The optimizers that take a setting such as momentum, in their order above."""
    return [name for name, takes in OPTIMIZER_SETTINGS.items() if setting in takes]


def choices() -> dict[str, tuple[str, ...]]:
    """The names each choice field allows."""
    return {"optimizer": tuple(OPTIMIZER_SETTINGS), "schedule": SCHEDULE_NAMES}

_POSITIVE = ("lr", "batch_size", "epochs", "gamma", "step_size")
_NON_NEGATIVE = ("momentum", "weight_decay", "warmup_epochs", "label_smoothing")


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


# each core field's type, from the annotations (list[int] -> list)
_TYPES = {name: typing.get_origin(kind) or kind
          for name, kind in typing.get_type_hints(TrainConfig).items() if name != "params"}
KEYS = tuple(_TYPES)  # the core's settings, in the dataclass's order


def _task_params(raw: dict[str, Any], hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The task's own hyperparameters: its defaults, then the values given, each converted to its
    default's type where the default is a number, a string or true/false."""
    params = {k: v for k, v in hyperparameters.items() if v is not None}
    for key in hyperparameters:
        if key in raw:
            default = hyperparameters[key]
            kind = type(default) if isinstance(default, (bool, int, float, str)) else None
            params[key] = _coerce(key, raw[key], kind) if kind else raw[key]
    return params


def parse_config(raw: dict[str, Any], ignore: tuple[str, ...] = (),
                 hyperparameters: Mapping[str, Any] | None = None) -> TrainConfig:
    """Validate a plain dict (a JSON file, a trial's config) into a TrainConfig.

    Keys in `ignore` are dropped silently (bookkeeping such as the trial a config comes from).
    `hyperparameters` are the task's own, by name, with their defaults (None: no default): the
    only keys allowed beside the core's. Every error is a ConfigError naming the key and what is
    allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object of settings, got {type(raw).__name__}")
    hyperparameters = {k: v for k, v in (hyperparameters or {}).items() if k not in KEYS}
    unknown = sorted(set(raw) - set(KEYS) - set(hyperparameters) - set(ignore))
    if unknown:
        own = f"; the task's own: {', '.join(hyperparameters)}" if hyperparameters else ""
        raise ConfigError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}{own}")
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
    config = TrainConfig(**values, params=_task_params(raw, hyperparameters))
    _check_optimizer_settings(config)
    _check_schedule_settings(config)
    if any(m <= 0 for m in config.milestones) or config.milestones != sorted(config.milestones):
        raise ConfigError(f"milestones must be increasing epochs above 0, got {config.milestones}")
    return config


def _check_optimizer_settings(config: TrainConfig) -> None:
    """momentum and nesterov only for the optimizers that take them (trainables.optim says which)."""
    nesterov, momentum = optimizers_taking("nesterov"), optimizers_taking("momentum")
    if config.nesterov and (config.optimizer not in nesterov or config.momentum <= 0):
        raise ConfigError(f"nesterov needs optimizer {' or '.join(map(repr, nesterov))} with "
                          "momentum greater than 0")
    if config.momentum and config.optimizer not in momentum:
        raise ConfigError(f"momentum applies to {' and '.join(momentum)} only, "
                          f"not {config.optimizer!r}")


def _check_schedule_settings(config: TrainConfig) -> None:
    """A warm-up shorter than the run, for the schedules that do not warm up by themselves; a
    label smoothing below 1."""
    if config.warmup_epochs and config.warmup_epochs >= config.epochs:
        raise ConfigError(f"warmup_epochs must be fewer than epochs ({config.epochs}), got "
                          f"{config.warmup_epochs}")
    if config.warmup_epochs and config.schedule == "onecycle":
        raise ConfigError("warmup_epochs does not apply to the onecycle schedule, which warms up "
                          "by itself")
    if config.label_smoothing >= 1:
        raise ConfigError(f"label_smoothing must be below 1, got {config.label_smoothing!r}")
