"""--mlflow (tuning.tracking): a real Ray Tune search logged to a real MLflow tracking server on
the loopback address, each trial a run under the run's parent, which holds the answer; a resume
going on into the same runs; the one-line error without mlflow."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from trainables.cli import UsageError
from trainables.rundir import RUN_FILE, write_json
from tuning import tracking

ROOT = Path(__file__).resolve().parents[1]

EPOCHS = 3
ANSWER = "Adam is better: 88.8% against 87.2% for SGD."


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """An MLflow tracking server on the loopback address (SQLite runs, artifacts through the
    server), its process group stopped at the end: its URI."""
    folder = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # no job runner: it would start seven more processes on a small machine
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
             "--artifacts-destination", str(folder / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "the MLflow server did not answer in 120 s"
            time.sleep(0.2)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def fake_reports(run_dir):
    """The report files tuning.tracking.finish logs: summary.md, leaderboard.csv, a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / "summary.md").write_text(f"{ANSWER}\n\nQuestion: SGD or Adam?\n")
    (run_dir / "leaderboard.csv").write_text("rank,optimizer,val_accuracy\n1,adam,0.888\n")
    (run_dir / "figures").mkdir()
    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    figure.savefig(run_dir / "figures" / "x.png")
    plt.close(figure)


def finish(run_dir, status):
    """tracking.finish on a run whose run.json says `status`."""
    write_json(run_dir / RUN_FILE, {"status": status})
    tracking.finish(run_dir)


def accuracy(config, epoch):
    return round(0.5 + epoch * config["lr"], 6)


def make_trainable(cut):
    """A function trainable reporting val_accuracy after each of its EPOCHS, with a checkpoint;
    the trial of lr 0.1 fails at its second epoch while the file `cut` is there."""

    def trainable(config):
        from ray import tune

        start = 0
        if tune.get_checkpoint():
            with tune.get_checkpoint().as_directory() as folder:
                start = int((Path(folder) / "epoch").read_text())
        for epoch in range(start + 1, EPOCHS + 1):
            if epoch == 2 and config["lr"] == 0.1 and cut.exists():
                raise RuntimeError("cut")
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "epoch").write_text(str(epoch))
                tune.report({"epoch": epoch, "val_accuracy": accuracy(config, epoch)},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    return trainable


@pytest.mark.slow
def test_trials_and_answer_in_mlflow_and_a_resume_goes_on_in_them(mlflow_server, tmp_path):
    """A search of 3 trials, one of which errors, logged under a new parent run that finish()
    then ends KILLED; a resume (start, Tuner.restore) goes on into the same parent and the errored
    trial's own run, and finish() leaves the answer and the report files with the parent, every
    run FINISHED, each trial's run with its config and one val_accuracy an epoch."""
    import mlflow
    import ray
    from ray import tune

    run_dir = tmp_path / "runs" / "sgd_vs_adam-20260101-000000"
    run_dir.mkdir(parents=True)
    cut = tmp_path / "cut"
    cut.touch()
    uri = tracking.tracking_uri(mlflow_server)
    assert uri == mlflow_server
    tracking.start(uri, run_dir, resume=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import it
    try:
        tuner = tune.Tuner(make_trainable(cut), param_space={
            "lr": tune.grid_search([0.1, 0.01, 0.001]), "optimizer": "adam", "batch_size": 64},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), name="search",
                                      callbacks=tracking.callbacks(run_dir, "search"), verbose=0))
        assert len(tuner.fit().errors) == 1
        finish(run_dir, "interrupted")
        client, tracked = mlflow.MlflowClient(uri), tracking.recorded(run_dir)
        parent = tracked["parent_run_id"]
        assert client.get_run(parent).info.status == "KILLED"
        failed = client.search_runs([tracked["experiment_id"]], "attributes.status = 'FAILED'")
        assert [run.data.params["lr"] for run in failed] == ["0.1"]

        cut.unlink()  # the resume: the same parent, the errored trial from its checkpoint
        tracking.start(None, run_dir, resume=True)
        assert client.get_run(parent).info.status == "RUNNING"
        results = tune.Tuner.restore(str(tmp_path / "ray" / "search"), make_trainable(cut),
                                     resume_errored=True).fit()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()
    assert not results.errors
    fake_reports(run_dir)
    finish(run_dir, "finished")

    experiments = client.search_experiments(filter_string=f"name = '{run_dir.name}'")
    assert [e.experiment_id for e in experiments] == [tracked["experiment_id"]]
    runs = client.search_runs([tracked["experiment_id"]])
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    (top,) = [run for run in runs if run.info.run_id == parent]
    assert top.info.run_name == run_dir.name
    assert top.data.tags["answer"] == ANSWER == top.data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(parent)} == {
        "summary.md", "leaderboard.csv", "figures"}
    assert [a.path for a in client.list_artifacts(parent, "figures")] == ["figures/x.png"]
    copy = client.download_artifacts(parent, "summary.md", str(tmp_path))
    assert Path(copy).read_text() == (run_dir / "summary.md").read_text()

    children = {run.data.tags["trial_id"]: run for run in runs if run.info.run_id != parent}
    assert sorted(children) == sorted(result.metrics["trial_id"] for result in results)
    for result in results:
        run = children[result.metrics["trial_id"]]
        assert run.data.tags[tracking.PARENT_TAG] == parent
        assert run.data.tags["phase"] == "search"
        assert run.data.params == {key: str(value) for key, value in result.config.items()}
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (epoch, accuracy(result.config, epoch)) for epoch in range(1, EPOCHS + 1)]


@pytest.mark.slow
def test_a_resume_refuses_another_mlflow_and_a_cut_ends_the_runs_killed(mlflow_server, tmp_path):
    """A trial's run a cut left RUNNING ends KILLED with its parent; a resume with another
    --mlflow, or with --mlflow for a run started without it, is refused in one line."""
    import mlflow

    run_dir, plain = tmp_path / "tracked", tmp_path / "plain"
    run_dir.mkdir(), plain.mkdir()
    tracking.start(mlflow_server, run_dir, resume=False)
    tracked = tracking.recorded(run_dir)
    client = mlflow.MlflowClient(mlflow_server)
    running = client.create_run(tracked["experiment_id"], tags={
        tracking.PARENT_TAG: tracked["parent_run_id"]}).info.run_id
    finish(run_dir, "stopped_at_time_budget")  # no summary.md yet: nothing to log
    assert client.get_run(running).info.status == "KILLED"
    assert client.get_run(tracked["parent_run_id"]).info.status == "KILLED"
    assert not client.list_artifacts(tracked["parent_run_id"])
    with pytest.raises(UsageError, match=r"^--mlflow http://127.0.0.1:1 differs from the run's "):
        tracking.start("http://127.0.0.1:1", run_dir, resume=True)
    with pytest.raises(UsageError, match="differs from the run, started without it"):
        tracking.start(mlflow_server, plain, resume=True)


@pytest.mark.slow
def test_the_command_logs_its_trials_and_answer_to_the_server(mlflow_server, tmp_path):
    """python -m tuning.run --mlflow URI, as a user runs it: one experiment named for the run, its
    parent run FINISHED with the answer of summary.md and the report files, one run under it for
    each trial of the search (config, status, one val_accuracy an epoch) and of the
    confirmation."""
    import mlflow
    import pandas as pd

    done = subprocess.run(
        [sys.executable, "-m", "tuning.run", "--space", "sgd_vs_adam", "--smoke-test",
         "--storage-path", str(tmp_path / "runs"), "--name", "by-command", "--mlflow", mlflow_server],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "by-command"
    client = mlflow.MlflowClient(mlflow_server)
    (experiment,) = client.search_experiments(filter_string="name = 'by-command'")
    runs = client.search_runs([experiment.experiment_id])
    parent = tracking.recorded(run_dir)["parent_run_id"]
    (top,) = [run for run in runs if run.info.run_id == parent]
    answer = (run_dir / "summary.md").read_text().split("\n\n")[0]
    assert top.info.status == "FINISHED" and top.data.tags["answer"] == answer
    assert {"summary.md", "leaderboard.csv", "figures"} <= {
        a.path for a in client.list_artifacts(parent)}
    children = [run for run in runs if run.info.run_id != parent]
    assert {run.data.tags[tracking.PARENT_TAG] for run in children} == {parent}
    board = pd.read_csv(run_dir / "leaderboard.csv")
    search = {run.data.tags["trial_id"]: run for run in children
              if run.data.tags["phase"] == "search"}
    assert sorted(search) == sorted(board["trial_id"].astype(str))
    for _, row in board.iterrows():
        run = search[str(row["trial_id"])]
        assert run.info.status == "FINISHED" and run.data.params["optimizer"] == row["optimizer"]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, row["epochs_run"] + 1))
    confirmation = pd.read_csv(run_dir / "confirmation.csv")
    confirmed = [run for run in children if run.data.tags["phase"] == "confirmation"]
    assert len(confirmed) == int((confirmation["run"] != "search").sum())


def test_without_mlflow_a_run_goes_on_and_mlflow_is_one_line(monkeypatch, tmp_path):
    """Without mlflow installed: --mlflow is a one-line error; a run without it has no tracker."""
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(UsageError) as error:
        tracking.tracking_uri("mlflow.db")
    assert str(error.value) == "--mlflow needs mlflow: pip install mlflow"
    assert tracking.callbacks(tmp_path, "search") == []
    tracking.start(None, tmp_path, resume=True)
    finish(tmp_path, "finished")
    assert not (tmp_path / tracking.TRACKING_FILE).exists()


@pytest.mark.parametrize("value, uri", [
    ("mlflow.db", "sqlite:///{cwd}/mlflow.db"), ("sqlite:///a/b.db", "sqlite:///{cwd}/a/b.db"),
    ("sqlite:////abs/b.db", "sqlite:////abs/b.db"), ("mlruns", "file://{cwd}/mlruns"),
    ("postgresql://u@db/mlflow", "postgresql://u@db/mlflow"), ("databricks", "databricks")])
def test_a_local_store_is_made_absolute(value, uri, monkeypatch, tmp_path):
    """tracking_uri: a local store's path absolute (a resume may run elsewhere), a remote one as
    it is."""
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri(value) == uri.format(cwd=tmp_path.resolve())


def test_a_server_nothing_listens_on_is_one_line_at_once():
    """--mlflow http://HOST:PORT where nothing listens: one line now, not minutes of retries."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UsageError, match=rf"^cannot reach an MLflow server at "
                                         rf"http://127.0.0.1:{port}: Connection refused$"):
        tracking.tracking_uri(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 5
