"""Named search spaces: every module in this package that defines `define` is one space.

A space module holds a one-line DESCRIPTION, the QUESTION it answers, the hyperparameter it
COMPARES (or None), the ASHA BUDGET it expects, and `define(trial, max_epochs)`: an Optuna
define-by-run function that suggests the tuned hyperparameters and returns the fixed ones.
Adding a space is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

import optuna

from results.cli import UsageError


@dataclass(frozen=True)
class Budget:
    """What a space needs from ASHA and the search, sized for a 2-core CPU machine."""

    max_epochs: int
    grace_period: int
    reduction_factor: int
    num_samples: int


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    question: str
    compare: str | None
    budget: Budget
    define: Callable[[optuna.Trial, int], dict[str, Any] | None]


def _load() -> dict[str, Space]:
    spaces = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "define"):
            spaces[info.name] = Space(info.name, module.DESCRIPTION, module.QUESTION,
                                      module.COMPARE, module.BUDGET, module.define)
    return spaces


SPACES = _load()


def get_space(name: str) -> Space:
    """The space of that name; a UsageError (one line, the known spaces) for any other name."""
    if name not in SPACES:
        raise UsageError(f"unknown space {name!r}; known spaces: {', '.join(SPACES)}")
    return SPACES[name]


def _probe(space: Space, max_epochs: int, probes: int = 64):
    """(distributions, fixed settings) of `define` run on random trials of an in-memory study,
    so that conditional branches show up too."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(probes):
        trial = study.ask()
        fixed = space.define(trial, max_epochs) or {}
        yield trial.distributions, fixed
        study.tell(trial, 0.0)


def fixed_settings(space: Space, max_epochs: int) -> dict[str, Any]:
    """The settings the space fixes for every trial (model, epochs, ...), from one probe."""
    return next(_probe(space, max_epochs, probes=1))[1]


def describe_parameters(space: Space, max_epochs: int | None = None) -> dict[str, str]:
    """Each parameter the space can set, with its distribution(s) or value."""
    seen: dict[str, set[str]] = {}
    for distributions, fixed in _probe(space, max_epochs or space.budget.max_epochs):
        for name, dist in distributions.items():
            seen.setdefault(name, set()).add(_format_distribution(dist))
        for name, value in fixed.items():
            seen.setdefault(name, set()).add(f"fixed {value!r}")
    return {name: " | ".join(sorted(kinds)) for name, kinds in seen.items()}


def compare_choices(space: Space, max_epochs: int | None = None) -> list[Any] | None:
    """The values the space's COMPARE hyperparameter takes, in the space's order; None when the
    space compares nothing or the hyperparameter is not a categorical choice of every trial."""
    if space.compare is None:
        return None
    choices = None
    for distributions, _ in _probe(space, max_epochs or space.budget.max_epochs, probes=8):
        dist = distributions.get(space.compare)
        if not isinstance(dist, optuna.distributions.CategoricalDistribution):
            return None
        choices = list(dist.choices)
    return choices


# The tutorial's own settings ("Optimizing Model Parameters"): the baseline a search must beat
TUTORIAL = {"optimizer": "sgd", "lr": 1e-3, "batch_size": 64, "momentum": 0.0, "model": "mlp"}
TUTORIAL_EPOCHS = 10


class _NotInSpace(Exception):
    pass


class _Fixed:
    """Stands in for the search's first optuna.Trial: every suggest_* answers from `values`. A
    value the tutorial sets must lie in the space; any other is the training default clipped
    into it."""

    number = 0

    def __init__(self, values: dict[str, Any]) -> None:
        self.values, self.params = values, {}

    def _answer(self, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
        value = self.values.get(name)
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            if value not in dist.choices:
                raise _NotInSpace(name)
        elif name in TUTORIAL:
            if value is None or not dist._contains(dist.to_internal_repr(value)):
                raise _NotInSpace(name)
        else:
            value = min(max(value if value is not None else dist.low, dist.low), dist.high)
        self.params[name] = value
        return value

    def suggest_categorical(self, name, choices):
        return self._answer(name, optuna.distributions.CategoricalDistribution(choices))

    def suggest_float(self, name, low, high, *, step=None, log=False):
        return self._answer(name, optuna.distributions.FloatDistribution(low, high, log=log,
                                                                          step=step))

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return self._answer(name, optuna.distributions.IntDistribution(low, high, log=log,
                                                                        step=step))


def baseline_params(space: Space, max_epochs: int, model: str | None = None) -> dict[str, Any] | None:
    """The space's parameters for the tutorial's settings (SGD, lr 1e-3, batch 64, no momentum,
    the MLP), its epochs clipped to the space; None where the space cannot express them."""
    from trainables.config import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    trial = _Fixed({**defaults, "epochs": min(TUTORIAL_EPOCHS, max_epochs), **TUTORIAL})
    try:
        fixed = space.define(trial, max_epochs) or {}
    except _NotInSpace:
        return None
    settings = {"model": model or "mlp", **fixed, **trial.params}
    if any(settings.get(k, TUTORIAL[k]) != TUTORIAL[k] for k in TUTORIAL):
        return None
    return trial.params


def _format_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    scale = "log-uniform" if getattr(dist, "log", False) else "uniform"
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return f"{kind} {scale} [{dist.low:g}, {dist.high:g}]"
