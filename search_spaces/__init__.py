"""Search spaces: every module in this package that defines `define` is one space, known by its
name; a space may also be any file or module given by its path or dotted name, beside its task.

A space holds `define(trial, max_epochs)`: an Optuna define-by-run function that suggests the tuned
hyperparameters and returns the fixed ones; and, each optional, a one-line DESCRIPTION, the QUESTION
it answers, the hyperparameter it COMPAREs (a categorical every trial suggests, or None), and the
ASHA BUDGET it expects (a Budget, or a dict of its fields). A space in a file of its own trains the
default task (trainables/tasks/fashion_mnist.py) unless it names one in TASK; a file that holds a
task too (trainables/task.py) trains that one. Adding a space is adding a file.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

from trainables.cli import UsageError


@dataclass(frozen=True)
class Budget:
    """What a space needs from ASHA and the search, sized for a 2-core CPU machine."""

    max_epochs: int
    grace_period: int
    reduction_factor: int
    num_samples: int


DEFAULT_BUDGET = Budget(max_epochs=10, grace_period=1, reduction_factor=3, num_samples=20)


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    question: str
    compare: str | None
    budget: Budget
    define: Callable[[optuna.Trial, int], dict[str, Any] | None]
    ref: str = ""  # what loads it again: a built-in name, a dotted module name or a file's path
    task: str | None = None  # the task it trains: its own file's, the one TASK names, or None
    path: str | None = None  # its source file
    # STARTS: the settings a practitioner tries first for each compared value, each the first
    # trial of its value's lane
    starts: tuple[dict[str, Any], ...] = ()

    def where(self, part: str = "define(trial, max_epochs)") -> str:
        """`file: part`, how every message about the space's definition begins."""
        from trainables.task import shown

        return f"{shown(Path(self.path)) if self.path else self.name}: {part}"


def from_module(name: str, ref: str, module: ModuleType) -> Space:
    """The space a module defines; a TaskError naming the file for a part of the wrong kind."""
    from trainables.task import TaskError, is_task, shown

    where = shown(Path(module.__file__))
    if not callable(getattr(module, "define", None)):
        hint = (f"; to tune it with a built-in space: --space sgd_vs_adam --task {ref}"
                if is_task(module) else "")
        raise TaskError(f"{where}: no function define(trial, max_epochs), so it is no search "
                        f"space{hint}")
    budget = getattr(module, "BUDGET", DEFAULT_BUDGET)
    if isinstance(budget, dict):
        try:
            budget = Budget(**{**dataclasses.asdict(DEFAULT_BUDGET), **budget})
        except TypeError:
            allowed = ", ".join(f.name for f in fields(Budget))
            raise TaskError(f"{where}: BUDGET takes {allowed}; got {', '.join(budget)}") from None
    if not isinstance(budget, Budget):
        names = ", ".join(f.name for f in fields(Budget))
        raise TaskError(f"{where}: BUDGET must be a dict of {names}")
    starts = getattr(module, "STARTS", ())
    if not isinstance(starts, (list, tuple)) or not all(isinstance(x, dict) for x in starts):
        raise TaskError(f"{where}: STARTS must be a list of dicts of settings")
    doc = (module.__doc__ or "").strip().splitlines()
    question = getattr(module, "QUESTION", "Which settings train it best?")
    task = ref if is_task(module) else getattr(module, "TASK", None)
    return Space(name, getattr(module, "DESCRIPTION", doc[0] if doc else question), question,
                 getattr(module, "COMPARE", None), budget, module.define, ref=ref, task=task,
                 path=str(Path(module.__file__).resolve()), starts=tuple(starts))


def _load() -> dict[str, Space]:
    spaces = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "define"):
            spaces[info.name] = from_module(info.name, info.name, module)
    return spaces


SPACES = _load()
_LOADED: dict[str, Space] = {}  # spaces from files and modules, by the ref that loads them


def get_space(ref: str) -> Space:
    """The space a reference names: a built-in space by its name, a file by its path, a module by
    its dotted name. A UsageError (one line, the known spaces) for a name that is none of these."""
    from trainables.task import canonical, is_file_ref, load_module

    if ref in SPACES:
        return SPACES[ref]
    if ref in _LOADED:
        return _LOADED[ref]
    if not is_file_ref(ref) and "." not in ref:
        raise UsageError(f"unknown space {ref!r}; known spaces: {', '.join(SPACES)}, or a file "
                         "or module of your own (docs/your-own-model.md)")
    module = load_module(ref)
    full = canonical(ref, module)
    if full not in _LOADED:
        _LOADED[full] = from_module(Path(module.__file__).stem, full, module)
    _LOADED[ref] = _LOADED[full]
    return _LOADED[ref]


def _probe(space: Space, max_epochs: int, probes: int = 64):
    """(distributions, fixed settings) of `define` run on random trials of an in-memory study,
    so that conditional branches show up too."""
    from trainables.task import TaskError, describe

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(probes):
        trial = study.ask()
        try:
            fixed = space.define(trial, max_epochs) or {}
        except Exception as err:
            raise TaskError(f"{space.where()} raised {describe(err)}") from None
        if not isinstance(fixed, dict):
            raise TaskError(f"{space.where()} returned a {type(fixed).__name__}; it returns a "
                            "dict of the settings it fixes, or nothing")
        yield trial.distributions, fixed
        study.tell(trial, 0.0)


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
    space compares nothing. A TaskError where some trial does not suggest it as a categorical:
    the race needs every trial in one of its lanes."""
    if space.compare is None:
        return None
    from trainables.task import TaskError

    choices = None
    for number, (distributions, _) in enumerate(
            _probe(space, max_epochs or space.budget.max_epochs, probes=16)):
        dist = distributions.get(space.compare)
        if not isinstance(dist, optuna.distributions.CategoricalDistribution):
            kind = "does not suggest it" if dist is None else "suggests it as a number"
            raise TaskError(f"{space.where()} does not suggest COMPARE {space.compare!r} as a "
                            f"categorical in every trial (trial {number} {kind}); suggest it "
                            "with trial.suggest_categorical in every trial, or set COMPARE = None")
        choices = list(dist.choices)
    return choices


class _NotInSpace(Exception):
    pass


class _Fixed:
    """Stands in for the search's first optuna.Trial: every suggest_* answers from `values`. A
    value the baseline sets must lie in the space; any other is the training default clipped
    into it."""

    number = 0

    def __init__(self, values: dict[str, Any], given: set[str]) -> None:
        self.values, self.given, self.params = values, given, {}

    def _answer(self, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
        value = self.values.get(name)
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            if value not in dist.choices:
                raise _NotInSpace(f"{name} {value!r} is not one of {list(dist.choices)}")
        elif name in self.given:
            if value is None or not dist._contains(dist.to_internal_repr(value)):
                raise _NotInSpace(f"{name} {value!r} is outside [{dist.low:g}, {dist.high:g}]")
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


def baseline_params(space: Space, max_epochs: int, baseline: dict[str, Any] | None,
                    defaults: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    """(the space's parameters for the baseline settings, "") where the space can express them:
    every setting the baseline names within the space, its epochs clipped to the space (the race
    trains every trial for the space's epochs); else (None, why not). `defaults`: the task's own
    hyperparameters, beside the training core's defaults."""
    from trainables.config import TrainConfig

    if not baseline:
        return None, "the task has no BASELINE"
    core = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    given = set(baseline) - {"epochs"}
    epochs = min(baseline.get("epochs", TrainConfig.epochs), max_epochs)
    trial = _Fixed({**core, **(defaults or {}), **baseline, "epochs": epochs}, given)
    try:
        fixed = space.define(trial, max_epochs) or {}
    except _NotInSpace as err:
        return None, str(err)
    trained = {**core, **(defaults or {}), **fixed, **trial.params}  # what trial 0 would train
    for key in sorted(given):
        if key not in trained:
            return None, f"{key} is a setting of neither the space, the task nor the training core"
        if trained[key] != baseline[key]:
            return None, f"the space trains {key} {trained[key]!r}, the baseline {baseline[key]!r}"
    return trial.params, ""


def _format_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(str, dist.choices))
    scale = "log-uniform" if getattr(dist, "log", False) else "uniform"
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return f"{kind} {scale} [{dist.low:g}, {dist.high:g}]"
