"""The training configuration: one validated dataclass shared by final training and the Ray trainable.

The training core's own settings (optimizer, lr, batch size, epochs, schedule, ...) are its fields;
the task's own hyperparameters (the model's width, dropout, ...) ride along in `params`, checked
against the names the task and its space know, and reach the task's build_model.
"""

from __future__ import annotations

import functools
import inspect
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
    schedule_interval: str = "epoch"  # the schedule steps once an "epoch" or once a "batch"
    precision: str = "fp32"  # "bf16" (CPU or GPU) or "fp16" (CUDA, with a gradient scaler)
    max_grad_norm: float = 0.0  # gradients clipped to this norm; 0: not clipped
    accumulate_grad_batches: int = 1  # batches whose gradients make one optimizer step
    swa_start: int = 0  # stochastic weight averaging from this epoch on; 0: none
    swa_lr: float = 0.0  # SWALR's learning rate from swa_start on; 0: the schedule goes on
    params: dict[str, Any] = field(default_factory=dict)  # the task's own hyperparameters
    # the optimizer's and the schedule's other keyword arguments (optimizer_arguments)
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    schedule_args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """One flat dict, as a trial's config holds it: the core's settings, the optimizer's and
        the schedule's other arguments, and the task's."""
        core = asdict(self)
        extra = {**core.pop("schedule_args"), **core.pop("optimizer_args"), **core.pop("params")}
        return {**core, **extra}


def bookkeeping(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a best_config.json that are not settings: BOOKKEEPING_KEYS and the score."""
    metric = raw.get("metric")
    return BOOKKEEPING_KEYS + ((metric, f"{metric}_sd") if isinstance(metric, str) else ())


# The optimizers a config may name: torch.optim's, each by its name in lower case, these five
# first; its keyword arguments are config keys (optimizer_arguments). The schedules: six by a short
# name (built by trainables.optim) and torch.optim.lr_scheduler's by their class names.
FIRST_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULE_NAMES = ("none", "step", "multistep", "exponential", "cosine", "onecycle")
# what a config cannot build: a task's configure_optimizers(model, params) can
NEEDS_HOOK = {
    "lbfgs": "steps with a closure", "sparseadam": "takes sparse gradients only",
    "muon": "takes 2-D weights only", "LambdaLR": "takes a function",
    "MultiplicativeLR": "takes a function", "SequentialLR": "takes schedules",
    "ChainedScheduler": "takes schedules"}
INTERVALS, PRECISIONS = ("epoch", "batch"), ("fp32", "bf16", "fp16")
# the core's fields that are also a schedule class's arguments of the same name
SHARED_SCHEDULE_ARGS = ("gamma", "step_size", "milestones")


@functools.cache
def optimizer_classes() -> dict[str, type]:
    """torch.optim's optimizers by name in lower case, FIRST_OPTIMIZERS first."""
    import torch

    found = {name.lower(): getattr(torch.optim, name) for name in torch.optim.__all__}
    found = {name: cls for name, cls in found.items() if isinstance(cls, type)
             and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    return {name: found[name] for name in (*FIRST_OPTIMIZERS, *sorted(found))
            if name in found and name not in NEEDS_HOOK}


@functools.cache
def schedule_classes() -> dict[str, type]:
    """torch.optim.lr_scheduler's schedules by class name (ReduceLROnPlateau too)."""
    from torch.optim import lr_scheduler

    return {name: cls for name, cls in sorted(vars(lr_scheduler).items())
            if isinstance(cls, type) and not name.startswith("_") and name not in NEEDS_HOOK
            and (issubclass(cls, lr_scheduler.LRScheduler) or name == "ReduceLROnPlateau")
            and cls is not lr_scheduler.LRScheduler}


def _arguments(cls: type, skip: tuple[str, ...]) -> dict[str, Any]:
    """A constructor's keyword arguments and their defaults (inspect.Parameter.empty: none)."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@functools.cache
def optimizer_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments of optimizer `name` beside params and lr, with their defaults."""
    return _arguments(optimizer_classes()[name], ("params", "lr"))


@functools.cache
def schedule_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments of a schedule class, beside the optimizer, with their defaults; none
    for the short names, whose settings are the core's."""
    cls = schedule_classes().get(name)
    return _arguments(cls, ("optimizer", "last_epoch", "verbose")) if cls else {}


def optimizers_taking(setting: str) -> list[str]:
    """The optimizers that take a setting such as momentum, in their order."""
    return [name for name in optimizer_classes() if setting in optimizer_arguments(name)]


def choices() -> dict[str, tuple[str, ...]]:
    """The names each choice field allows."""
    return {"optimizer": tuple(optimizer_classes()),
            "schedule": SCHEDULE_NAMES + tuple(schedule_classes()),
            "schedule_interval": INTERVALS, "precision": PRECISIONS}


_POSITIVE = ("lr", "batch_size", "epochs", "gamma", "step_size", "accumulate_grad_batches")
_NON_NEGATIVE = ("momentum", "weight_decay", "warmup_epochs", "label_smoothing", "max_grad_norm",
                 "swa_start", "swa_lr")


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
_EXTRA = ("params", "optimizer_args", "schedule_args")
_TYPES = {name: typing.get_origin(kind) or kind
          for name, kind in typing.get_type_hints(TrainConfig).items() if name not in _EXTRA}
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


def _coerce_argument(name: str, value: Any, default: Any) -> Any:
    """An optimizer's or a schedule's keyword argument, typed as its default is (a tuple such as
    Adam's betas from a JSON list); as given where it has no default or None."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{name} must be a list of {len(default)} numbers, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, float) for i, v in enumerate(value))
    if isinstance(default, (bool, str)):
        return _coerce(name, value, type(default))
    if isinstance(default, (int, float)):  # an int default (weight_decay=0) takes a float too
        floating = isinstance(default, float) or isinstance(value, float)
        return _coerce(name, value, float if floating else int)
    if isinstance(value, (bool, int, float, str, list)):
        return value
    raise ConfigError(f"{name} must be a number, a string or true/false, got {value!r}")


def _sort_extra(raw: dict[str, Any], extra: list[str], hyperparameters: Mapping[str, Any],
                optimizer: str | None, schedule: str | None) -> tuple[dict, dict]:
    """The keys beside the core's that are the optimizer's or the schedule's arguments (the task's
    own declared hyperparameters stay the task's; an argument both take is the optimizer's)."""
    takes = optimizer_arguments(optimizer) if optimizer in optimizer_classes() else {}
    scheduled = schedule_arguments(schedule) if schedule else {}
    optimizer_args, schedule_args = {}, {}
    for key in extra:
        if hyperparameters.get(key) is not None:
            continue
        if key in takes:
            optimizer_args[key] = _coerce_argument(key, raw[key], takes[key])
        elif key in scheduled:
            schedule_args[key] = _coerce_argument(key, raw[key], scheduled[key])
    return optimizer_args, schedule_args


def parse_config(raw: dict[str, Any], ignore: tuple[str, ...] = (),
                 hyperparameters: Mapping[str, Any] | None = None,
                 own_optimizers: bool = False) -> TrainConfig:
    """Validate a plain dict (a JSON file, a trial's config) into a TrainConfig.

    Keys in `ignore` are dropped silently (bookkeeping such as the trial a config comes from).
    `hyperparameters` are the task's own, by name, with their defaults (None: no default): allowed
    beside the core's keys and the keyword arguments of the optimizer and of the schedule the
    config names. `own_optimizers`: the task builds its optimizers (configure_optimizers), and
    `optimizer` is any name it knows. Every error is a ConfigError naming the key and what is
    allowed.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object of settings, got {type(raw).__name__}")
    hyperparameters = {k: v for k, v in (hyperparameters or {}).items() if k not in KEYS}
    for required in ("optimizer", "lr"):
        if required not in raw:
            raise ConfigError(f"missing key {required!r}; the config needs at least optimizer and lr")
    values = {k: _coerce(k, raw[k], _TYPES[k]) for k in KEYS if k in raw}
    for key, allowed in choices().items():
        if key == "optimizer" and own_optimizers:
            continue
        if key in values and values[key] in NEEDS_HOOK:
            raise ConfigError(f"{key} {values[key]!r} {NEEDS_HOOK[values[key]]}: build it in the "
                              "task's configure_optimizers(model, params)")
        if key in values and values[key] not in allowed:
            raise ConfigError(f"{key} {values[key]!r} is not one of: {', '.join(allowed)}")
    extra = sorted(set(raw) - set(KEYS) - set(ignore))
    optimizer_args, schedule_args = _sort_extra(
        raw, extra, hyperparameters, None if own_optimizers else values["optimizer"],
        values.get("schedule"))
    unknown = [k for k in extra if k not in hyperparameters and k not in optimizer_args
               and k not in schedule_args]
    if unknown:
        own = f"; the task's own: {', '.join(hyperparameters)}" if hyperparameters else ""
        takes = "" if own_optimizers else (
            f"; {values['optimizer']}'s: "
            f"{', '.join(optimizer_arguments(values['optimizer'])) or 'none'}")
        raise ConfigError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}{takes}"
                          f"{own}")
    for key in _POSITIVE:
        if key in values and values[key] <= 0:
            raise ConfigError(f"{key} must be greater than 0, got {raw[key]!r}")
    for key in _NON_NEGATIVE:
        if key in values and values[key] < 0:
            raise ConfigError(f"{key} must be 0 or more, got {raw[key]!r}")
    params = _task_params({k: v for k, v in raw.items()
                           if k not in optimizer_args and k not in schedule_args}, hyperparameters)
    config = TrainConfig(**values, params=params, optimizer_args=optimizer_args,
                         schedule_args=schedule_args)
    if not own_optimizers:
        _check_optimizer_settings(config)
    _check_schedule_settings(config)
    _check_step_settings(config)
    if any(m <= 0 for m in config.milestones) or config.milestones != sorted(config.milestones):
        raise ConfigError(f"milestones must be increasing epochs above 0, got {config.milestones}")
    return config


def _check_optimizer_settings(config: TrainConfig) -> None:
    """momentum, nesterov and weight_decay only for the optimizers that take them."""
    nesterov, momentum = optimizers_taking("nesterov"), optimizers_taking("momentum")
    if config.weight_decay and "weight_decay" not in optimizer_arguments(config.optimizer):
        raise ConfigError(f"weight_decay does not apply to {config.optimizer!r}")
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


def _check_step_settings(config: TrainConfig) -> None:
    """A schedule class's required arguments given; SWA from an epoch of the run."""
    missing = [name for name, default in schedule_arguments(config.schedule).items()
               if default is inspect.Parameter.empty and name not in config.schedule_args
               and name not in SHARED_SCHEDULE_ARGS]
    if missing:
        raise ConfigError(f"schedule {config.schedule} needs {missing[0]} in the config")
    if config.swa_start > config.epochs:
        raise ConfigError(f"swa_start must be at most epochs ({config.epochs}), got "
                          f"{config.swa_start}")
    if config.schedule == "ReduceLROnPlateau" and (config.schedule_interval == "batch"
                                                   or config.warmup_epochs):
        raise ConfigError("ReduceLROnPlateau steps once an epoch on the validation loss, without "
                          "a warm-up")
    if config.swa_lr and not config.swa_start:
        raise ConfigError("swa_lr needs swa_start, the epoch from which weights are averaged")
