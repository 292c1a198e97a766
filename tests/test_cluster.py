"""Past one machine: searches on simulated clusters (ray.cluster_utils.Cluster, every node a set
of real Ray processes on this machine): one that loses a node mid-run and gains another; one
whose trials live in an S3 bucket, with a worker and the command killed."""

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from conftest import write_idx_files
from runs import (assert_finished_once, assert_raced_confirmed_and_reported,  # noqa: F401
                  bucket_files, journal_ends, journal_trials, kill_run, run_cli, s3_bucket,
                  start_run, training_workers, trial_results, wait_for)
from trainables.idx import Split
from trainables.task import load_task

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SLEEPY = ROOT / "benchmarks" / "sleepy_task.py"  # epochs that sleep: 5 nodes on 2 cores


def test_a_search_loses_a_node_gains_another_and_every_trial_ends_once(tmp_path, monkeypatch):
    """A head with no CPUs for trials and four worker nodes of one CPU: a worker node is removed
    while its trial runs, and a node is added. The run finishes; every trial ends once, the one
    on the lost node going on from its last checkpoint on another node; the study holds no trial
    running; the leaderboard agrees with the study trial by trial."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("SLEEPY_EPOCH_SECONDS", "1")
    # Tune copies result.json to the run directory at its snapshots: every second, not every 10 s
    # or more, so that the rows read below are at most a second old
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    run_dir = tmp_path / "nodes"
    process = None
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(4)]
        cluster.wait_for_nodes()
        process = start_run("--space", SLEEPY, "--num-samples", 12, "--max-epochs", 6,
                            "--grace-period", 2, "--confirm-seeds", 0, "--full-budget",
                            "--address", cluster.address, "--storage-path", tmp_path,
                            "--name", "nodes")
        by_id = {node.node_id: node for node in workers}
        lost = {}

        def a_trial_midway():
            """A trial the study has heard at epoch 2 or 3 and not ended, on a worker node."""
            heard = journal_trials(run_dir)
            for trial_id, rows in trial_results(run_dir).items():
                if 2 <= rows[-1]["epoch"] < 4 and rows[-1]["node_id"] in by_id \
                        and heard.get(trial_id) == (rows[-1]["epoch"], False):
                    lost.update(trial=trial_id, node=rows[-1]["node_id"], epoch=rows[-1]["epoch"])
                    return True
            return False

        assert wait_for(a_trial_midway, process, timeout=240, poll=0.1)
        cluster.remove_node(by_id[lost["node"]], allow_graceful=False)
        cluster.add_node(num_cpus=1)  # joins the running search

        def went_on_elsewhere():
            # a read while Tune copies result.json here at a snapshot may find the file empty
            rows = trial_results(run_dir).get(lost["trial"])
            return bool(rows) and rows[-1]["node_id"] != lost["node"]

        assert wait_for(went_on_elsewhere, process, timeout=240, poll=0.2)
        assert process.wait(timeout=300) == 0
    finally:
        if process is not None:
            kill_run(process)
        cluster.shutdown()

    _, board = assert_finished_once(run_dir, 12)
    rows = trial_results(run_dir)
    epochs = [row["epoch"] for row in rows[lost["trial"]]]
    # on from its last checkpoint: no epoch skipped, never from epoch 1 again, the epoch whose
    # checkpoint the lost node had not handed over yet at most once more
    assert epochs.count(1) == 1 and sorted(set(epochs)) == list(range(1, epochs[-1] + 1)), epochs
    assert len(epochs) - len(set(epochs)) <= 1, epochs
    board = board.set_index("trial_id")
    assert board.loc[lost["trial"], "retries"] >= 1
    assert not (board["status"] == "errored").any(), board["status"].to_dict()


# appended to a copy of a task file: each process that imports the file notes its pid
NOTE_IMPORT = """
import os as _os
with open(__file__ + ".imports", "a") as _log:
    _log.write(f"{_os.getpid()}\\n")
"""


def faint_split(n, seed):
    """n uint8 28x28 images of dim noise whose class k lifts cell k of a 4x4 grid by 20 grey
    levels: the script's network learns the bright patches of conftest.make_split to 100% in
    every trial, these to 15-80% in 2 epochs, by its settings."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g)
    for k in range(10):
        row, col = divmod(k, 4)
        images[labels == k, 7 * row:7 * row + 7, 7 * col:7 * col + 7] += 20
    return Split(images.to(torch.uint8), labels)


def test_a_task_file_on_two_nodes_trials_in_a_bucket_a_worker_and_the_driver_killed(
        tmp_path, s3_bucket):
    """A copy of the pytorch/examples MNIST script as a task (its log-softmax network and NLL
    loss, on torchvision's map-style MNIST, a sixth carved out to validate on; its Adadelta and
    StepLR settings as trial 0, and the answer's margin over them) is raced, confirmed
    and reported on both nodes of a two-node cluster, its trials kept in an S3 bucket (a real
    S3-compatible server on the loopback address). A trial's worker is killed and the trial goes
    on; the command is killed mid-search and --resume finishes the run from the bucket; the
    report is complete, the study and the leaderboard agree, and the bucket keeps no checkpoint.
    Ray ships the task's functions by value: no worker imports the file, only the commands do."""
    import shutil

    from ray.cluster_utils import Cluster

    write_idx_files(tmp_path / "mnist" / "MNIST" / "raw", faint_split(600, seed=1),
                    faint_split(100, seed=2))
    task = tmp_path / "mine" / "my_mnist.py"
    task.parent.mkdir()
    shutil.copy(ROOT / "examples" / "mnist_example.py", task)
    task.write_text(task.read_text() + NOTE_IMPORT)
    script = load_task(str(ROOT / "examples" / "mnist_example.py")).baseline
    assert script == {"optimizer": "adadelta", "lr": 1.0, "schedule": "step", "step_size": 1,
                      "gamma": 0.7, "batch_size": 64, "epochs": 14}
    budget = {"num_samples": 6, "max_epochs": 2, "grace_period": 1, "confirm_seeds": 2,
              "max_seeds": 2}
    args = ["--space", task, *[f"--{k.replace('_', '-')}={v}" for k, v in budget.items()],
            "--full-budget",
            "--data-dir", tmp_path / "mnist", "--storage-path", s3_bucket, "--name", "cluster"]
    # the search asks Tune for a trial per slot at once (tuning.cluster.start_trials_together), so
    # that each node's CPU gets one, whichever starts its worker first; Tune writes its state to
    # the bucket every second (10 s or more by default), so that the kill finds it there
    env = {**{k: v for k, v in os.environ.items() if k != "TUNE_MAX_PENDING_TRIALS_PG"},
           "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    run_dir = tmp_path / "runs" / "cluster"  # the study and the reports: where the command runs
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    process = None
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        nodes = {cluster.head_node.node_id, *(node.node_id for node in cluster.worker_nodes)}
        process = start_run(*args, "--address", cluster.address, cwd=tmp_path, env=env)
        raylets = {node.all_processes["raylet"][0].process.pid
                   for node in [cluster.head_node, *cluster.worker_nodes]}
        killed = []

        def kill_a_trials_worker():
            workers = training_workers(raylets)
            heard = [epochs for epochs, ended in journal_trials(run_dir).values() if not ended]
            if any(heard) and workers:  # a trial has a checkpoint to go on from
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            return bool(killed)

        assert wait_for(kill_a_trials_worker, process, timeout=240, poll=0.05)

        def failure_in_bucket_and_a_trial_ended():
            return journal_ends(run_dir) >= 1 and any(
                path.endswith("/error.txt") for path in bucket_files(s3_bucket, "cluster"))

        assert wait_for(failure_in_bucket_and_a_trial_ended, process, timeout=240, poll=0.2)
        kill_run(process)  # the command; the cluster runs on
        assert journal_ends(run_dir) < budget["num_samples"], "the search ended before the kill"
        assert not (run_dir / "leaderboard.csv").exists()
        result = run_cli(*args, "--address", cluster.address, "--resume", cwd=tmp_path, env=env)
    finally:
        if process is not None:
            kill_run(process)
        cluster.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    board, summary = assert_raced_confirmed_and_reported(run_dir, script, "val_accuracy", budget,
                                                         ("adadelta", "adam"))
    # the answer says how far the winner is from the script's own settings, trial 0
    settings = r"the baseline settings (themselves )?\(optimizer adadelta, lr 1, .*gamma 0\.7"
    assert re.search(settings, summary), summary
    assert_finished_once(run_dir, budget["num_samples"])
    assert json.loads((run_dir / "run.json").read_text())["data"]["val"] == 100
    assert board["val_accuracy"].max() > 0.5
    # the killed worker's trial went on and completed; no trial errored
    assert board["retries"].sum() >= 1 and not (board["status"] == "errored").any(), board
    # the trials are in the bucket, the reports read them here; no checkpoint is left anywhere
    in_bucket = bucket_files(s3_bucket, "cluster")
    for trial_id in board["trial_id"]:
        assert f"trial_{trial_id}/result.json" in in_bucket
    assert not [path for path in in_bucket if "/checkpoint_" in path]
    assert not list(run_dir.glob("**/checkpoint_*"))
    rows = {**trial_results(run_dir), **trial_results(run_dir / "confirm")}
    assert len(nodes) == 2 and {trial[0]["node_id"] for trial in rows.values()} == nodes
    importers = set(Path(f"{task}.imports").read_text().split())
    workers = {str(row["pid"]) for trial in rows.values() for row in trial}
    assert len(importers) == 2 and not importers & workers, (importers, workers)
