"""Tuning on real Ray Tune: the study on disk, divergence, checkpoints, one-line errors, a cluster.
A search with ASHA whose study and reports agree: test_examples.py; what stops a run and
--resume: test_resume.py."""

import json
import os
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState

from conftest import make_split
from runs import data_dir, run_cli, trial_results  # noqa: F401 (a fixture)
from search_spaces import SPACES
from trainables.config import parse_config
from trainables.data import carve_validation
from trainables.loop import Trainer
from trainables.task import load_task
from trainables.trainable import TrialData
from tuning.run import main
from results.study import journal
from tuning.searcher import SearchPlan, StudySearch

TASK = load_task()
ROOT = Path(__file__).resolve().parents[1]


def new_search(run_dir, num_samples=100):
    plan = SearchPlan("sgd_vs_adam", 3, "val_accuracy", "max", 0, num_samples, 1, 3)
    return StudySearch(plan, run_dir, "s")


def test_study_search_maps_trial_endings_to_states(tmp_path):
    """Errored trials FAIL, diverged ones are PRUNED, completed ones COMPLETE with their last
    epoch's score (the one their config reproduces, not the peak at epoch 2)."""
    search = new_search(tmp_path)
    for tid in ("done", "bad", "nan", "cut"):
        config = search.suggest(tid)
        assert config["optimizer"] in ("sgd", "adam") and config["epochs"] == 3
    row = {"epochs_planned": 3, "diverged": False}
    for epoch, acc in [(1, 0.5), (2, 0.8), (3, 0.7)]:
        search.on_trial_result("done", {**row, "epoch": epoch, "val_accuracy": acc})
    search.on_trial_complete("done", {**row, "epoch": 3, "val_accuracy": 0.7})
    search.on_trial_complete("bad", None, error=True)
    search.on_trial_complete("nan", {**row, "epoch": 1, "val_accuracy": 0.1, "diverged": True})
    search.on_trial_complete("cut", {**row, "epoch": 1, "val_accuracy": 0.4})
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert trials["done"].state == TrialState.COMPLETE and trials["done"].value == 0.7
    assert trials["done"].intermediate_values == {1: 0.5, 2: 0.8, 3: 0.7}
    assert trials["bad"].state == TrialState.FAIL and trials["bad"].user_attrs["reason"] == "errored"
    assert trials["nan"].state == TrialState.PRUNED and trials["nan"].user_attrs["reason"] == "diverged"
    assert trials["cut"].state == TrialState.PRUNED and trials["cut"].intermediate_values == {1: 0.4}


def test_restore_fails_trials_lost_in_a_crash(tmp_path):
    """After a crash, the study says which Ray trial is which: a trial Ray restored is followed
    although the searcher's snapshot (written apart from Ray's) predates it; one the study handed
    out but Ray never listed ends FAIL before the next trial is drawn, instead of staying RUNNING
    for ever; a trial told COMPLETE after the snapshot stays ended."""
    search = new_search(tmp_path, num_samples=4)
    row = {"epochs_planned": 3, "diverged": False, "val_accuracy": 0.5}
    for trial_id in ("kept", "done"):
        search.suggest(trial_id)
    search.save(str(tmp_path / "searcher.pkl"))
    search.on_trial_complete("done", {**row, "epoch": 3})  # after the snapshot
    for trial_id in ("newer", "lost"):  # after the snapshot too
        search.suggest(trial_id)
    restored = StudySearch.__new__(StudySearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    for trial_id in ("kept", "done", "newer"):  # what Ray's own snapshot holds
        restored.saw(trial_id)
    assert restored.ended_at("done") == 3 and restored.ended_at("kept") is None
    assert isinstance(restored.suggest("next"), dict)  # the lost trial's sample, drawn again
    restored.on_trial_result("newer", {**row, "epoch": 1})
    restored.on_trial_result("done", {**row, "epoch": 3, "val_accuracy": 0.9})
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.COMPLETE,
                                               TrialState.RUNNING, TrialState.FAIL,
                                               TrialState.RUNNING]
    assert trials["lost"].user_attrs["reason"] == "lost_in_crash"
    assert trials["newer"].intermediate_values == {1: 0.5}
    assert trials["done"].value == 0.5


def test_a_kill_between_the_studys_ask_and_ray_leaves_no_trial_running(tmp_path):
    """A run killed as the study handed out a trial, before Ray had it: asked without its Ray id
    (as an earlier version left it), or enqueued and not yet asked. The restored searcher ends
    both FAIL as lost_in_crash before it draws the next trial; none stays RUNNING or WAITING,
    which the search's end would never wait for."""
    search = new_search(tmp_path, num_samples=6)
    search.suggest("kept")
    search.save(str(tmp_path / "searcher.pkl"))
    search._study.ask()  # killed before the Ray id was set
    search._study.enqueue_trial({"optimizer": "adam", "lr": 0.001, "batch_size": 64},
                                user_attrs={"ray_trial_id": "never"})  # killed before ask()
    restored = StudySearch.__new__(StudySearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.saw("kept")
    assert isinstance(restored.suggest("next"), dict)
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    assert [(t.state, t.user_attrs.get("reason")) for t in study.trials] == [
        (TrialState.RUNNING, None), (TrialState.FAIL, "lost_in_crash"),
        (TrialState.FAIL, "lost_in_crash"), (TrialState.RUNNING, None)]
    assert study.trials[-1].user_attrs["ray_trial_id"] == "next"


def test_the_study_says_when_the_search_has_its_samples(tmp_path):
    """With its samples handed out, the search waits for the last to end, then says finished."""
    search = new_search(tmp_path, num_samples=2)
    row = {"epochs_planned": 3, "diverged": False, "val_accuracy": 0.5, "epoch": 3}
    assert search.suggest("a") and search.suggest("b")
    assert search.suggest("c") is None  # b is running
    search.on_trial_complete("a", row)
    search.on_trial_complete("b", row)
    assert search.suggest("c") == "FINISHED"


def test_the_search_hands_out_a_trial_a_free_slot_as_the_cluster_has_them_now(tmp_path):
    """No more trials handed out and not yet ended than Ray's slots, asked at each suggestion: a
    trial waits for a slot to free, and a node that joins adds its slots."""
    search = new_search(tmp_path)
    slots = [2]
    search.set_slots(lambda: slots[0])
    row = {"epochs_planned": 3, "diverged": False, "val_accuracy": 0.5, "epoch": 3}
    assert search.suggest("a") and search.suggest("b")
    assert search.suggest("c") is None  # a and b hold both slots
    search.on_trial_complete("a", row)
    assert search.suggest("c") and search.suggest("d") is None
    slots[0] = 3  # a node joined
    assert search.suggest("d") and search.suggest("e") is None


def test_errored_trial_run_again_becomes_a_new_study_trial(tmp_path):
    """An errored trial that --resume runs again is recorded as a new trial with the same
    parameters, its earlier epochs and retry_of, leaving the FAIL as it happened."""
    search = new_search(tmp_path)
    config = search.suggest("t")
    row = {"epochs_planned": 3, "diverged": False}
    search.on_trial_result("t", {**row, "epoch": 1, "val_accuracy": 0.6})
    search.on_trial_complete("t", None, error=True)
    for epoch, acc in [(2, 0.7), (3, 0.75)]:  # resumed from its epoch-1 checkpoint
        search.on_trial_result("t", {**row, "epoch": epoch, "val_accuracy": acc})
    search.on_trial_complete("t", {**row, "epoch": 3, "val_accuracy": 0.75})
    failed, retry = optuna.load_study(study_name="s", storage=journal(tmp_path)).trials
    assert failed.state == TrialState.FAIL and failed.intermediate_values == {1: 0.6}
    assert retry.state == TrialState.COMPLETE and retry.value == 0.75
    assert retry.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75}
    assert retry.params == failed.params and retry.user_attrs["retry_of"] == failed.number
    assert {k: config[k] for k in retry.params} == retry.params


def test_a_resumed_errored_trial_is_not_given_a_trial_a_kill_left_waiting(tmp_path):
    """A run killed as the study handed out a trial leaves it enqueued and not yet asked. On
    --resume, an errored trial Ray runs again may report before the first new trial is drawn: its
    retry takes its own parameters, and the trial left waiting ends FAIL as lost_in_crash."""
    search = new_search(tmp_path, num_samples=6)
    config = search.suggest("bad")
    search.on_trial_result("bad", {"epochs_planned": 3, "diverged": False, "epoch": 1,
                                   "val_accuracy": 0.6})
    search.on_trial_complete("bad", None, error=True)
    search.save(str(tmp_path / "searcher.pkl"))
    stale = {"optimizer": "sgd", "lr": 0.2, "batch_size": 256, "momentum": 0.5}
    assert {k: config.get(k) for k in stale} != stale
    search._study.enqueue_trial(stale, user_attrs={"ray_trial_id": "never"})  # killed here
    restored = StudySearch.__new__(StudySearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.saw("bad")
    restored.on_trial_result("bad", {"epochs_planned": 3, "diverged": False, "epoch": 2,
                                     "val_accuracy": 0.7})
    study = optuna.load_study(study_name="s", storage=journal(tmp_path))
    failed, waiting, retry = study.trials
    assert (waiting.state, waiting.user_attrs.get("reason")) == (TrialState.FAIL,
                                                                 "lost_in_crash")
    assert retry.state == TrialState.RUNNING and retry.params == failed.params
    assert retry.user_attrs["ray_trial_id"] == "bad" and retry.intermediate_values == {1: 0.6,
                                                                                       2: 0.7}


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def small_data(n=1500):
    """What a trial gets: generated tensors, as the built-in task's load_data shapes them."""
    split = make_split(n, seed=3)
    train, val = carve_validation((split.images.unsqueeze(1), split.labels), 300)
    return TrialData({"train": train, "val": val}, "/nonexistent", 300, None)


@pytest.mark.slow
def test_diverging_trial_ends_cleanly_while_others_finish(local_ray, tmp_path):
    """A learning rate that blows the loss up ends its trial as diverged, not as an error."""
    from ray import tune

    from trainables.trainable import train_trial

    data = small_data()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, task=TASK, data=data), {"cpu": 1}),
        param_space={"optimizer": "sgd", "lr": tune.grid_search([1e6, 0.05]), "epochs": 3},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="div"),
    )
    results = tuner.fit()
    assert results.num_errors == 0 and results.num_terminated == 2
    by_lr = {r.config["lr"]: r for r in results}
    assert by_lr[1e6].metrics["diverged"] is True and by_lr[1e6].metrics["epoch"] == 1
    assert by_lr[0.05].metrics["diverged"] is False and by_lr[0.05].metrics["epoch"] == 3
    assert by_lr[0.05].metrics["val_accuracy"] > 0.5


@pytest.mark.slow
def test_checkpoint_restores_the_trial_state(local_ray, tmp_path):
    """A trial's checkpoint holds model, optimizer, schedule and shuffling state: training on from
    it gives the same weights as training straight through."""
    from ray import tune

    from trainables.trainable import STATE_FILE, train_trial

    data = small_data()
    raw = {"optimizer": "adam", "lr": 0.002, "batch_size": 32, "schedule": "step", "step_size": 1,
           "gamma": 0.5}
    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(train_trial, task=TASK, data=data), {"cpu": 1}),
                       param_space={**raw, "epochs": 2},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="ckpt"))
    result = tuner.fit()[0]
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, weights_only=False)
    assert state["epoch"] == 2

    torch.set_num_threads(1)  # as in the trial, so that the sums run in the same order
    config = parse_config({**raw, "epochs": 3})
    resumed = Trainer(config, TASK)
    resumed.load_state_dict(state)
    assert resumed.lr == pytest.approx(0.002 * 0.25)
    straight = Trainer(config, TASK)
    feeds = {t: (t.feed(data.parts["train"], train=True), t.feed(data.parts["val"], train=False))
             for t in (straight, resumed)}
    for _ in range(2):
        straight.fit_epoch(*feeds[straight])
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor)
    assert resumed.fit_epoch(*feeds[resumed]) == pytest.approx(
        {**straight.fit_epoch(*feeds[straight]), "seconds": pytest.approx(0, abs=60)})


@pytest.mark.slow
def test_tune_queues_a_trial_for_every_slot_of_the_cluster(local_ray, tmp_path, monkeypatch):
    """With a searcher of its own, Tune keeps one trial pending at a time, so that the trials of a
    large cluster start one after another; we let it queue one per slot (CPUs over a trial's,
    at most --max-concurrent), unless the user set TUNE_MAX_PENDING_TRIALS_PG."""
    from types import SimpleNamespace

    from ray.tune.execution.tune_controller import _get_max_pending_trials
    from ray.tune.search import SearchGenerator

    from tuning import cluster

    monkeypatch.delenv(cluster.MAX_PENDING, raising=False)
    monkeypatch.setattr(cluster, "USER_PENDING", None)
    search = SearchGenerator(new_search(tmp_path))
    assert _get_max_pending_trials(search) == 1  # Tune's own choice, on a cluster of 2 CPUs
    for cpus, most, slots in [(1.0, None, 2), (0.5, None, 4), (0.5, 3, 3), (2.0, None, 1)]:
        cluster.start_trials_together(SimpleNamespace(cpus_per_trial=cpus, gpus_per_trial=0,
                                                    max_concurrent=most))
        assert _get_max_pending_trials(search) == slots, (cpus, most)
    monkeypatch.setenv(cluster.MAX_PENDING, "7")
    monkeypatch.setattr(cluster, "USER_PENDING", "7")
    cluster.start_trials_together(SimpleNamespace(cpus_per_trial=1.0, gpus_per_trial=0,
                                                max_concurrent=None))
    assert _get_max_pending_trials(search) == 7


@pytest.mark.parametrize("args, message", [
    (["--space", "nope"], "unknown space 'nope'; known spaces: "),
    (["--space", "sgd_vs_adam", "--num-samples", "0"], "--num-samples must be at least 1"),
    (["--space", "sgd_vs_adam", "--max-epochs", "0"], "--max-epochs must be at least 1"),
    (["--space", "sgd_vs_adam", "--confirm-seeds", "-1"], "--confirm-seeds must be 0 or more"),
    (["--space", "sgd_vs_adam", "--reduction-factor", "0"],
     "--reduction-factor must be 2 or more, got 0"),
    (["--space", "sgd_vs_adam", "--cpus-per-trial", "64"],
     f"--cpus-per-trial 64 is more than this machine has ({os.cpu_count()} CPUs)"),
    (["--space", "sgd_vs_adam", "--max-epochs", "3", "--grace-period", "5"],
     "--grace-period 5 is above --max-epochs 3"),
    (["--space", "sgd_vs_adam", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["--space", "sgd_vs_adam", "--address", "127.0.0.1:1", "--data-dir", "{tmp}/nothing",
      "--task", "mnist"], "cannot reach a Ray cluster at 127.0.0.1:1"),  # before the data
    (["--space", "sgd_vs_adam", "--task", "imagenet"], "imagenet: no such file or module"),
    (["--space", "{tmp}/nothing.py"], "nothing.py: no such file"),
    (["--space", str(ROOT / "examples/diabetes_regression.py"), "--task", "mnist"],
     "--task mnist: the space diabetes_regression brings its own task"),
    (["--space", "sgd_vs_adam", "--smoke-test", "--num-samples", "-3"],
     "--num-samples must be at least 1, got -3"),
    (["--space", "sgd_vs_adam", "--smoke-test", "--grace-period", "20", "--max-epochs", "3"],
     "--grace-period 20 is above --max-epochs 3"),
    (["--space", "sgd_vs_adam", "--resume", "--name", "empty"], "is not a tuning run that can be resumed"),
    (["--space", "sgd_vs_adam", "--resume"], "no run of space 'sgd_vs_adam' to resume"),
    (["--space", "sgd_vs_adam", "--data-dir", "{tmp}/nothing", "--task", "mnist"],
     "trainables/tasks/mnist.py: load_data(data_dir) raised DataError: mnist not found in"),
    # a folder the user gave is read or refused, never replaced by the system's copy
    (["--space", "sgd_vs_adam", "--data-dir", "{tmp}/runs/empty"],
     "raised DataError: fashion_mnist not found in {tmp}/runs/empty/FashionMNIST/raw, "
     "{tmp}/runs/empty ("),
    (["--space", "sgd_vs_adam", "--name", "../../etc"], "--name '../../etc' is not a name"),
    (["--space", "sgd_vs_adam", "--name", "a/b"], "--name 'a/b' is not a name"),
    (["--space", "sgd_vs_adam", "--resume", "--name", ".."], "--name '..' is not a name"),
    (["--space", "sgd_vs_adam", "--smoke-test", "--max-epochs", "1000000000"],
     "the run (4 trials of up to 1,000,000,000 epochs) would take about "),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, monkeypatch, capsys):
    """A user's mistake ends in one line naming it, exit code 2, no traceback and no run written,
    before Ray starts."""
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # no network here: the MNIST download fails at once, as it would offline
    with pytest.raises(SystemExit) as exit:
        main([*args, "--storage-path", str(tmp_path / "runs")])
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message.replace("{tmp}", str(tmp_path)) in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["empty"]
    assert list((tmp_path / "runs" / "empty").iterdir()) == []
    import ray

    assert not ray.is_initialized()


def test_a_mistake_ends_the_process_in_one_line_without_traceback(tmp_path):
    """The command itself, as a user runs it: exit code 2 and one line on stderr."""
    result = run_cli("--space", "nope", "--storage-path", tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m tuning.run: error: unknown space 'nope'; known spaces: {', '.join(SPACES)}, "
        "or a file or module of your own (docs/your-own-model.md)"]


def test_a_run_cut_before_its_first_epoch_reports_nothing_yet_without_failing(tmp_path, capsys):
    """A time budget that runs out before any trial finished an epoch leaves nothing to report:
    the command says so and goes on (it used to end in an error, exit code 2, on a slow
    machine); a finished run without an epoch is still an error."""
    from results.report import ReportError, report_run

    run_dir = tmp_path / "cut"
    (run_dir / "trial_abc").mkdir(parents=True)
    (run_dir / "trial_abc" / "params.json").write_text('{"optimizer": "sgd", "lr": 0.1}')
    (run_dir / "run.json").write_text('{"status": "stopped_at_time_budget"}')
    assert report_run(run_dir) == {}
    assert capsys.readouterr().out.startswith(f"No report yet: no trial in {run_dir} has finished "
                                              "an epoch yet")
    (run_dir / "run.json").write_text('{"status": "finished"}')
    with pytest.raises(ReportError):
        report_run(run_dir)


@pytest.mark.parametrize("uri, message", [
    ("s3://bucket/runs?endpoint_override=127.0.0.1:1&scheme=http",
     "cannot write to --storage-path s3://bucket/runs: When initiating multiple part upload"),
    ("s3://bucket/runs?access_key=me&secret_key=secret",
     "--storage-path: no credentials in the URI (run.json records it); set them where pyarrow "
     "reads them"),
    ("file:///tmp/runs", "--storage-path file:///tmp/runs: give a local folder as a path"),
    ("ftp://host/runs", "--storage-path ftp://host/runs: Unrecognized filesystem type in URI"),
])
def test_a_storage_uri_that_cannot_be_used_is_one_line(uri, message, tmp_path, monkeypatch,
                                                        capsys):
    """A bucket nothing answers at, credentials in the URI, a file:// URI or a scheme pyarrow does
    not know: one line before anything starts, nothing written, no folder named like the URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SystemExit) as exit:
        main(["--space", "sgd_vs_adam", "--storage-path", uri])
    assert exit.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m tuning.run: error: {message}"), lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
def test_fractional_gpus_per_trial(tmp_path, data_dir):
    """--gpus-per-trial 0.5 runs two trials at once on one GPU, each training on CUDA."""
    result = run_cli("--space", "sgd_vs_adam", "--num-samples", 4, "--max-epochs", 2,
                     "--grace-period", 2, "--gpus-per-trial", 0.5, "--data-dir", data_dir,
                     "--val-size", 500, "--storage-path", tmp_path, "--name", "gpu")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [row for trial in trial_results(tmp_path / "gpu").values() for row in trial]
    assert len({row["trial_id"] for row in rows}) == 4
    assert {row["device"] for row in rows} == {"cuda"}
    assert json.loads((tmp_path / "gpu" / "run.json").read_text())["gpus_per_trial"] == 0.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpus_requested_without_gpus_is_an_error(tmp_path, capsys):
    """Asking for GPUs on a machine without any is one line and exit code 2."""
    with pytest.raises(SystemExit) as exit:
        main(["--space", "sgd_vs_adam", "--gpus-per-trial", "0.5", "--storage-path",
              str(tmp_path)])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m tuning.run: error: --gpus-per-trial 0.5 asked for, but this machine has no CUDA "
        "device; pass --gpus-per-trial 0"]


def test_list_spaces_prints_names_descriptions_and_parameters(capsys):
    """--list-spaces shows every space with its description, budget and parameters."""
    main(["--list-spaces"])
    out = capsys.readouterr().out
    for space in SPACES.values():
        assert f"{space.name}: {space.description}" in out
    # each space's values in a column, past its longest parameter name
    assert "\n  lr         float log-uniform [0.0001, 0.01] | float log-uniform [0.001, 0.3]\n" in out
    assert "\n  label_smoothing float uniform [0, 0.2]\n  dropout         float" in out
    assert {"sgd_vs_adam", "tutorial", "optimizers", "schedules", "cnn", "mlp_limits"} <= set(SPACES)


def test_a_live_trial_keeps_its_latest_checkpoint_and_those_the_last_two_snapshots_list(tmp_path):
    """A live trial's checkpoint goes as soon as it is neither its latest nor the one Tune's last
    two snapshots (get_state) list; an ended trial's all go at the second snapshot after its end."""
    from types import SimpleNamespace

    import pyarrow.fs
    from ray.tune import Checkpoint

    from tuning.checkpoints import DropCheckpoints

    filesystem = pyarrow.fs.LocalFileSystem()
    trial_dir = tmp_path / "trial_a"
    trial = SimpleNamespace(trial_id="a", storage=SimpleNamespace(
        storage_filesystem=filesystem, trial_fs_path=str(trial_dir)))
    drop = DropCheckpoints()

    def save(n):
        path = trial_dir / f"checkpoint_{n:06d}"
        path.mkdir(parents=True)
        drop.on_checkpoint(0, [], trial, Checkpoint(str(path), filesystem))
        return kept()

    def kept():
        return [int(p.name[-6:]) for p in sorted(trial_dir.glob("checkpoint_*"))]

    assert save(0) == [0]
    assert save(1) == [1]  # no snapshot listed 0
    drop.get_state()  # lists 1
    assert save(2) == [1, 2]
    assert save(3) == [1, 3]  # 2: neither the latest nor listed
    drop.get_state()  # lists 3
    assert kept() == [1, 3]
    drop.get_state()  # lists 3 again: 1 is two snapshots back
    assert kept() == [3]
    assert save(4) == [3, 4]
    drop.on_trial_complete(0, [], trial)
    drop.get_state()  # lists the trial as ended
    assert kept() == [3, 4]
    drop.get_state()
    assert kept() == []


def test_a_settled_search_stays_settled_after_a_resume(tmp_path):
    """The study records that the search settled; a searcher restored from it (a resume) hands
    out no new trial: finished once none is running."""
    search = new_search(tmp_path, num_samples=10)
    row = {"epochs_planned": 3, "diverged": False, "val_accuracy": 0.5, "epoch": 3}
    search.suggest("a")
    search.on_trial_complete("a", row)
    search._study.set_user_attr("settled", {"after": 1, "of": 10, "why": "by hand"})
    search.save(str(tmp_path / "searcher.pkl"))
    restored = StudySearch.__new__(StudySearch)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("b") == "FINISHED"
    fresh = new_search(tmp_path, num_samples=10)  # the study on disk, as a new process reads it
    assert fresh.suggest("c") == "FINISHED"


def test_warm_start_seeds_tpe_with_an_earlier_runs_trials(tmp_path):
    """With an earlier run's trials of the same space, TPE's first proposals follow them: SGD's
    good learning rates there (about 0.05) pull two thirds of the new search's first 12 SGD trials
    to within a factor 2 of it, where a cold start draws its first at random over [0.001, 0.3]
    (a third of them there)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import create_trial

    space = {"optimizer": CategoricalDistribution(["sgd", "adam"]),
             "lr": FloatDistribution(1e-3, 0.3, log=True),
             "momentum": CategoricalDistribution([0.0, 0.5, 0.9]),
             "batch_size": CategoricalDistribution([64, 128, 256])}
    rng = np.random.default_rng(0)
    earlier = []
    for _ in range(30):
        lr = float(np.exp(rng.uniform(np.log(1e-3), np.log(0.3))))
        params = {"optimizer": "sgd", "lr": lr, "momentum": 0.9, "batch_size": 128}
        earlier.append(create_trial(params=params, distributions=space,
                                    value=0.9 - abs(np.log(lr / 0.05))))
    plan = SearchPlan("sgd_vs_adam", 3, "val_accuracy", "max", 0, 100, 1, 3,
                      compare="optimizer", choices=("sgd",), adaptive=False, settle=False)

    def first_lrs(run_dir, warm):
        run_dir.mkdir()
        search = StudySearch(plan, run_dir, "s", warm=warm)
        return [search.suggest(f"t{i}")["lr"] for i in range(12)]

    warm, cold = first_lrs(tmp_path / "warm", earlier), first_lrs(tmp_path / "cold", None)
    near = [np.mean([abs(np.log(lr / 0.05)) < np.log(2) for lr in lrs]) for lrs in (warm, cold)]
    assert near[0] > 0.6 and near[0] > near[1] + 0.25, (near, warm, cold)
    study = optuna.load_study(study_name="s", storage=journal(tmp_path / "warm"))
    assert study.user_attrs["warm_start"] == 30


def test_a_finished_search_keeps_the_checkpoints_of_its_errored_trials_only(tmp_path):
    """Once the search is done, every trial directory's checkpoints go, also those of a trial a
    crash lost after its first checkpoint (the study never heard of it), but an errored trial's,
    which --resume retries from them."""
    from tuning import storage
    from tuning.checkpoints import drop_ended

    for trial in ("ended", "lost", "errored"):
        (tmp_path / f"trial_{trial}" / "checkpoint_000001").mkdir(parents=True)
        (tmp_path / f"trial_{trial}" / "result.json").write_text("{}")
    assert drop_ended(storage.local(tmp_path), None, keep={"errored"}) == 2
    assert sorted(p.parent.name for p in tmp_path.glob("trial_*/checkpoint_*")) == ["trial_errored"]
    assert len(list(tmp_path.glob("trial_*/result.json"))) == 3
