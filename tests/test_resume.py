"""Runs that survive what stops them: kill -9 as a trial ends, the time budget, a moved run
directory, Ctrl-C during confirmation, a worker killed under a trial, and a resume that would
change the run's inputs."""

import contextlib
import io
import json
import os
import shutil
import signal

import pandas as pd
import pytest
from optuna.trial import TrialState

from results.experiment import read_results
from runs import (assert_finished_once, checkpoints, data_dir, journal_ends,  # noqa: F401
                  journal_trials, kill_run, load_study, run_cli, run_phase, run_status,
                  start_run, training_workers, trial_results, wait_for)
from tuning.run import main

pytestmark = pytest.mark.slow


def assert_went_on(epochs, trial_id):
    """A trial resumed from its last checkpoint: every epoch once, but for the one whose result
    Ray had logged and whose checkpoint it had not registered yet when the run stopped (Tune
    registers a checkpoint a step after it logs the result); never from epoch 1 again."""
    assert sorted(set(epochs)) == list(range(1, epochs[-1] + 1)), (trial_id, epochs)
    assert epochs.count(1) == 1 and len(epochs) - len(set(epochs)) <= 1, (trial_id, epochs)


def search(data_dir, storage, name, *args, space="sgd_vs_adam"):
    """tuning.run's arguments for a search of every trial of its budget (no settled stop)."""
    return ["--space", space, "--confirm-seeds", 0, "--full-budget", "--data-dir", data_dir,
            "--val-size", 500, "--storage-path", storage, "--name", name, *args]


def test_kill_as_a_trial_ends_then_resume_runs_every_trial_once(tmp_path, data_dir):
    """kill -9 of the whole run the moment a trial's end reaches the journal (before Ray's next
    snapshot), then --resume: the run finishes, every trial once, study and leaderboard agree."""
    args = search(data_dir, tmp_path, "crash", "--num-samples", 6, "--max-epochs", 4,
                  "--grace-period", 1, "--reduction-factor", 2)
    process = start_run(*args)
    try:
        assert wait_for(lambda: journal_ends(tmp_path / "crash") >= 1, process, poll=0.01)
    finally:
        kill_run(process)
    assert journal_ends(tmp_path / "crash") < 6
    ended = {t.user_attrs["ray_trial_id"]: max(t.intermediate_values, default=0)
             for t in load_study(tmp_path / "crash").trials if t.state != TrialState.RUNNING}

    result = run_cli("--space", "sgd_vs_adam", "--resume", "--name", "crash", "--storage-path",
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study, _ = assert_finished_once(tmp_path / "crash", 6)
    states = {t.state for t in study.trials if t.user_attrs.get("reason") != "lost_in_crash"}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    after = trial_results(tmp_path / "crash")
    for trial_id, last in ended.items():  # not run on, though Ray's last snapshot had it running
        assert max((r["epoch"] for r in after.get(trial_id, [])), default=0) <= last
    for trial_id, rows in after.items():  # the others went on from their checkpoints
        assert_went_on([r["epoch"] for r in rows], trial_id)


@pytest.fixture(scope="module")
def budget(tmp_path_factory, data_dir):
    """One run taken through what stops it, each step's outcome kept for the tests below: cut by
    --time-budget in its search; resumes that would change it refused; moved to another folder and
    resumed, then Ctrl-C while confirmation trains; resumed again with --final to the end; and
    resumed once more, finished."""
    tmp = tmp_path_factory.mktemp("budget")
    # 60 epochs, --full-budget (a search that settled early could end within the budget): the
    # budget runs out in the search
    first = run_cli(*search(data_dir, tmp / "runs", "budget", "--num-samples", 10,
                            "--max-epochs", 6, "--grace-period", 6, "--time-budget", 8,
                            "--confirm-seeds", 2, "--max-seeds", 2, "--full-budget", "--final"))
    run_dir, moved = tmp / "runs" / "budget", tmp / "moved" / "budget"
    out = {"first": first, "run_dir": run_dir, "moved": moved,
           "status": run_status(run_dir) if first.returncode == 0 else None}
    if first.returncode != 0:
        return out
    study = load_study(run_dir)
    out.update(ended=len([t for t in study.trials if t.state != TrialState.RUNNING]),
               before=trial_results(run_dir),
               cut={t.user_attrs["ray_trial_id"] for t in study.trials
                    if t.state == TrialState.RUNNING},
               kept={p.parent.name.removeprefix("trial_") for p in checkpoints(run_dir)},
               trial_ids={path.name.removeprefix("trial_") for path in run_dir.glob("trial_*")},
               board=pd.read_csv(run_dir / "leaderboard.csv")
               if (run_dir / "leaderboard.csv").exists() else None, refused={})
    for flag, changed in [("--val-size", ["--val-size", "400"]), ("--smoke-test", ["--smoke-test"]),
                          ("--task", ["--task", "mnist"]), ("--space", ["--space", "tutorial"])]:
        flags = ["--space", "sgd_vs_adam", "--resume", "--name", "budget", "--storage-path",
                 tmp / "runs", *changed]
        if flag == "--space":
            flags = flags[2:]
        said = io.StringIO()
        with contextlib.redirect_stderr(said), pytest.raises(SystemExit) as exit_:
            main(list(map(str, flags)))  # in this process: no Ray starts for a refusal
        out["refused"][flag] = (exit_.value.code, said.getvalue())
    shutil.move(run_dir, moved)
    process = start_run("--space", "sgd_vs_adam", "--resume", "--name", "budget",
                        "--storage-path", tmp / "moved")

    def confirmation_trains():  # its results reach confirm/ only at Tune's snapshots
        return run_phase(moved) == "confirm" and training_workers(session=process.pid)

    try:
        out["confirming"] = wait_for(confirmation_trains, process, poll=0.1)
        process.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C
        process.wait(timeout=120)
    finally:
        kill_run(process)
    out["interrupted"] = json.loads((moved / "run.json").read_text())
    out["confirm_cut"] = list(map(read_results, (moved / "confirm").glob("*/result.json")))
    out["last"] = run_cli("--space", "sgd_vs_adam", "--resume", "--final", "--name", "budget",
                          "--storage-path", tmp / "moved")
    out["written"] = {path: path.stat().st_mtime_ns for path in moved.glob("*") if path.is_file()}
    out["again"] = run_cli("--space", "sgd_vs_adam", "--resume", "--name", "budget",
                           "--storage-path", tmp / "moved")
    return out


def test_a_time_budget_cuts_the_search_and_says_so(budget):
    """The budget runs out in the search: the command ends well, says --resume continues, trains
    no final model; the trials it cut are running in the study and keep the checkpoint they go on
    from, the ended ones none; the leaderboard calls a cut trial unfinished, never stopped by ASHA."""
    first, run_dir = budget["first"], budget["run_dir"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert budget["status"] == "stopped_at_time_budget"
    assert "the time budget ran out: --resume continues" in first.stdout
    assert "No final training: the run is stopped_at_time_budget" in first.stdout
    assert budget["ended"] < 10
    cut, before = budget["cut"], budget["before"]
    assert cut, "no trial was cut short by the time budget"
    if any(before.values()):
        # a cut trial is unfinished on the leaderboard, or completed where it had reported its
        # last epoch before the study heard it end; none is said to be stopped by ASHA
        board = budget["board"]
        for _, row in board[board["trial_id"].isin(cut)].iterrows():
            assert row["status"] == "unfinished" or (
                row["status"] == "completed" and row["epochs_run"] == row["epochs_planned"]), row
        # (on a slow machine the budget may cut every trial: then none ended before the cut)
        assert set(board[~board["trial_id"].isin(cut)]["status"]) <= {"completed"}
    else:  # a machine so busy that no trial finished an epoch within the budget
        assert "No report yet: no trial in " in first.stdout
        assert budget["board"] is None
    # a cut trial keeps the checkpoint it resumes from (and may keep one its worker wrote for an
    # epoch the driver had not heard yet when the budget ran out); an ended one keeps none
    kept = budget["kept"]
    assert not kept & (budget["trial_ids"] - cut)
    assert cut & {t for t, rows in before.items() if rows} <= kept <= cut


def test_a_resume_that_would_change_the_run_is_refused_in_one_line(budget):
    """Another split, the smoke test, another task or another space: one line, exit code 2."""
    run_dir = budget["run_dir"]
    for flag, message in [
        ("--val-size", "--val-size 400 differs from the run's 500"),
        ("--smoke-test", "--smoke-test differs from the run, started without it"),
        ("--task", "--task mnist differs from the run's fashion_mnist"),
        ("--space", f"{run_dir} is a run of space 'sgd_vs_adam', not 'tutorial'"),
    ]:
        code, said = budget["refused"][flag]
        assert code == 2, (flag, said)
        lines = said.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def test_a_moved_run_resumes_and_ctrl_c_in_confirmation_leaves_it_resumable(budget):
    """Moved to another folder, --resume goes on there; Ctrl-C while confirmation trains leaves
    the run interrupted in its confirmation, a run cut short."""
    assert budget["confirming"], "the resumed run never reached its confirmation"
    assert not budget["run_dir"].exists()
    assert (budget["interrupted"]["status"], budget["interrupted"]["phase"]) == (
        "interrupted", "confirm")
    # runs start together: one may have reported nothing yet when the interrupt came
    assert [r for r in budget["confirm_cut"] if not r or r[-1]["epoch"] < 6], \
        "no confirmation run was cut short by the interrupt"


def test_the_last_resume_finishes_every_trial_once_going_on_from_checkpoints(budget):
    """--resume --final: every trial once, the cut ones and the confirmation runs going on from
    their checkpoints (no epoch twice), every seed of every config, the final model trained."""
    moved, last = budget["moved"], budget["last"]
    assert last.returncode == 0, last.stderr[-3000:]
    assert_finished_once(moved, 10)
    after = trial_results(moved)
    for trial_id, rows in budget["before"].items():  # cut trials went on from where they were
        assert [r["epoch"] for r in after[trial_id]][:len(rows)] == [r["epoch"] for r in rows]
        assert_went_on([r["epoch"] for r in after[trial_id]], trial_id)
    for trial_id, rows in trial_results(moved / "confirm").items():  # confirmation went on too
        assert_went_on([r["epoch"] for r in rows], trial_id)
        assert rows[-1]["epoch"] == 6
    table = pd.read_csv(moved / "confirmation.csv")
    assert table.groupby("trial_id")["seed"].apply(sorted).tolist() == [[0, 1]] * 2
    assert set(table["status"]) == {"completed"}
    assert (moved / "final").is_dir()


def test_a_finished_run_has_nothing_to_resume(budget):
    """A resume of the finished run starts no Ray and no check, and leaves its files as they
    were."""
    moved, again = budget["moved"], budget["again"]
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{moved} is finished: nothing to resume" in again.stdout
    assert "(current)" in again.stdout and "training samples/s" not in again.stdout
    assert {path: path.stat().st_mtime_ns for path in moved.glob("*") if path.is_file()} == \
        budget["written"]


def test_killed_workers_recover_or_error_and_resume_finishes_under_max_concurrent(tmp_path,
                                                                                 data_dir):
    """One at a time (--max-concurrent 1): a trial whose worker is killed once recovers and is
    completed, with one retry, and its checkpoints are deleted while the next trial runs; a trial
    whose worker is killed twice errors; --resume runs it again from its checkpoint and the run
    ends finished, the leaderboard saying completed for both."""
    args = search(data_dir, tmp_path, "workers", "--num-samples", 2, "--max-epochs", 10,
                  "--grace-period", 10, "--max-concurrent", 1, space="tutorial")
    # Tune snapshots every second (10 s or more by default), so that the first trial's
    # checkpoints, deleted at the second snapshot after it ended, go while the second trial runs
    process = start_run(*args, env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"})
    killed = {}  # trial id -> the worker pids killed under it
    dropped = []  # the first trial's checkpoints deleted while the second still ran

    def kill_workers():
        """Kill the first trial's worker once, at epoch 2 or later; once the first trial has
        ended and its checkpoints are gone, the second's twice, each at epoch 2 or later of a
        worker not killed yet; True once all three kills are done. The study hears each epoch
        as it ends; one trial trains at a time, in the run's one training worker."""
        trials = journal_trials(tmp_path / "workers")
        for number, (trial_id, (epochs, ended)) in enumerate(trials.items()):
            wanted = 1 if number == 0 else 2
            pids = killed.setdefault(trial_id, [])
            if number == 1 and not dropped:
                break
            workers = [pid for pid in training_workers(session=process.pid) if pid not in pids]
            if len(pids) < wanted and not ended and epochs >= 2 + len(pids) and workers:
                try:
                    os.kill(workers[0], signal.SIGKILL)
                    pids.append(workers[0])
                except ProcessLookupError:
                    pass
            if number == 0 and ended and len(trials) > 1 \
                    and not checkpoints(tmp_path / "workers", {trial_id}):
                dropped.append(trial_id)  # while the second trial runs
        return sum(map(len, killed.values())) == 3

    try:
        assert wait_for(kill_workers, process, timeout=300, poll=0.05), (killed, dropped)
        process.wait(timeout=300)
    finally:
        kill_run(process)
    run_dir = tmp_path / "workers"
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("trial_id")
    recovered, errored = sorted(killed, key=lambda t: len(killed[t]))
    assert board.loc[recovered, "status"] == "completed" and board.loc[recovered, "retries"] == 1
    assert board.loc[errored, "status"] == "errored"

    result = run_cli("--space", "tutorial", "--resume", "--name", "workers", "--storage-path",
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 errored" in result.stdout
    study, board = assert_finished_once(run_dir, 2)
    board = board.set_index("trial_id")
    assert set(board["status"]) == {"completed"}
    assert board.loc[recovered, "retries"] == 1 and board.loc[errored, "retries"] == 2
    retry = [t for t in study.trials if t.user_attrs.get("ray_trial_id") == errored][-1]
    assert retry.state == TrialState.COMPLETE and "retry_of" in retry.user_attrs
    assert json.loads((run_dir / "run.json").read_text())["max_concurrent"] == 1
