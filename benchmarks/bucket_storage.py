"""Trials kept in a bucket against trials kept in a folder: the same search, side by side.

    python benchmarks/bucket_storage.py                  # 24 trials, confirmation of 2 seeds
    python benchmarks/bucket_storage.py --trials 48 --repeat 2

An S3-compatible server (moto's, from PyPI: pip install -e '.[test]') runs on the loopback
address. The same search (benchmarks/sleepy_task.py: 4 epochs of 0.25 s a trial, our searcher and
race, then confirmation) runs with --storage-path a local folder, then the bucket, in turn. Printed
for each run: the command's wall seconds, the search's and confirmation's seconds (run.json), the
bytes per Ray trial where the trials live (the folder, or the bucket) and in the run directory the
command keeps (with a bucket: the study, run.json, the reports and the trials' copied results).
Moto keeps the bucket in memory on this machine: the figures are the cost of going through S3's
protocol, not of a network.
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

from runs import S3_ENV, s3_server  # noqa: E402  (tests/runs.py: the server the tests use)
from tuning.storage import LOCAL_ROOT, is_uri  # noqa: E402


def bucket_bytes(uri: str, folder: str) -> tuple[int, int]:
    """Bytes and Ray trial directories in a folder under a bucket URI."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(uri)
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(f"{root}/{folder}", recursive=True))
    trials = {info.path for info in found if info.type == pyarrow.fs.FileType.Directory
              and info.base_name.startswith("trial_")}
    return sum(info.size for info in found if info.type == pyarrow.fs.FileType.File), len(trials)


def folder_bytes(path: Path) -> tuple[int, int]:
    """Bytes and Ray trial directories in a local folder."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(list(path.glob("**/trial_*/")))


def one_run(storage: str, work: Path, name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "tuning.run", "--space", str(ROOT / "benchmarks" /
               "sleepy_task.py"), "--num-samples", str(args.trials), "--confirm-seeds", "2",
               "--storage-path", storage, "--name", name]
    env = {**os.environ, **S3_ENV, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{storage}: the run failed: {done.stderr[-2000:]}")
    local = (work / LOCAL_ROOT / name) if is_uri(storage) else Path(storage) / name
    run = json.loads((local / "run.json").read_text())
    kept, trials = bucket_bytes(storage, name) if is_uri(storage) else folder_bytes(local)
    return {"wall": wall, "search": run["search_seconds"], "confirm": run["confirm_seconds"],
            "trials": trials, "kept": kept, "local": folder_bytes(local)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, in turn")
    args = parser.parse_args()
    print(f"{args.trials} trials of benchmarks/sleepy_task.py, then confirmation; "
          f"{os.cpu_count()} CPUs")
    print(f"{'storage':<8} {'wall s':>7} {'search s':>9} {'confirm s':>10} {'Ray trials':>10} "
          f"{'KB/trial there':>15} {'KB/trial local':>15}")
    with tempfile.TemporaryDirectory() as tmp, s3_server() as uri:
        os.environ.update(S3_ENV)
        for i in range(args.repeat):
            for label, storage in (("folder", str(Path(tmp) / "runs")), ("bucket", uri)):
                r = one_run(storage, Path(tmp), f"{label}{i}", args)
                print(f"{label:<8} {r['wall']:>7.1f} {r['search']:>9.1f} {r['confirm']:>10.1f} "
                      f"{r['trials']:>10} {r['kept'] / r['trials'] / 1e3:>15.1f} "
                      f"{r['local'] / r['trials'] / 1e3:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
