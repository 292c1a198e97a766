"""Check a task and its space before spending hours on them: a dry run of one batch
(tuning.dry_run), and what it found.

    python -m tuning.check --space examples/diabetes_regression.py
    python -m tuning.check --space sgd_vs_adam --task my_task.py --data-dir data/

Prints the parameter count, the samples and where they come from, samples per second and an
estimate of the whole run's time. Every defect of a task file is one line naming the file and the
function (exit code 2). It takes tuning.run's flags, so that it checks and prices the run those
flags would start.
"""

from __future__ import annotations

import argparse

from search_spaces import get_space
from trainables.cli import UsageError, fail
from trainables.config import ConfigError
from trainables.data import DataError, size
from trainables.task import TaskError, load_task
from tuning.dry_run import dry_run, summary
from tuning.settings import parser_for, resolve

PROG = "python -m tuning.check"


def build_parser() -> argparse.ArgumentParser:
    return parser_for(PROG, __doc__.splitlines()[0])


def main(argv: list[str] | None = None) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args = build_parser().parse_args(argv)
    if not args.space:
        fail(PROG, "--space is required: a built-in space's name or a file of your own")
    try:
        space = get_space(args.space)
        s = resolve(args, space)
        checked = dry_run(space, load_task(s.task), s)
    except (UsageError, TaskError, ConfigError, DataError) as err:
        fail(PROG, str(err))
    print(summary(checked, s))
    where = ", ".join(f"{name} {size(part):,}" for name, part in checked.splits.items())
    print(f"load_data returned: {where}; trial 0 is "
          + ("the task's BASELINE" if checked.baseline else "a random draw of the space"))
    print("ok: the task and its space are ready for python -m tuning.run")


if __name__ == "__main__":
    main()
