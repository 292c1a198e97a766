"""Tuning overhead: a real search's wall time against the ideal, trials per minute, memory per trial.

    python benchmarks/tuning_overhead.py                       # the default sgd_vs_adam run
    python benchmarks/tuning_overhead.py -- --smoke-test       # arguments after -- go to tuning.run
    python benchmarks/tuning_overhead.py --run-dir runs/NAME   # the figures of a run already made
    python benchmarks/tuning_overhead.py --against REV -- --final   # REV's code, then this, side by side

The ideal is the sum of the trials' own training and evaluation time divided by the number of
trials that can run at once; everything above it is Ray start-up, actor start-up, reporting,
checkpointing, the search itself, and cores left idle while the last trials finish.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from results.experiment import load_experiment
from results.metric import Score
from trainables.rundir import CONFIRMATION_FILE, FINAL_DIR, FINAL_METRICS_FILE, RUN_FILE


def print_memory(history: pd.DataFrame) -> None:
    """The trial processes' peak memory, as trainables.memory reported it with each epoch."""
    trials = history.groupby("trial_id")
    peaks, anon, pss = (trials[k].max().sort_values().tolist()
                        for k in ("peak_rss_mb", "anon_mb", "pss_mb"))
    print(f"memory       peak resident per trial process: max {peaks[-1]:.0f} MiB, "
          f"median {statistics.median(peaks):.0f} MiB, min {peaks[0]:.0f} MiB")
    print(f"             of which its own (anonymous) memory: max {anon[-1]:.0f} MiB; its share with "
          f"shared pages divided (PSS): max {pss[-1]:.0f} MiB, median {statistics.median(pss):.0f} MiB")


def summarize(run_dir: Path, command_seconds: float | None) -> None:
    run = json.loads((run_dir / RUN_FILE).read_text())
    history = load_experiment(run_dir).history
    trials = history.groupby("trial_id")
    cpus = os.cpu_count() or 1
    concurrency = max(1, int(cpus // run["cpus_per_trial"]))
    if run.get("max_concurrent"):
        concurrency = min(concurrency, run["max_concurrent"])
    own = trials["seconds"].sum()
    ideal = own.sum() / concurrency
    confirmation = run_dir / CONFIRMATION_FILE  # its runs' own time counts in the whole command
    confirmed = pd.read_csv(confirmation) if confirmation.is_file() else None
    extra = 0.0 if confirmed is None else \
        confirmed.loc[confirmed["run"] == "confirmation", "seconds"].sum() / concurrency
    fit = run.get("search_seconds", run["wall_seconds"])

    print(f"run          {run_dir}")
    print(f"search       space {run['space']}, {len(own)} trials, {len(history)} epochs, "
          f"{run['cpus_per_trial']:g} CPU per trial, {concurrency} at once on {cpus} CPUs")
    if command_seconds is not None:
        print(f"command      {command_seconds:7.1f} s wall, start to finish (Ray start, data, reports)")
    print(f"Tuner.fit    {fit:7.1f} s wall, the search"
          + (f"; confirmation {run['confirm_seconds']:.1f} s more" if run.get("confirm_seconds")
             else ""))
    print(f"ideal        {ideal:7.1f} s = {own.sum():.1f} s of trials' own training / {concurrency}")
    if extra:
        print(f"             confirmation's ideal {extra:.1f} s more")
    print(f"overhead     {fit / ideal:7.2f}x ideal for Tuner.fit"
          + (f", {command_seconds / (ideal + extra):.2f}x for the whole command"
             if command_seconds else ""))
    print(f"throughput   {len(own) / fit * 60:7.1f} trials per minute, "
          f"{len(history) / fit * 60:.1f} epochs per minute")
    print_memory(history)
    score = Score.of(run)
    print(f"best         {score.format(score.best(history[score.column].dropna()), 2)} "
          f"{score.label}")
    final = run_dir / FINAL_DIR / FINAL_METRICS_FILE
    tested = json.loads(final.read_text()).get(f"test_{score.name}") if final.is_file() else None
    if tested is not None:
        print(f"final        {score.format(tested, 2)} test {score.words}")


def timed_run(command: list[str], cwd: Path, storage: Path) -> float:
    """Seconds `command` (tuning.run) takes from start to finish, run from `cwd`."""
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # that tree's packages, not the installed ones
    start = time.perf_counter()
    subprocess.run(command + ["--storage-path", str(storage)], check=True, cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def against(revision: str, command: list[str], storage: Path) -> None:
    """REVISION's code and this tree's, one after the other on this machine: the ratio of the
    whole command's wall time."""
    root = Path(__file__).resolve().parents[1]
    old_tree = storage / "old-tree"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(old_tree),
                    revision], check=True, capture_output=True)
    try:
        old = timed_run(command, old_tree, storage / "old")
        summarize(storage / "old" / "bench", old)
        new = timed_run(command, root, storage / "new")
        summarize(storage / "new" / "bench", new)
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(old_tree)],
                       check=False, capture_output=True)
    print(f"\nwhole command: {revision} {old:.1f} s, this tree {new:.1f} s: {new / old:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="summarize this run instead of starting one")
    parser.add_argument("--space", default="sgd_vs_adam", help="space to search (default: sgd_vs_adam)")
    parser.add_argument("--against", metavar="REV",
                        help="first run the same command with the code of this git revision")
    parser.add_argument("rest", nargs="*", help="after --: more arguments for tuning.run")
    args = parser.parse_args()
    if args.run_dir:
        summarize(args.run_dir.resolve(), None)
        return
    storage = Path(tempfile.mkdtemp(prefix="tuning-overhead-"))
    command = [sys.executable, "-m", "tuning.run", "--space", args.space, "--name", "bench",
               *args.rest]
    if args.against:
        against(args.against, command, storage)
        return
    root = Path(__file__).resolve().parents[1]
    summarize(storage / "bench", timed_run(command, root, storage))


if __name__ == "__main__":
    main()
