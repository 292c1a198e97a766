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
from results.rundir import CONFIRM_DIR


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


def build_confirmation(run_dir: Path, trainable: Any, planned: list[dict[str, Any]],
                       resume: bool, callbacks: list[Any], trial_dirname: Any) -> Any:
    """The Tuner of the confirmation runs: restored where an interrupted one exists."""
    from ray import tune

    from tuning.checkpoints import DropEndedCheckpoints

    path = run_dir / CONFIRM_DIR
    if resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=Listed(planned),
            num_samples=len(planned), reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=CONFIRM_DIR, storage_path=str(run_dir),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[*callbacks, DropEndedCheckpoints()], verbose=0),
    )
