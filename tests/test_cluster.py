"""Past one machine: a search on a simulated cluster (ray.cluster_utils.Cluster, every node a set
of real Ray processes on this machine) that loses a node mid-run and gains another."""

from pathlib import Path

import pytest

from runs import assert_finished_once, kill_run, start_run, trial_results, wait_for

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
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    run_dir = tmp_path / "nodes"
    process = None
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(4)]
        cluster.wait_for_nodes()
        process = start_run("--space", SLEEPY, "--num-samples", 12, "--max-epochs", 6,
                            "--grace-period", 2, "--confirm-seeds", 0, "--address",
                            cluster.address, "--storage-path", tmp_path, "--name", "nodes")
        by_id = {node.node_id: node for node in workers}
        lost = {}

        def a_trial_midway():
            for trial_id, rows in trial_results(run_dir).items():
                if 2 <= rows[-1]["epoch"] < 4 and rows[-1]["node_id"] in by_id:
                    lost.update(trial=trial_id, node=rows[-1]["node_id"], epoch=rows[-1]["epoch"])
                    return True
            return False

        assert wait_for(a_trial_midway, process, timeout=240, poll=0.1)
        cluster.remove_node(by_id[lost["node"]], allow_graceful=False)
        cluster.add_node(num_cpus=1)  # joins the running search

        def went_on_elsewhere():
            rows = trial_results(run_dir)[lost["trial"]]
            return rows[-1]["node_id"] != lost["node"]

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
