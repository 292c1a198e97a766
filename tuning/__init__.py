"""Tuning a task's hyperparameters on Ray Tune: the commands tuning.run (search, confirm, report),
tuning.check (a task on one batch) and tuning.train (one config), and from Python `tuning.tune()`,
which runs what tuning.run runs and returns the leaderboard and the answer."""


def __getattr__(name: str):
    if name == "tune":  # imported when asked for: `import tuning.check` need not load Ray
        from tuning.api import tune

        return tune
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
