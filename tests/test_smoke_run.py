"""The README's --smoke-test command run as written (one run, conftest.smoke_run, for every test
here: a file's tests share a pytest-xdist worker), and the viewers its users already know,
TensorBoard and optuna-dashboard, reading it."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trainables.rundir import BEST_CONFIG_FILE, LEADERBOARD_FILE, RUN_FILE, STUDY_FILE

pytestmark = pytest.mark.slow


def finished(smoke_run):
    done, run_dir = smoke_run
    if done.returncode != 0 or run_dir is None:
        pytest.fail(f"the README's smoke-test run failed: {done.stderr[-2000:]}")
    return run_dir


def test_readme_smoke_test_runs_as_written(smoke_run):
    """The README's --smoke-test command finishes a run of 4 trials with its reports, exit code 0."""
    done, run_dir = smoke_run
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_dir is not None
    assert json.loads((run_dir / RUN_FILE).read_text())["status"] == "finished"
    assert len((run_dir / LEADERBOARD_FILE).read_text().splitlines()) == 1 + 4
    assert json.loads((run_dir / BEST_CONFIG_FILE).read_text())["epochs"] == 2


def test_the_console_is_ours_ray_tunes_tables_only_with_verbose(smoke_run):
    """The run's console holds our lines, not Ray Tune's: no box of the experiment's settings, no
    status tables, no per-trial boxes, no internal numbers; it ends with the answer and the
    commands that open this run in the viewers, named by its run directory."""
    done, run_dir = smoke_run
    run_dir = finished(smoke_run)
    out = done.stdout + done.stderr
    for ray_line in ("Configuration for experiment", "Trial status", "started with configuration",
                     "9223372036854775807", "driver_artifacts", "Started a local Ray instance",
                     "Wrote the latest version"):
        assert ray_line not in out, ray_line
    assert "[search] 4 of 4 trials ended" in done.stdout
    name = run_dir.name
    assert f"tensorboard --logdir runs/{name}" in done.stdout
    assert f"optuna-dashboard runs/{name}/{STUDY_FILE}" in done.stdout
    answer = (run_dir / "summary.md").read_text().split("\n\n")[0].split()
    assert " ".join(answer[:12]) in " ".join(done.stdout.split())
    assert len(done.stdout.splitlines()) <= 60, done.stdout


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="needs tensorboard (pip install -e '.[dashboard]')")
def test_tensorboard_reads_every_trials_val_accuracy(smoke_run):
    """Each search trial's TensorBoard events hold its val_accuracy per epoch, as result.json has it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial_dirs = sorted(finished(smoke_run).glob("trial_*/"))
    assert len(trial_dirs) == 4
    for trial_dir in trial_dirs:
        events = EventAccumulator(str(trial_dir))
        events.Reload()
        logged = [(e.step, e.value) for e in events.Scalars("ray/tune/val_accuracy")]
        lines = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        expected = [(r["training_iteration"], r["val_accuracy"]) for r in lines]
        assert [step for step, _ in logged] == [step for step, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, deadline):
    """GET url as JSON, retrying while the server starts, until the deadline."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is None,
                    reason="needs optuna-dashboard (pip install -e '.[dashboard]')")
def test_optuna_dashboard_serves_the_runs_study(smoke_run):
    """optuna-dashboard on the run's journal answers with the study's trials, states and values."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run_dir = finished(smoke_run)
    name = json.loads((run_dir / RUN_FILE).read_text())["study_name"]
    study = optuna.load_study(study_name=name, storage=JournalStorage(
        JournalFileBackend(str(run_dir / STUDY_FILE))))
    port = free_port()
    command = Path(sys.executable).with_name("optuna-dashboard")
    server = subprocess.Popen([str(command), str(run_dir / STUDY_FILE), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", deadline)["study_summaries"]
        assert [s["study_name"] for s in studies] == [name]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}",
                          deadline)
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    served = {t["number"]: t for t in detail["trials"]}
    assert sorted(served) == [t.number for t in study.trials]
    for trial in study.trials:
        assert served[trial.number]["state"].upper() == trial.state.name
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert served[trial.number]["values"] == [trial.value]
