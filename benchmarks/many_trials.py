"""A thousand trials: what a large search costs beyond its trials' own time.

    python benchmarks/many_trials.py                     # 1,000 trials on 16 trial slots
    python benchmarks/many_trials.py --trials 100        # a quick look
    python benchmarks/many_trials.py --against REV       # REV's code first, then this tree's

The search is our own (StudySearch's TPE, the race, Ray trials through our trainable) on
benchmarks/sleepy_task.py, whose training epoch sleeps 0.25 s: a trial of 4 epochs takes 1 s, as in
Ray Tune's own bookkeeping test (10,000 one-second trials on 16 CPUs within 800 s, 625 s ideal).
Ray is started with --cpus logical CPUs (16 slots by default), more than this machine's cores:
the trials sleep, and what uses the cores is the bookkeeping this measures. Both trees of
--against get the same environment (TUNE_FUNCTION_THREAD_TIMEOUT_S=60, see drive). Printed:

  wall         Tuner.fit's seconds against the ideal: the epochs the race ran, times their mean
               time, over the slots
  overhead     seconds a trial beyond its own time
  start-up     seconds until every slot held a running trial
  memory       the driver's resident memory after 100, 500 and 1,000 trials had been suggested
  journal      the study file's bytes per trial
  suggestion   the searcher's seconds for trials 10, 100 and 1,000 (each the median of the 5 around)
  disk         the run directory's bytes per trial at the end
  resume       the seconds `python -m tuning.run --resume` takes on the finished run
  reports      the seconds `python -m results.report` takes on it
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "benchmarks" / "sleepy_task.py"
MARKS = (100, 500, 1000)
SUGGESTIONS = (10, 100, 1000)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def drive(args: argparse.Namespace) -> None:
    """In a process of its own, with the tree under test first on PYTHONPATH: the search, timed
    and sampled; its figures as JSON to args.out."""
    # Ray's 2 s wait for a reused worker's last trial fails trials on a busy machine, and before
    # our race heard such failures the search then waited for ever: both trees get 60 s
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "60")
    from tuning.api import tune
    from tuning.cluster import quiet

    quiet(None)  # the environment tuning.run gives the Ray it starts, set before this one starts
    import ray

    from results.experiment import load_experiment
    from tuning import progress, searcher

    suggested: list[float] = []  # seconds per suggestion that made a trial
    original = searcher.StudySearch.suggest

    def timed(self, trial_id):
        start = time.perf_counter()
        config = original(self, trial_id)
        if isinstance(config, dict):
            suggested.append(time.perf_counter() - start)
        return config

    searcher.StudySearch.suggest = timed
    ray.init(num_cpus=args.cpus, include_dashboard=False)
    memory: dict[int, float] = {}
    busy: list[float] = []  # seconds until as many trials ran at once as there are slots
    running: set[str] = set()
    started = time.perf_counter()
    done = threading.Event()

    def on_trial_start(self, iteration, trials, trial, **info):  # Tune's callback hooks
        running.add(trial.trial_id)
        if len(running) >= args.cpus and not busy:
            busy.append(time.perf_counter() - started)

    def ends(hook):
        def ended(self, iteration, trials, trial, **info):
            running.discard(trial.trial_id)
            return hook(self, iteration, trials, trial, **info)
        return ended

    progress.Progress.on_trial_start = on_trial_start
    progress.Progress.on_trial_complete = ends(progress.Progress.on_trial_complete)
    progress.Progress.on_trial_error = ends(progress.Progress.on_trial_error)

    def sample() -> None:  # the driver's memory as the trials come
        while not done.wait(0.1):
            for mark in MARKS:
                if mark not in memory and len(suggested) >= mark:
                    memory[mark] = rss_mb()

    threading.Thread(target=sample, daemon=True).start()
    tuned = tune(str(TASK), num_samples=args.trials, confirm_seeds=0, seed=0, full_budget=True,
                 storage_path=str(args.storage), name="many")
    done.set()
    run = json.loads((tuned.run_dir / "run.json").read_text())
    history = load_experiment(tuned.run_dir).history
    memory.setdefault(len(suggested), rss_mb())
    around = {n: statistics.median(suggested[max(0, n - 3):n + 2]) for n in SUGGESTIONS
              if n <= len(suggested)}
    figures = {
        "trials": len(suggested), "epochs": len(history), "search_seconds": run["search_seconds"],
        "epoch_seconds": float(history["seconds"].mean()), "cpus": args.cpus,
        "all_busy_seconds": busy[0] if busy else None,
        "memory_mb": {str(k): v for k, v in sorted(memory.items())},
        "journal_bytes": (tuned.run_dir / "optuna.journal").stat().st_size,
        "suggest_seconds": {str(k): v for k, v in around.items()},
        "disk_bytes": disk_bytes(tuned.run_dir), "status": run["status"],
    }
    ray.shutdown()
    Path(args.out).write_text(json.dumps(figures))


def timed(command: list[str], tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(tree: Path, storage: Path, args: argparse.Namespace) -> dict:
    """The search with `tree`'s code, then its resume and its reports."""
    out = storage / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with open(storage / "driver.log", "w") as log:
        subprocess.run([sys.executable, __file__, "--driver", "--trials", str(args.trials),
                        "--cpus", str(args.cpus), "--storage", str(storage), "--out", str(out)],
                       check=True, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    figures = json.loads(out.read_text())
    run_dir = storage / "many"
    figures["resume_seconds"] = timed([sys.executable, "-m", "tuning.run", "--space", str(TASK),
                                       "--resume", "--storage-path", str(storage), "--name",
                                       "many"], tree)
    figures["report_seconds"] = timed([sys.executable, "-m", "results.report", str(run_dir)], tree)
    return figures


def show(label: str, f: dict) -> None:
    trials, slots = f["trials"], f["cpus"]
    ideal = f["epochs"] * f["epoch_seconds"] / slots
    memory = f["memory_mb"]
    marks = [int(k) for k in memory]
    growth = ((memory[str(marks[-1])] - memory[str(marks[0])]) * 1024 / (marks[-1] - marks[0])
              if len(marks) > 1 else float("nan"))
    print(f"\n{label}: {trials} trials, {f['epochs']} epochs, {slots} slots ({f['status']})")
    print(f"  wall         {f['search_seconds']:.0f} s against {ideal:.0f} s ideal: "
          f"{f['search_seconds'] / ideal:.2f}x")
    print(f"  overhead     {(f['search_seconds'] - ideal) * slots / trials:.2f} s a trial")
    busy = f["all_busy_seconds"]
    print(f"  start-up     {'never' if busy is None else f'{busy:.1f} s'} until every slot "
          "ran a trial at once")
    print("  memory       " + ", ".join(f"{v:.0f} MiB at {k}" for k, v in memory.items())
          + f": {growth:.0f} KiB a trial")
    print(f"  journal      {f['journal_bytes'] / trials / 1024:.1f} KiB a trial")
    print("  suggestion   " + ", ".join(f"{v * 1000:.0f} ms at {k}"
                                         for k, v in f["suggest_seconds"].items()))
    print(f"  disk         {f['disk_bytes'] / trials / 1024:.0f} KiB a trial, "
          f"{f['disk_bytes'] / 2**20:.0f} MiB in all")
    print(f"  resume       {f['resume_seconds']:.1f} s")
    print(f"  reports      {f['report_seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=16, help="trial slots: Ray's logical CPUs")
    parser.add_argument("--against", metavar="REV", help="first measure this git revision's code")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        drive(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.against:
            old = tmp / "old-tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                            args.against], check=True, capture_output=True)
            try:
                (tmp / "old").mkdir()
                show(args.against, measure(old, tmp / "old", args))
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                               check=False, capture_output=True)
        (tmp / "new").mkdir()
        show("this tree", measure(ROOT, tmp / "new", args))


if __name__ == "__main__":
    main()
