"""Write the reports of an experiment directory from what is on disk (no Ray session needed).

    python -m results.report runs/sgd_vs_adam
    python -m results.report runs/sgd_vs_adam --top 10

Works on a finished, an interrupted or a copied run. Writes into RUN_DIR: leaderboard.csv (one row
per trial, best first; columns in results.leaderboard), history.csv (one row per trial per epoch,
the hyperparameters as config/<key>), confirmation.csv (one row per confirmed config per seed),
best_config.json (for python -m tuning.train --config), figures/*.png, summary.md and report.html.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pandas as pd

from results.confirmation import confirmation_table, stats
from results.experiment import Experiment, ReportError, load_experiment
from results.figures import FIGURES, anytime, cost_vs_metric, learning_curves, metric_vs_lr
from results.leaderboard import best_config, format_top, leaderboard
from results.study_figures import first_rung_study, study_figures
from results.summary import report_html, summary_markdown
from trainables.cli import HelpFormatter, fail
from trainables.config import KEYS, ConfigError, bookkeeping, choices, parse_config
from trainables.rundir import (BEST_CONFIG_FILE, CONFIRMATION_FILE, FIGURES_DIR, FINAL_DIR,
                               FINAL_METRICS_FILE, HISTORY_FILE, LEADERBOARD_FILE, REPORT_FILE,
                               RUN_FILE, STUDY_FILE, SUMMARY_FILE, Status, read_answer,
                               read_json, write_atomic, write_json, write_text)

PROG = "python -m results.report"
MAX_ERROR_NOTES = 5

__all__ = ["ReportError", "format_top", "main", "top_rows", "write_reports"]


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def _write_best_config(run_dir: Path, config: dict | None, label: str
                       ) -> tuple[dict[str, Path], str]:
    """best_config.json when there is a config that trains; else ({}, a note saying why not).
    The training core's settings are checked; the task's own hyperparameters are the task's to
    check (tuning.train does, with the task at hand)."""
    if config is None:
        return {}, f"{BEST_CONFIG_FILE} not written: no trial reached a finite {label}"
    ignore = bookkeeping(config)
    try:
        parse_config(config, ignore=ignore,
                     hyperparameters={k: None for k in config if k not in KEYS + ignore},
                     own_optimizers=config.get("optimizer") not in choices()["optimizer"])
    except ConfigError as err:
        return {}, (f"{BEST_CONFIG_FILE} not written: trial {config['trial_id']}'s params "
                    f"do not make a training config: {err}")
    return {"best_config": write_json(run_dir / BEST_CONFIG_FILE, config)}, ""


def build_reports(run_dir: Path) -> tuple[dict[str, Path], pd.DataFrame, list[str]]:
    """Write every report; return the paths written, the leaderboard and notes on what was
    left out."""
    run_dir = Path(run_dir)
    experiment = load_experiment(run_dir)
    if not len(experiment.history):
        raise ReportError(f"no trial in {run_dir} has finished an epoch yet "
                          f"({len(experiment.trials)} trial directories); "
                          "report again after the first epoch")
    board = leaderboard(experiment)
    notes = list(experiment.skipped)
    paths = {"leaderboard": _write_csv(run_dir / LEADERBOARD_FILE, board)}
    # config/<key> as in Ray's own tables: the epoch's lr is a metric, the configured one is not
    config = experiment.trials[["trial_id", *experiment.hyperparameters]].rename(
        columns={k: f"config/{k}" for k in experiment.hyperparameters})
    paths["history"] = _write_csv(run_dir / HISTORY_FILE,
                                  experiment.history.merge(config, on="trial_id", how="left"))
    confirmed = confirmation_table(experiment, board)
    if len(confirmed):
        paths["confirmation"] = _write_csv(run_dir / CONFIRMATION_FILE, confirmed)
    found = stats(confirmed, experiment.compare, experiment.score)
    config = best_config(experiment, board, found)
    written, note = _write_best_config(run_dir, config, experiment.score.label)
    paths.update(written)
    notes += [note] if note else []
    figures, figure_notes = write_figures(experiment, board, run_dir / FIGURES_DIR,
                                          found[found["seeds"] >= 2])
    paths.update(figures)
    notes += figure_notes
    errored = board[board["status"] == "errored"]
    lookup = experiment.trials.set_index("trial_id")["error"]
    notes += [f"trial {t} errored: {lookup[t]}" for t in errored["trial_id"][:MAX_ERROR_NOTES]]
    if len(errored) > MAX_ERROR_NOTES:
        notes.append(f"{len(errored) - MAX_ERROR_NOTES} more trials errored; see their error.txt")
    paths["summary"] = write_text(run_dir / SUMMARY_FILE,
                                  summary_markdown(experiment, board, paths, notes, confirmed))
    paths["report"] = write_text(run_dir / REPORT_FILE,
                                 report_html(experiment, board, paths, notes, confirmed))
    return paths, board, notes


def write_figures(experiment: Experiment, board: pd.DataFrame, directory: Path,
                  found: pd.DataFrame | None = None) -> tuple[dict[str, Path], list[str]]:
    """Draw every figure that can be drawn; return {stem: path} and notes on those left out.
    found: the confirmed configs (results.confirmation.stats), where confirmation ran."""
    import matplotlib

    matplotlib.use("Agg")
    written = {"learning_curves": learning_curves(experiment, board,
                                                  directory / "learning_curves.png")}
    notes = []
    if experiment.history["timestamp"].notna().any():
        written["anytime"] = anytime(experiment, board, directory / "anytime.png")
    lr = pd.to_numeric(board.get("lr"), errors="coerce") if "lr" in board else None
    if lr is not None and (lr > 0).any() and all(math.isfinite(v) for v in lr.dropna()):
        written["metric_vs_lr"] = metric_vs_lr(experiment, board, directory / "metric_vs_lr.png")
    else:
        notes.append(f"{experiment.score.words} against learning rate skipped: the trials have no "
                     "positive lr")
    if found is not None and found["seconds"].notna().sum() >= 2:
        written["cost_vs_metric"] = cost_vs_metric(experiment, board, found,
                                                   directory / "cost_vs_metric.png")
    else:
        notes.append(f"confirmed {experiment.score.words} against training time skipped: fewer "
                     "than 2 configs were confirmed over 2 seeds or more")
    study, why = experiment.study, experiment.study_note
    if study is None:
        notes.append(f"{why}: the optimisation history, importance and parallel coordinates "
                     "are skipped")
    else:
        fidelity, rung = first_rung_study(study, experiment.run)
        drawn, more = study_figures(fidelity, directory, rung, experiment.score)
        written.update(drawn)
        notes += more
    # a figure of an earlier report of the run must not linger
    for stem in FIGURES.keys() - written.keys():
        (directory / f"{stem}.png").unlink(missing_ok=True)
    return {stem: written[stem] for stem in FIGURES if stem in written}, notes


def write_reports(run_dir: Path) -> dict[str, Path]:
    """Write every report into run_dir and return {name: path}: leaderboard, history, best_config
    (absent when no trial has a finite score), one per figure, summary and report.

    Raises ReportError (one line) when run_dir is not an experiment or no epoch has finished.
    """
    return build_reports(run_dir)[0]


def top_rows(run_dir: Path, n: int = 5) -> str:
    """The top n rows of run_dir/leaderboard.csv as an aligned table, for printing."""
    return format_top(pd.read_csv(Path(run_dir) / LEADERBOARD_FILE), n)


def wrote(run_dir: Path, current: bool = False) -> list[str]:
    """What a run's console says of its reports: the answer (summary.md's first paragraph), where
    the main files are (`current`: written before, and still current), and the commands that open
    the run in TensorBoard and optuna-dashboard."""
    import textwrap

    relative = os.path.relpath(run_dir)
    shown = Path(run_dir if relative.startswith("..") else relative)
    lines = []
    answer = read_answer(run_dir)
    if answer is not None:
        lines += ["", *textwrap.wrap(answer.replace("\n", " "), 100), ""]
    for label, name in (("summary", SUMMARY_FILE), ("report", REPORT_FILE),
                        ("leaderboard", LEADERBOARD_FILE), ("best_config", BEST_CONFIG_FILE)):
        if (run_dir / name).is_file():
            lines.append(f"  {label:<12} {shown / name}" + (" (current)" if current else ""))
    figures = list((run_dir / FIGURES_DIR).glob("*.png"))
    if figures:
        lines.append(f"  {'figures':<12} {shown / FIGURES_DIR}/ ({len(figures)})")
    lines.append(f"  {'viewers':<12} tensorboard --logdir {shown}   |   "
                 f"optuna-dashboard {shown / STUDY_FILE}")
    return lines


def report_run(run_dir: Path, show: bool = True) -> dict[str, Path]:
    """What a run's command does last: write the reports and (where `show`) print the top trials
    and the answer; a run cut before any trial finished an epoch (a short time budget, Ctrl-C) has
    nothing to report yet, which is no error."""
    if reports_current(run_dir):
        if show:
            print(f"\n{top_rows(run_dir, 5)}")
            print("\n".join(wrote(run_dir, current=True)))
        return {}
    try:
        paths = write_reports(run_dir)
    except ReportError as err:
        if read_json(run_dir / RUN_FILE).get("status") == Status.FINISHED:
            raise
        print(f"No report yet: {err}")
        return {}
    if show:
        print(f"\n{top_rows(run_dir, 5)}")
        print("\n".join(wrote(run_dir)))
    return paths


def reports_current(run_dir: Path) -> bool:
    """The reports were written after what they read last changed: run.json (written as each phase
    ends), the study and the final training's metrics. Only a resume of a finished run finds them
    so; results.report writes them again at any time."""
    written = run_dir / REPORT_FILE  # the last one build_reports writes
    read = [run_dir / RUN_FILE, run_dir / STUDY_FILE, run_dir / FINAL_DIR / FINAL_METRICS_FILE]
    return written.is_file() and all(written.stat().st_mtime >= path.stat().st_mtime
                                     for path in read if path.is_file())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help=f"the experiment directory: <storage path>/<name>/, with {RUN_FILE} and "
                             "one directory per trial")
    parser.add_argument("--top", type=int, default=5, help="trials to print (default: 5)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.top < 1:
        fail(PROG, f"--top must be 1 or more, got {args.top}")
    try:
        paths, board, notes = build_reports(args.run_dir)
    except ReportError as err:
        fail(PROG, str(err))
    except OSError as err:
        fail(PROG, f"cannot write the reports into {args.run_dir}: {err}")
    print(f"Top {min(args.top, len(board))} of {len(board)} trials:")
    print(format_top(board, args.top))
    print("\nWrote:")
    for path in paths.values():
        print(f"  {path}")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
