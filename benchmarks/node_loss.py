"""A cluster that loses a node: what it costs, against the same search on a cluster that does not.

    python benchmarks/node_loss.py                  # 24 trials of up to 6 one-second epochs
    python benchmarks/node_loss.py --trials 48 --repeat 2

A simulated cluster (ray.cluster_utils.Cluster: a head with no CPUs for trials and four worker
nodes of one CPU, every node real Ray processes on this machine) runs the same search
(benchmarks/sleepy_task.py with 1-second epochs, our searcher and race) twice: undisturbed, then
losing a worker node, killed without warning once the study has heard --after epochs, and gaining
a new one. Printed for each: the command's wall seconds, the search's seconds, the epochs trained
(and how many of them a second time), the trials Ray started again (leaderboard `retries`), and
whether the run ended with every trial once, the study and the leaderboard agreeing trial by
trial (tests/runs.py's assert_finished_once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from runs import assert_finished_once, journal_trials, trial_results  # noqa: E402


def one_run(work: Path, name: str, args: argparse.Namespace, lose: bool) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(4)]
        cluster.wait_for_nodes()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SLEEPY_EPOCH_SECONDS": "1"}
        command = [sys.executable, "-m", "tuning.run", "--space",
                   str(ROOT / "benchmarks" / "sleepy_task.py"), "--num-samples", str(args.trials),
                   "--max-epochs", "6", "--grace-period", "2", "--confirm-seeds", "0", "--full-budget",
                   "--address", cluster.address, "--storage-path", str(work), "--name", name]
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        lost_at = None
        while lose and lost_at is None and process.poll() is None:
            if sum(epochs for epochs, _ in journal_trials(work / name).values()) >= args.after:
                cluster.remove_node(workers[0], allow_graceful=False)
                cluster.add_node(num_cpus=1)
                lost_at = time.perf_counter() - started
            time.sleep(0.1)
        process.wait()
        wall = time.perf_counter() - started
    finally:
        cluster.shutdown()
    run_dir = work / name
    rows = [row["epoch"] for trial in trial_results(run_dir).values() for row in trial]
    epochs = {(trial_id, row["epoch"]) for trial_id, trial in trial_results(run_dir).items()
              for row in trial}
    try:
        _, board = assert_finished_once(run_dir, args.trials)
        agree, retries = "yes", int(board["retries"].sum())
    except AssertionError as err:
        agree, retries = f"no: {str(err).splitlines()[0][:60]}", -1
    run = json.loads((run_dir / "run.json").read_text())
    return {"wall": wall, "search": run.get("search_seconds", float("nan")), "lost_at": lost_at,
            "epochs": len(rows), "again": len(rows) - len(epochs), "retries": retries,
            "agree": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--after", type=int, default=12, help="epochs heard before the loss")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, in turn")
    args = parser.parse_args()
    print(f"{args.trials} trials of benchmarks/sleepy_task.py (1-second epochs), 4 worker nodes "
          f"of 1 CPU; {os.cpu_count()} CPUs")
    print(f"{'cluster':<14} {'wall s':>7} {'search s':>9} {'lost at s':>10} {'epochs':>7} "
          f"{'again':>6} {'retries':>8}  every trial once, study = leaderboard")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for label, lose in (("undisturbed", False), ("loses a node", True)):
                r = one_run(Path(tmp), f"{'lose' if lose else 'keep'}{i}", args, lose)
                lost = "-" if r["lost_at"] is None else f"{r['lost_at']:.1f}"
                print(f"{label:<14} {r['wall']:>7.1f} {r['search']:>9.1f} {lost:>10} "
                      f"{r['epochs']:>7} {r['again']:>6} {r['retries']:>8}  {r['agree']}",
                      flush=True)


if __name__ == "__main__":
    main()
