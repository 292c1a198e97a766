"""Chaos: a small search killed N times at random moments (SIGKILL to the whole process group, as a
power cut), resumed each time, then checked against what an uninterrupted run must hold.

    python benchmarks/chaos.py                  # 10 kills
    python benchmarks/chaos.py --kills 3 --seed 1

Prints the kills survived, the trials finished, repeated (a Ray trial run twice, or more trials
than asked for: must be 0) and lost (asked for but never ended: must be 0), the epochs trained
again after kills (work since the last snapshot, expected), and whether the study, history.csv
and leaderboard.csv agree trial by trial. The data are the first 10,000 training and 1,000 test
images of FashionMNIST, written as IDX files to a temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import torch

from results.experiment import read_results
from trainables.rundir import HISTORY_FILE, LEADERBOARD_FILE, RUN_FILE
from trainables.idx import FILES, load_dataset
from results.study import LOST, by_ray_trial, journal

NUM_SAMPLES = 32
SEARCH = ["--space", "sgd_vs_adam", "--num-samples", str(NUM_SAMPLES), "--max-epochs", "8",
          "--grace-period", "2", "--reduction-factor", "2", "--confirm-seeds", "0",
          "--val-size", "1000", "--full-budget"]  # every trial, for every kill to land on


def write_subset(directory: Path, train: int = 10_000, test: int = 1_000) -> None:
    """The first images of FashionMNIST as the four gzipped IDX files."""
    splits = load_dataset("fashion_mnist")
    tensors = (splits[0].images[:train], splits[0].labels[:train], splits[1].images[:test],
               splits[1].labels[:test])
    for name, tensor in zip(FILES["train"] + FILES["test"], tensors):
        header = b"\x00\x00\x08" + bytes([tensor.dim()]) + struct.pack(
            f">{tensor.dim()}I", *tensor.shape)
        data = tensor.to(torch.uint8).contiguous().numpy().tobytes()
        (directory / f"{name}.gz").write_bytes(gzip.compress(header + data))


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tuning.run", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def check(run_dir: Path, num_samples: int) -> dict[str, object]:
    """What the run holds after its last resume, trial by trial."""
    study = optuna.load_study(study_name=run_dir.name, storage=journal(run_dir))
    kept = [t for t in study.trials if t.user_attrs.get("reason") != LOST]
    by_ray = Counter(t.user_attrs["ray_trial_id"] for t in kept if "retry_of" not in t.user_attrs)
    last = by_ray_trial(study)
    rows = {p.parent.name.removeprefix("trial_"): read_results(p)
            for p in run_dir.glob("trial_*/result.json")}
    ended = [t for t in last.values() if t.state != optuna.trial.TrialState.RUNNING]
    board = pd.read_csv(run_dir / LEADERBOARD_FILE)
    history = pd.read_csv(run_dir / HISTORY_FILE)
    agree = sorted(board["trial_id"]) == sorted(last) == sorted(rows)
    for rid, trial in last.items():
        status = board.loc[board["trial_id"] == rid, "status"]
        steps = sorted(history.loc[history["trial_id"] == rid, "epoch"])
        agree &= len(status) == 1 and status.iloc[0] == trial.user_attrs.get("reason")
        if trial.user_attrs.get("reason") != "diverged":  # its NaN epoch is in the history only
            agree &= steps == sorted(trial.intermediate_values)
    return {
        "finished": len(ended),
        "repeated": sum(n - 1 for n in by_ray.values()) + max(0, len(rows) - num_samples),
        "lost": num_samples - len(ended),
        "epochs again": sum(len(r) - len({x["epoch"] for x in r}) for r in rows.values()),
        "lost_in_crash": len(study.trials) - len(kept),
        "agree": agree,
    }


def kill_and_resume(base: list[str], run_dir: Path, kills: int, between: tuple[float, float],
                    moments: random.Random, started: float) -> int:
    """Start the run (then --resume it) and SIGKILL its process group a random while later, up
    to `kills` times; the kills done (fewer where the run ended first)."""
    killed = 0
    while killed < kills:
        resume = ["--resume"] if (run_dir / RUN_FILE).is_file() else []
        process = start([*base, *resume])
        try:
            process.wait(timeout=moments.uniform(*between))
            print(f"run ended by itself after {killed} kills, rc {process.returncode}")
            break
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            killed += 1
            print(f"kill {killed} at {time.time() - started:.0f} s", flush=True)
    return killed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10, help="kills before the last resume (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default: 0)")
    p.add_argument("--between", type=float, nargs=2, default=(4.0, 20.0), metavar=("LO", "HI"),
                   help="seconds from a start to its kill, drawn uniformly (default: 4 20)")
    p.add_argument("--keep", type=Path, help="run in this new folder and keep it (default: a "
                                             "temporary folder, removed at the end)")
    opts = p.parse_args()
    moments = random.Random(opts.seed)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        tmp = Path(opts.keep or tmp)
        (tmp / "data").mkdir(parents=True)
        write_subset(tmp / "data")
        base = [*SEARCH, "--data-dir", str(tmp / "data"), "--storage-path", str(tmp),
                "--name", "chaos"]
        run_dir, started = tmp / "chaos", time.time()
        killed = kill_and_resume(base, run_dir, opts.kills, opts.between, moments, started)
        final = subprocess.run([sys.executable, "-m", "tuning.run", *base, "--resume"],
                               capture_output=True, text=True)
        if final.returncode != 0:
            print(f"last resume failed (rc {final.returncode}): {final.stderr.strip()[-2000:]}")
            raise SystemExit(1)
        figures = check(run_dir, NUM_SAMPLES)
        status = json.loads((run_dir / RUN_FILE).read_text())["status"]
    print(f"kills survived   {killed} of {opts.kills}")
    print(f"run status       {status}, {time.time() - started:.0f} s in all")
    print(f"trials finished  {figures['finished']} of {NUM_SAMPLES}")
    print(f"trials repeated  {figures['repeated']}")
    print(f"trials lost      {figures['lost']}")
    print(f"epochs again     {figures['epochs again']} (trained again after a kill: the work "
          "since the last snapshot)")
    print(f"lost_in_crash    {figures['lost_in_crash']} study trials handed out that Ray never ran")
    print(f"agree            {'yes' if figures['agree'] else 'NO'}: study, history.csv and "
          "leaderboard.csv, trial by trial")


if __name__ == "__main__":
    main()
