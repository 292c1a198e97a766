"""The dict-batch example (examples/text_classifier.py) tuned for real through `python -m
tuning.run`: its own collate_fn, training_step and evaluation_step, bf16 and clipping, with the
race, the baseline as trial 0, confirmation, the report and the final training."""

import json
import shutil

import pytest

from conftest import ROOT
from runs import assert_raced_confirmed_and_reported, run_cli, trial_results
from trainables.task import load_task

pytestmark = pytest.mark.slow
EXAMPLES = ROOT / "examples"


def baseline(path):
    return load_task(str(path)).baseline


def test_the_text_classifier_trains_dict_batches_through_its_own_steps(tmp_path):
    """The dict-batch example through `python -m tuning.run --final`: its sentences padded by its
    collate_fn, trained by its training_step in bf16 with clipping, scored on what its
    evaluation_step returns; raced, confirmed, reported and trained again, the baseline as
    trial 0."""
    task = shutil.copy(EXAMPLES / "text_classifier.py", tmp_path / "my_text.py")
    budget = {"num_samples": 4, "max_epochs": 2, "grace_period": 1, "confirm_seeds": 2,
              "max_seeds": 2}
    done = run_cli("--space", task, *[f"--{k.replace('_', '-')}={v}" for k, v in budget.items()],
                   "--full-budget", "--final", "--storage-path", tmp_path / "runs",
                   "--name", "text", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "text"
    board, summary = assert_raced_confirmed_and_reported(
        run_dir, baseline(task), "val_accuracy", budget, ("adamw", "sgd"))
    configs = [rows[0]["config"] for rows in trial_results(run_dir).values()]
    assert {c["precision"] for c in configs} == {"bf16"}
    assert {c["max_grad_norm"] for c in configs} <= {0.5, 1.0, 5.0}
    assert board["val_accuracy"].max() > 0.6
    final = json.loads((run_dir / "final" / "final_metrics.json").read_text())
    assert final["config"]["precision"] == "bf16" and final["test_accuracy"] > 0.6
