"""Tuning on real Ray Tune: Optuna search with ASHA, the study on disk, divergence, checkpoints,
one-line errors, a cluster. What stops a run and --resume: test_resume.py."""

import json
import os
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from runs import data_dir, load_study, run_cli, trial_results  # noqa: F401 (a fixture)
from search_spaces import SPACES
from trainables.config import BOOKKEEPING_KEYS, parse_config
from trainables.data import split_validation
from trainables.loop import Trainer, to_device
from tuning.run import main
from tuning.search import StudySearch, study_storage


@pytest.mark.slow
def test_search_with_asha_records_pruned_and_complete_trials(tmp_path, data_dir):
    """ASHA stops some trials early; the study holds them as PRUNED with their per-epoch values,
    and trials that ran all epochs as COMPLETE with their last epoch's score. Trial 0 is the
    tutorial's settings; confirmation trains the best of each optimizer again; the reports agree
    with the study and say what the search cost."""
    result = run_cli("--space", "sgd_vs_adam", "--num-samples", 8, "--max-epochs", 4,
                     "--grace-period", 1, "--reduction-factor", 2, "--confirm-seeds", 2,
                     "--data-dir", data_dir, "--val-size", 500, "--storage-path", tmp_path,
                     "--name", "asha")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[search] 8 of 8 trials ended" in result.stdout
    run_dir = tmp_path / "asha"
    study = load_study(run_dir)
    states = Counter(t.state for t in study.trials)
    assert len(study.trials) == 8
    assert states[TrialState.PRUNED] >= 1 and states[TrialState.COMPLETE] >= 1, states
    assert study.trials[0].user_attrs["baseline"] is True
    assert study.trials[0].params == {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0,
                                      "batch_size": 64}
    reported = trial_results(run_dir)
    assert len(reported) == 8
    for trial in study.trials:
        rows = reported[trial.user_attrs["ray_trial_id"]]
        epochs = [r["epoch"] for r in rows]
        assert sorted(trial.intermediate_values) == epochs
        assert list(trial.intermediate_values.values()) == [r["val_accuracy"] for r in rows]
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["reason"] == "stopped_by_asha" and epochs[-1] < 4
        else:
            assert trial.state == TrialState.COMPLETE and epochs == [1, 2, 3, 4]
            assert trial.value == rows[-1]["val_accuracy"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

    # the reports of the real run agree with the study and with what Ray recorded
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board["rank"]) == list(range(1, 9))
    assert list(board["val_accuracy"]) == sorted(board["val_accuracy"], reverse=True)
    expected = {t.user_attrs["ray_trial_id"]: "completed" if t.state == TrialState.COMPLETE
                else "stopped_by_asha" for t in study.trials}
    assert dict(zip(board["trial_id"], board["status"])) == expected
    assert board.loc[board["baseline"], "trial_id"].tolist() == [
        study.trials[0].user_attrs["ray_trial_id"]]
    assert {"lr", "batch_size", "epochs_run", "best_epoch", "val_loss"} <= set(board.columns)

    confirmed = pd.read_csv(run_dir / "confirmation.csv")
    assert set(confirmed["optimizer"]) == {"sgd", "adam"}
    for trial_id, runs in confirmed.groupby("trial_id"):
        assert sorted(runs["seed"]) == [0, 1] and set(runs["epochs"]) == {4}
    summary = (run_dir / "summary.md").read_text()
    answer = summary.splitlines()[0]
    stats = confirmed.groupby("optimizer")["val_accuracy"].agg(["mean", "std"])
    for optimizer, (mean, sd) in stats.iterrows():
        assert f"{100 * mean:.1f} ± {100 * sd:.1f}% over 2 seeds for {optimizer[:1].upper()}" \
            in answer.replace("SGD", "Sgd"), answer
    baseline = board[board["baseline"]].iloc[0]
    assert f"over the tutorial's settings (optimizer sgd, lr 0.001, batch_size 64, momentum 0: " \
           f"{100 * baseline['val_accuracy']:.1f}% after {baseline['epochs_run']} epochs" in answer
    best = json.loads((run_dir / "best_config.json").read_text())
    assert best["trial_id"] in set(confirmed["trial_id"]) and best["seeds"] == 2
    parse_config(best, ignore=BOOKKEEPING_KEYS)

    # what the search cost adds up against history.csv and confirmation.csv
    history = pd.read_csv(run_dir / "history.csv")
    stopped = (board["status"] == "stopped_by_asha").sum()
    planned = board["epochs_planned"].sum()
    assert len(history) == board["epochs_run"].sum()
    extra = confirmed[confirmed["run"] == "confirmation"]
    assert (f"ASHA stopped {stopped} of 8 trials: {len(history)} of {planned} planned epochs run, "
            f"{100 * (1 - len(history) / planned):.0f}% saved") in summary
    assert f"Confirmation trained {len(extra)} more runs, {extra['epochs'].sum()} epochs" in summary
    for name in ("learning_curves", "accuracy_vs_lr", "anytime", "optimization_history",
                 "param_importances", "summary.md", "report.html"):
        written = list(run_dir.glob(f"**/{name}*"))
        assert written and all(p.stat().st_size > 1000 for p in written), name


def new_search(run_dir, num_samples=100):
    search = StudySearch("sgd_vs_adam", 3, {"dataset": "fashion_mnist"}, run_dir, "val_accuracy",
                         "max", seed=0, study_name="s", num_samples=num_samples)
    search.set_search_properties(None, None, {})
    return search


def test_study_search_maps_trial_endings_to_states(tmp_path):
    """Errored trials FAIL, diverged ones are PRUNED, completed ones COMPLETE with their last
    epoch's score (the one their config reproduces, not the peak at epoch 2)."""
    search = new_search(tmp_path)
    for tid in ("done", "bad", "nan", "cut"):
        config = search.suggest(tid)
        assert config["optimizer"] in ("sgd", "adam") and config["dataset"] == "fashion_mnist"
    row = {"epochs_planned": 3, "diverged": False}
    for epoch, acc in [(1, 0.5), (2, 0.8), (3, 0.7)]:
        search.on_trial_result("done", {**row, "epoch": epoch, "val_accuracy": acc})
    search.on_trial_complete("done", {**row, "epoch": 3, "val_accuracy": 0.7})
    search.on_trial_complete("bad", None, error=True)
    search.on_trial_complete("nan", {**row, "epoch": 1, "val_accuracy": 0.1, "diverged": True})
    search.on_trial_complete("cut", {**row, "epoch": 1, "val_accuracy": 0.4})
    study = optuna.load_study(study_name="s", storage=study_storage(tmp_path))
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
    study = optuna.load_study(study_name="s", storage=study_storage(tmp_path))
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.COMPLETE,
                                               TrialState.RUNNING, TrialState.FAIL,
                                               TrialState.RUNNING]
    assert trials["lost"].user_attrs["reason"] == "lost_in_crash"
    assert trials["newer"].intermediate_values == {1: 0.5}
    assert trials["done"].value == 0.5


def test_the_study_says_when_the_search_has_its_samples(tmp_path):
    """With its samples handed out, the search waits for the last to end, then says finished."""
    search = new_search(tmp_path, num_samples=2)
    row = {"epochs_planned": 3, "diverged": False, "val_accuracy": 0.5, "epoch": 3}
    assert search.suggest("a") and search.suggest("b")
    assert search.suggest("c") is None  # b is running
    search.on_trial_complete("a", row)
    search.on_trial_complete("b", row)
    assert search.suggest("c") == "FINISHED"


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
    failed, retry = optuna.load_study(study_name="s", storage=study_storage(tmp_path)).trials
    assert failed.state == TrialState.FAIL and failed.intermediate_values == {1: 0.6}
    assert retry.state == TrialState.COMPLETE and retry.value == 0.75
    assert retry.intermediate_values == {1: 0.6, 2: 0.7, 3: 0.75}
    assert retry.params == failed.params and retry.user_attrs["retry_of"] == failed.number
    assert {k: config[k] for k in retry.params} == retry.params


@pytest.fixture
def local_ray():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def small_data(n=1500):
    from conftest import make_split

    train, val = split_validation(make_split(n, seed=3), 300)
    return {"train": train, "val": val}


@pytest.mark.slow
def test_diverging_trial_ends_cleanly_while_others_finish(local_ray, tmp_path):
    """A learning rate that blows the loss up ends its trial as diverged, not as an error."""
    from ray import tune

    from trainables.trainable import train_trial

    data = small_data()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, data=data), {"cpu": 1}),
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
    tuner = tune.Tuner(tune.with_resources(tune.with_parameters(train_trial, data=data), {"cpu": 1}),
                       param_space={**raw, "epochs": 2},
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name="ckpt"))
    result = tuner.fit()[0]
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, weights_only=False)
    assert state["epoch"] == 2

    torch.set_num_threads(1)  # as in the trial, so that the sums run in the same order
    train_xy, val_xy = to_device(data["train"], "cpu"), to_device(data["val"], "cpu")
    resumed = Trainer(parse_config({**raw, "epochs": 3}))
    resumed.load_state_dict(state)
    assert resumed.lr == pytest.approx(0.002 * 0.25)
    straight = Trainer(parse_config({**raw, "epochs": 3}))
    for _ in range(2):
        straight.fit_epoch(train_xy, val_xy)
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor)
    assert resumed.fit_epoch(train_xy, val_xy) == pytest.approx(
        {**straight.fit_epoch(train_xy, val_xy), "seconds": pytest.approx(0, abs=60)})


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
      "--dataset", "mnist"], "cannot reach a Ray cluster at 127.0.0.1:1"),  # before the data
    (["--space", "cnn", "--model", "mlp"], "space 'cnn' trains model 'cnn'"),
    (["--space", "sgd_vs_adam", "--resume", "--name", "empty"], "is not a tuning run that can be resumed"),
    (["--space", "sgd_vs_adam", "--resume"], "no run of space 'sgd_vs_adam' to resume"),
    (["--space", "sgd_vs_adam", "--data-dir", "{tmp}/nothing", "--dataset", "mnist"], "mnist not found in"),
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
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["empty"]
    import ray

    assert not ray.is_initialized()


def test_a_mistake_ends_the_process_in_one_line_without_traceback(tmp_path):
    """The command itself, as a user runs it: exit code 2 and one line on stderr."""
    result = run_cli("--space", "nope", "--storage-path", tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m tuning.run: error: unknown space 'nope'; known spaces: {', '.join(SPACES)}"]


@pytest.mark.parametrize("uri", ["s3://bucket/runs", "file:///tmp/runs"])
def test_storage_uris_are_refused_in_one_line(uri, tmp_path, monkeypatch, capsys):
    """A storage URI is a one-line error, not a local folder named like it (s3:/bucket/runs)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["--space", "sgd_vs_adam", "--storage-path", uri])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m tuning.run: error: --storage-path {uri}: URIs are not supported; give a "
        "folder (on a cluster, one that every node mounts at the same path)"]
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
    assert "lr            float log-uniform [0.0001, 0.01] | float log-uniform [0.001, 0.3]" in out
    assert {"sgd_vs_adam", "tutorial", "optimizers", "schedules", "cnn"} <= set(SPACES)


@pytest.mark.slow
def test_search_joins_a_two_node_cluster_and_uses_both_nodes(tmp_path):
    """With --address, trials run on a two-node Ray cluster, on both of its nodes."""
    from conftest import make_split, write_idx_files
    from ray.cluster_utils import Cluster

    # trials must outlast a new actor's start-up, or Tune hands the next trial to a reused one
    write_idx_files(tmp_path / "idx", make_split(8000, seed=1), make_split(500, seed=2))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        nodes = {cluster.head_node.node_id, *(node.node_id for node in cluster.worker_nodes)}
        result = run_cli("--space", "tutorial", "--num-samples", 2, "--max-epochs", 30,
                         "--grace-period", 30, "--confirm-seeds", 0, "--address", cluster.address,
                         "--data-dir", tmp_path / "idx", "--val-size", 500, "--storage-path",
                         tmp_path / "runs", "--name", "cluster")
    finally:
        cluster.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    used = {rows[0]["node_id"] for rows in trial_results(tmp_path / "runs" / "cluster").values()}
    assert len(nodes) == 2 and used == nodes
