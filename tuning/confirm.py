"""Confirmation: after the search, the best config of each compared choice trained again with more
seeds, as Ray trials of the run (RUN_DIR/confirm/), on the same train/validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from results.confirmation import confirmation_runs, plan
from results.experiment import load_experiment
from results.leaderboard import leaderboard
from tuning.storage import Trials


def configs(run_dir: Path, seeds: int) -> list[dict[str, Any]]:
    """What confirmation trains (results.confirmation.plan) for the finished search in run_dir."""
    experiment = load_experiment(run_dir)
    return plan(experiment, leaderboard(experiment), seeds)


def finished(run_dir: Path, expected: int) -> bool:
    """Every confirmation run has ended: trained its planned epochs, diverged or errored."""
    runs = confirmation_runs(run_dir)
    return len(runs) >= expected and all(r["status"] != "unfinished" for r in runs)


class Listed(Searcher):
    """Hands out the given configs in order, then says it is finished."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__()
        self._configs, self._next = configs, 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        self._next += 1
        return dict(self._configs[self._next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"configs": self._configs, "next": self._next}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self._configs, self._next = state["configs"], state["next"]


def build_confirmation(runs: Trials, trainable: Any, planned: list[dict[str, Any]],
                       resume: bool, callbacks: list[Any], trial_dirname: Any) -> Any:
    """The Tuner of the confirmation runs, kept in `runs` (the run's CONFIRM_DIR): restored where
    an interrupted one exists."""
    from ray import tune

    from tuning.checkpoints import DropCheckpoints

    if resume and tune.Tuner.can_restore(**runs.restore_args()):
        return tune.Tuner.restore(**runs.restore_args(), trainable=trainable,
                                  resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=Listed(planned),
            num_samples=len(planned), reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            **runs.run_config(),
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[*callbacks, DropCheckpoints()], verbose=0),
    )
