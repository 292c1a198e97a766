"""Running `python -m tuning.run` as a user does, stopping it as the world does, and reading back
what it left: the study, each trial's reported rows and the leaderboard."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from results.experiment import load_experiment, read_results
from results.study import journal as study_journal

RUN = [sys.executable, "-m", "tuning.run"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """3,000 training and 500 test images of the learnable generated kind, as IDX files."""
    from conftest import make_split, write_idx_files

    directory = tmp_path_factory.mktemp("idx")
    write_idx_files(directory, make_split(3000, seed=1), make_split(500, seed=2))
    return directory


def run_cli(*args, timeout=300, **kwargs):
    return subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def start_run(*args, **kwargs):
    """The command in a session of its own, so that the whole Ray it starts can be killed."""
    return subprocess.Popen([*RUN, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, **kwargs)


S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextlib.contextmanager
def s3_server():
    """An S3-compatible server (moto's) on the loopback address, with a bucket, stopped by its pid
    at the end: the URI of a folder in the bucket, for --storage-path. The credentials it takes
    (S3_ENV) must be in the environment of whatever reaches it."""
    import socket

    import pyarrow.fs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"endpoint_override=127.0.0.1:{port}&scheme=http"
    try:
        deadline = time.time() + 60
        while True:
            try:
                filesystem, _ = pyarrow.fs.FileSystem.from_uri(
                    f"s3://bucket?{endpoint}&allow_bucket_creation=true")
                filesystem.create_dir("bucket")
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield f"s3://bucket/runs?{endpoint}"
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture
def s3_bucket(monkeypatch):
    """s3_server's bucket URI, its credentials in the environment, which the Ray nodes a test
    starts inherit."""
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    with s3_server() as uri:
        yield uri


def bucket_files(uri, folder):
    """Every file in a folder under a bucket URI, by its path below the folder."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(uri)
    root = f"{root}/{folder}"
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True,
                                                             allow_not_found=True))
    return [info.path[len(root) + 1:] for info in found if info.type == pyarrow.fs.FileType.File]


def kill_run(process):
    """SIGKILL to the driver and every Ray process it started, as a power cut would."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for(condition, process, timeout=240, poll=0.05):
    """Poll until condition() holds; False if the process ended or the time ran out first."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(poll)
    return False


def trial_results(run_dir):
    """Each trial directory's reported rows, keyed by trial id."""
    rows = {}
    for path in Path(run_dir).glob("trial_*/result.json"):
        lines = read_results(path)
        if lines:
            rows[lines[0]["trial_id"]] = lines
    return rows


def load_study(run_dir):
    return optuna.load_study(study_name=Path(run_dir).name, storage=study_journal(Path(run_dir)))


def journal(run_dir):
    """The study journal's operations, read line by line as a running search appends them."""
    path = Path(run_dir) / "optuna.journal"
    logs = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            logs.append(json.loads(line))
        except json.JSONDecodeError:  # the line being written
            continue
    return logs


def journal_ends(run_dir):
    """How many trial endings (COMPLETE, PRUNED or FAIL) the journal holds."""
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(log.get("op_code") == 6 and log.get("state") in ended  # SET_TRIAL_STATE_VALUES
               for log in journal(run_dir))


def journal_trials(run_dir):
    """Each Ray trial the journal names, in the order the study made them: (the epochs it has
    heard of it, whether it has ended)."""
    ray_ids, epochs, ended, created = {}, {}, set(), 0
    for log in journal(run_dir):
        number = log.get("trial_id")
        if log.get("op_code") == 4:  # CREATE_TRIAL: the id comes with an enqueued trial
            number, created = created, created + 1  # the storage numbers trials as it makes them
            if "ray_trial_id" in log.get("user_attrs", {}):
                ray_ids[number] = log["user_attrs"]["ray_trial_id"]
        elif log.get("op_code") == 8 and "ray_trial_id" in log["user_attr"]:  # SET_TRIAL_USER_ATTR
            ray_ids[number] = log["user_attr"]["ray_trial_id"]  # a study of an earlier version
        elif log.get("op_code") == 7:  # SET_TRIAL_INTERMEDIATE_VALUE
            epochs.setdefault(number, set()).add(log["step"])
        elif log.get("op_code") == 6 and log.get("state") in (  # SET_TRIAL_STATE_VALUES
                TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            ended.add(number)
    return {ray_id: (len(epochs.get(number, ())), number in ended)
            for number, ray_id in sorted(ray_ids.items())}


def training_workers(raylets=(), session=None):
    """The pids of the Ray workers training a trial now (process title ray::ImplicitFunc.train):
    those started by these raylets' pids, or in this session (a command started by start_run),
    and no other Ray's on this machine."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0]
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, sid
        except OSError:
            continue
        if title.startswith(b"ray::ImplicitFunc.train") and (
                int(stat[1]) in raylets or int(stat[3]) == session):
            pids.append(int(proc.name))
    return pids


def checkpoints(run_dir, trial_ids=None):
    """The checkpoint directories the run's trials (these trials) hold, confirmation's too."""
    return [path for path in Path(run_dir).glob("**/trial_*/checkpoint_*")
            if trial_ids is None or path.parent.name.removeprefix("trial_") in trial_ids]


def run_status(run_dir):
    return json.loads((Path(run_dir) / "run.json").read_text())["status"]


def run_phase(run_dir):
    return json.loads((Path(run_dir) / "run.json").read_text()).get("phase")


def assert_finished_once(run_dir, num_samples):
    """The run is finished with every trial once: one Ray trial directory per trial, each trial
    ended once in the study (a retry of an errored trial continues it under the same id), no
    trial left running, and the study, the trials' rows and leaderboard.csv agree trial by trial."""
    assert run_status(run_dir) == "finished"
    assert not checkpoints(run_dir), "a finished run keeps no checkpoint"
    study = load_study(run_dir)
    assert not [t.number for t in study.trials if t.state == TrialState.RUNNING]
    kept = [t for t in study.trials if t.user_attrs.get("reason") != "lost_in_crash"]
    last = {}  # Ray trial id -> its last study trial (the retry, where there was one)
    for trial in kept:
        rid = trial.user_attrs["ray_trial_id"]
        assert rid not in last or trial.user_attrs.get("retry_of") == last[rid].number, \
            f"Ray trial {rid} is in the study twice without being a retry"
        last[rid] = trial
    # each trial's epochs as the reports read them: result.json, and the epochs the study heard
    # that Ray had not copied there yet when the run was killed
    history = load_experiment(run_dir).history
    reported = {rid: sorted(set(rows["epoch"])) for rid, rows in history.groupby("trial_id")}
    assert len(last) == num_samples and set(reported) == set(last), (sorted(last), sorted(reported))
    board = pd.read_csv(Path(run_dir) / "leaderboard.csv")
    assert sorted(board["trial_id"]) == sorted(last)
    status = dict(zip(board["trial_id"], board["status"]))
    for rid, trial in last.items():
        assert status[rid] == trial.user_attrs["reason"], (rid, status[rid], trial.user_attrs)
        epochs = reported[rid]
        if trial.user_attrs["reason"] == "diverged":  # its NaN epoch is in the rows only
            continue
        assert epochs == sorted(trial.intermediate_values), (rid, epochs, trial.intermediate_values)
        assert epochs == list(range(1, len(epochs) + 1)), f"trial {rid} skipped epochs: {epochs}"
    return study, board


def assert_raced_confirmed_and_reported(run_dir, baseline, column, budget,
                                        values=("sgd", "adam")):
    """A finished run scored by `column`: trial 0 is the task's baseline, marked in study and
    leaderboard; both optimizers (`values`) raced; confirmation ran seeds 0 and 1 of each
    optimizer's best for the full budget; the report was written. Returns the leaderboard and
    summary.md."""
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["metric"] == column
    study = optuna.load_study(study_name=run["study_name"],
                              storage=study_journal(run_dir))
    first = study.trials[0]
    assert first.user_attrs["baseline"] is True
    assert {k: first.params[k] for k in first.params} == {
        k: v for k, v in baseline.items() if k in first.params}
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert len(board) == budget["num_samples"] and set(board["optimizer"]) == set(values)
    assert board.loc[board["baseline"], "trial_id"].tolist() == [first.user_attrs["ray_trial_id"]]
    confirmed = pd.read_csv(run_dir / "confirmation.csv")
    assert set(confirmed["optimizer"]) == set(values) and column in confirmed.columns
    for _, seeds in confirmed.groupby("trial_id"):
        assert sorted(seeds["seed"]) == [0, 1] and set(seeds["epochs_run"]) == {budget["max_epochs"]}
    summary = (run_dir / "summary.md").read_text()
    assert (run_dir / "report.html").stat().st_size > 10_000
    return board, summary
