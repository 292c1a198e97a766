"""A task: what is trained. A Python file, or an importable module, that says in plain PyTorch,
without importing this tool or Ray:

    def load_data(data_dir) -> {"train": ..., "val": ..., "test": ...}
        each split (inputs, targets) tensors or a map-style Dataset of (input, target) items. "val"
        and "test" are optional: without "val", a validation split is carved out of "train"
        (seeded, --val-size); "test" is used by final training only.
    def build_model(params) -> nn.Module
        params: the trial's config, the task's own hyperparameters beside the training core's
    loss             optional: loss(outputs, targets) -> a scalar tensor (default: cross-entropy)
    METRIC           optional: "accuracy" (default), "rmse", "mae", "loss", or a name of the task's
                     own, computed by metric(outputs, targets) over the whole split
    MODE             "max" (higher is better) or "min"; needed with a metric of the task's own
    BASELINE         optional: the settings trained with today: trial 0, the answer's margin
    HYPERPARAMETERS  optional: the model's own hyperparameters with their defaults
    training_step(model, batch) -> loss, evaluation_step(model, batch) -> (outputs, targets)
                     optional: a batch of any shape (dicts, several inputs), a loss with extra
                     terms (trainables.steps); collate_fn(items) -> batch for Dataset splits
    configure_optimizers(model, params)
                     optional: an optimizer, or (optimizer, schedule), built by the task
                     (parameter groups, an optimizer of another package); params["optimizer"]
                     is the compared name
    WORKER_START     optional: how a Dataset's DataLoader workers start, "fork" (Linux's
                     default), "forkserver" or "spawn" (Ray's advice where forked workers hang)

The file may hold the search space too (search_spaces/ says what a space holds). The built-in tasks
in trainables/tasks/ are written the same way.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch.nn import functional as F

from trainables.cli import first_line
from trainables.config import TrainConfig, parse_config
from trainables.metrics import BUILTIN, MODES, Metric

BUILTIN_TASKS = "trainables.tasks"  # the package of the built-in tasks, each found by its name
DEFAULT_TASK = "fashion_mnist"
PARTS = "load_data(data_dir) and build_model(params)"
HOOKS = ("training_step", "evaluation_step", "collate_fn", "configure_optimizers")  # optional
START_METHODS = ("fork", "forkserver", "spawn")  # multiprocessing's, for DataLoader workers


class TaskError(ValueError):
    """A task file that cannot be trained; one line naming the file, the function and what is
    wrong."""


def shown(path: Path) -> str:
    """A file as a message names it: relative to the working directory where it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def is_file_ref(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref


def load_module(ref: str, package: str | None = None) -> ModuleType:
    """The module a reference names: a .py file (imported under a name of its own, its folder on
    sys.path as a script's would be), a module of `package` by its short name, or any importable
    module by its dotted name. Importing twice gives the same module."""
    if is_file_ref(ref):
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise TaskError(f"{ref}: no such file")
        name = f"_tuned_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        if str(path.parent) not in sys.path:
            sys.path.append(str(path.parent))
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise TaskError(f"{shown(path)}: importing it raised {describe(err)}") from None
        return module
    for name in ([f"{package}.{ref}"] if package and "." not in ref else []) + [ref]:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:  # the module itself, or one it imports?
            if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
                raise TaskError(f"{ref}: importing it raised {describe(err)}") from None
        except Exception as err:
            raise TaskError(f"{ref}: importing it raised {describe(err)}") from None
    raise TaskError(f"{ref}: no such file or module")


def canonical(ref: str, module: ModuleType) -> str:
    """What loads the module again: a file's absolute path, else the name it was given."""
    return str(Path(module.__file__).resolve()) if is_file_ref(ref) else ref


def source(module: ModuleType) -> tuple[Path, str]:
    """The module's file and the sha256 of its content."""
    path = Path(module.__file__).resolve()
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def describe(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = first_line(err)
    return text if text == type(err).__name__ else f"{type(err).__name__}: {text}"


@dataclass(frozen=True)
class Task:
    ref: str  # what loads it again: a built-in name, a module's dotted name or a file's path
    name: str
    module: str  # the name it is imported under (sys.modules)
    path: str  # its source file
    sha256: str  # of the source file, recorded in run.json
    load_data: Callable[[Path], Any]
    build_model: Callable[[dict[str, Any]], Any]
    loss: Callable[[Any, Any], Any]
    metric: Metric
    baseline: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    training_step: Callable[[Any, Any], Any] | None = None
    evaluation_step: Callable[[Any, Any], Any] | None = None
    collate_fn: Callable[[list], Any] | None = None
    configure_optimizers: Callable[[Any, dict[str, Any]], Any] | None = None
    worker_start: str | None = None  # WORKER_START

    def parse(self, raw: dict[str, Any], ignore: tuple[str, ...] = ()) -> TrainConfig:
        """A config of this task: the core's keys, the optimizer's and the schedule's, and the
        task's own (trainables.config.parse_config); any optimizer name where the task builds
        its optimizers."""
        return parse_config(raw, ignore, self.hyperparameters,
                            own_optimizers=self.configure_optimizers is not None)

    def where(self, part: str) -> str:
        """`file: part`, how every message about the task begins."""
        return f"{shown(Path(self.path))}: {part}"

    def error(self, part: str, what: str) -> TaskError:
        return TaskError(f"{self.where(part)} {what}")

    def splits(self, data_dir: Path) -> dict[str, Any]:
        """What load_data returns, each split checked (trainables.data.as_part): "train", and
        "val" and "test" where the task has them."""
        from trainables.data import SPLITS, DataError, as_part

        call = "load_data(data_dir)"
        try:
            value = self.load_data(Path(data_dir))
        except Exception as err:
            raise self.error(call, f"raised {describe(err)}") from None
        if not isinstance(value, dict) or "train" not in value:
            got = f"a dict of {', '.join(map(repr, value))}" if isinstance(value, dict) else \
                f"a {type(value).__name__}"
            raise self.error(call, f"returned {got}; it returns a dict of splits: \"train\", and "
                                   "\"val\" and \"test\" where there are some")
        unknown = sorted(set(value) - set(SPLITS))
        if unknown:
            raise self.error(call, f"returned a split named {unknown[0]!r}; the splits are "
                                   f"{', '.join(SPLITS)}")
        try:
            return {name: as_part(name, value[name]) for name in SPLITS
                    if value.get(name) is not None}
        except DataError as err:
            raise self.error(call, f"returned {err}") from None

    def picklable(self) -> None:
        """Ray ships a task from a file to its workers by value (the functions and classes the
        file defines, pickled whole), so that no node needs the file; a module installed on every
        node goes by reference."""
        import ray.cloudpickle

        if is_file_ref(self.ref):
            ray.cloudpickle.register_pickle_by_value(sys.modules[self.module])


def _metric(module: ModuleType, where: str) -> Metric:
    name = getattr(module, "METRIC", "accuracy")
    fn = getattr(module, "metric", None)
    mode = getattr(module, "MODE", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TaskError(f"{where}: METRIC must be a name such as 'accuracy' or 'rmse', "
                        f"got {name!r}")
    if fn is not None and not callable(fn):
        raise TaskError(f"{where}: metric is a {type(fn).__name__}, not a function of "
                        "(outputs, targets)")
    if fn is None and name not in BUILTIN:
        raise TaskError(f"{where}: METRIC {name!r} is not one of {', '.join(BUILTIN)}, and the "
                        "task defines no metric(outputs, targets) to compute it")
    if fn is None:
        builtin_mode = BUILTIN[name][0]
        if mode not in (None, builtin_mode):
            raise TaskError(f"{where}: MODE {mode!r} contradicts METRIC {name!r}, whose mode is "
                            f"{builtin_mode!r}")
        return Metric(name, builtin_mode)
    if mode not in MODES:
        raise TaskError(f"{where}: metric() needs MODE, 'max' (higher is better) or 'min', "
                        f"got {mode!r}")
    return Metric(name, mode, fn)


def _dict(module: ModuleType, name: str, where: str) -> dict[str, Any] | None:
    value = getattr(module, name, None)
    if value is not None and not isinstance(value, dict):
        raise TaskError(f"{where}: {name} must be a dict of settings, got {type(value).__name__}")
    return value


def from_module(ref: str, module: ModuleType) -> Task:
    """The task a loaded module defines; a TaskError for a part that is missing or of the wrong
    kind (what the parts do when called, tuning.check finds out)."""
    path, digest = source(module)
    where = shown(path)
    for part in ("load_data", "build_model"):
        if not callable(getattr(module, part, None)):
            raise TaskError(f"{where}: no function {part}(); a task defines {PARTS}")
    loss = getattr(module, "loss", F.cross_entropy)
    if not callable(loss):
        raise TaskError(f"{where}: loss is a {type(loss).__name__}, not a function of "
                        "(outputs, targets)")
    hooks = {name: getattr(module, name, None) for name in HOOKS}
    for name, hook in hooks.items():
        if hook is not None and not callable(hook):
            raise TaskError(f"{where}: {name} is a {type(hook).__name__}, not a function")
    start = getattr(module, "WORKER_START", None)
    if start not in (None, *START_METHODS):
        raise TaskError(f"{where}: WORKER_START {start!r} is not one of: "
                        f"{', '.join(START_METHODS)}")
    return Task(ref=canonical(ref, module), name=path.stem, module=module.__name__,
                path=str(path), sha256=digest,
                load_data=module.load_data, build_model=module.build_model, loss=loss,
                metric=_metric(module, where), baseline=_dict(module, "BASELINE", where),
                hyperparameters=_dict(module, "HYPERPARAMETERS", where) or {},
                worker_start=start, **hooks)


def is_task(module: ModuleType) -> bool:
    return callable(getattr(module, "load_data", None)) or callable(
        getattr(module, "build_model", None))


def load_task(ref: str | None = None) -> Task:
    """The task `ref` names: a built-in task (trainables/tasks/) by its name, a module, or a file;
    the default built-in task without one."""
    ref = ref or DEFAULT_TASK
    return from_module(ref, load_module(ref, BUILTIN_TASKS))


def builtin_tasks() -> list[str]:
    import pkgutil

    package = importlib.import_module(BUILTIN_TASKS)
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__))
