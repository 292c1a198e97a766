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
from dataclasses import dataclass
from typing import Any

import optuna


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
    if name not in SPACES:
        raise KeyError(f"unknown space {name!r}; known spaces: {', '.join(SPACES)}")
    return SPACES[name]


def describe_parameters(space: Space, max_epochs: int | None = None, probes: int = 64) -> dict[str, str]:
    """Each parameter the space can set, with its distribution(s) or value, found by running
    `define` on random trials of an in-memory study (so conditional branches show up too)."""
    max_epochs = max_epochs or space.budget.max_epochs
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set[str]] = {}
    for _ in range(probes):
        trial = study.ask()
        fixed = space.define(trial, max_epochs) or {}
        for name, dist in trial.distributions.items():
            seen.setdefault(name, set()).add(_format_distribution(dist))
        for name, value in fixed.items():
            seen.setdefault(name, set()).add(f"fixed {value!r}")
        study.tell(trial, 0.0)
    return {name: " | ".join(sorted(kinds)) for name, kinds in seen.items()}


def _format_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    scale = "log-uniform" if getattr(dist, "log", False) else "uniform"
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return f"{kind} {scale} [{dist.low:g}, {dist.high:g}]"
