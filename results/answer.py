"""The answer to the run's question, in words and the run's metric: the confirmed verdict between
the compared values (better, even within the margin, or undecided: results.verdict) with its
interval and seeds, the margin over the baseline, what more epochs buy, the cheapest config as
good as the best; or what went wrong (every trial diverged, a value that diverged everywhere, a
metric that never moved); and what the search and the confirmation cost."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from results.confirmation import (CHEAPER, Verdicts, candidates, looks_of, margin_of, stats,
                                  verdicts)
from results.experiment import STATUSES, Experiment
from results.leaderboard import varying
from results.metric import Score
from results.race import dropped_because, settled_because
from results.verdict import BETTER, EVEN, Gap

NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def _name(column: str, value: Any) -> str:
    if column == "optimizer":
        return NAMES.get(value, str(value))
    return f"{value} epochs" if column == "epochs" else f"{column} {value}"


def trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def value_text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def counts(board: pd.DataFrame) -> str:
    """'22 trials: 12 completed, 8 stopped by ASHA, 1 diverged, 1 errored'."""
    found = board["status"].value_counts()
    parts = [f"{found[s]} {s.replace('_', ' ').replace('asha', 'ASHA')}"
             for s in STATUSES if s in found]
    return f"{trials(len(board))}: {', '.join(parts)}" if parts else trials(0)


def _config(board: pd.DataFrame, trial_id: str, compare: str | None) -> str:
    """The hyperparameters that vary between trials, of one trial, as words."""
    row = board.set_index("trial_id").loc[trial_id]
    return ", ".join(f"{c} {value_text(row[c])}" for c in varying(board)
                     if c != compare and pd.notna(row[c]))


def _label(board: pd.DataFrame, trial_id: str, compare: str | None) -> str:
    if compare is None:
        return f"trial {trial_id}"
    return _name(compare, board.set_index("trial_id").loc[trial_id, compare])


def _interval(score: Score, found: Gap) -> str:
    """'(95% interval 0.1 to 0.9 points)': the interval the gap's verdict rests on, held over
    the looks (90% for an equivalence test: results.verdict)."""
    if not (math.isfinite(found.low) and math.isfinite(found.high)):
        return "(too few runs for an interval)"
    return (f"({found.level:.0%} interval {score.amount(found.low)} to "
            f"{score.amount(found.high, unit=True)})")


def _margin(score: Score, margin: float) -> str:
    """'the 1-point margin', 'the margin of 0.53'."""
    if score.percent:
        return f"the {100 * margin:g}-point margin"
    return f"the margin of {margin:.2g}"


def _verdict(experiment: Experiment, board: pd.DataFrame, found: pd.DataFrame,
             judged: Verdicts) -> str:
    """The best confirmed config against the runner-up, in words."""
    compare, score = experiment.compare, experiment.score

    def said(row: pd.Series) -> str:
        return (f"{score.spread(row['mean'], row['sd'])} over {row['seeds']} seeds for "
                f"{_label(board, row['trial_id'], compare)} "
                f"({_config(board, row['trial_id'], compare)})")

    metric = f"final {score.label} ({score.better})"
    if judged.main is None:
        return f"Only {_label(board, found.iloc[0]['trial_id'], compare)} was confirmed: " \
               f"{metric} {said(found.iloc[0])}."
    first, second, found_gap = judged.main
    a, b = (_label(board, r["trial_id"], compare) for r in (first, second))
    numbers = f"{metric} {said(first)}, against {said(second)}"
    lead, margin = score.amount(found_gap.gain, unit=True), _margin(score, judged.margin)
    if found_gap.verdict == EVEN:
        text = (f"{a} and {b} are even within {margin}: {numbers}; {a} leads by {lead} "
                f"{_interval(score, found_gap)}, inside ±{score.amount(judged.margin)}"
                + (", a real lead smaller than the margin." if found_gap.low > 0 else "."))
    elif found_gap.verdict == BETTER:
        text = f"{a} is better: {numbers}; {a} leads by {lead} {_interval(score, found_gap)}."
    else:
        text = (f"Undecided between {a} and {b} after {min(found_gap.seeds)} seeds: {numbers}; "
                f"the lead of {lead} {_interval(score, found_gap)} could still be a real "
                f"difference or evenness within {margin} (--max-seeds runs more seeds).")
    rest = [f"{_label(board, r['trial_id'], compare)} {score.spread(r['mean'], r['sd'])}"
            for _, r in found.iloc[2:].iterrows()]
    return text + (f" Then {', '.join(rest)}." if rest else "")


def _unconfirmed(experiment: Experiment, board: pd.DataFrame) -> str:
    """The answer without confirmation: each choice's top trial, one seed each."""
    compare, score = experiment.compare, experiment.score
    picks = candidates(board, compare)
    said = [f"{_label(board, r['trial_id'], compare)} {score.format(r[score.column])} after "
            f"{r['epochs_run']} epochs ({_config(board, r['trial_id'], compare)})"
            for _, r in picks.sort_values(score.column, ascending=not score.higher_is_better
                                          ).iterrows()]
    return (f"Not confirmed over seeds (one run each; --confirm-seeds runs more): {score.label} "
            f"({score.better}) " + "; ".join(said) + ".")


def _lanes(experiment: Experiment, board: pd.DataFrame) -> str:
    """Compared values that could not be judged: every trial of theirs diverged, or none ran
    its planned epochs (its best was confirmed from a trial cut short, or not at all)."""
    compare, score = experiment.compare, experiment.score
    if compare is None:
        return ""
    notes = []
    for value, rows in board.groupby(compare, sort=False, dropna=False):
        name = _name(compare, value)
        if rows[score.column].isna().all() and (rows["status"] == "diverged").all():
            notes.append(f"{name} diverged at every setting tried ({trials(len(rows))}): its "
                         "loss became NaN or infinite; a smaller learning rate range may train it")
        elif not (rows["status"] == "completed").any() and rows[score.column].notna().any():
            notes.append(f"no {name} trial ran its planned epochs ({trials(len(rows))}, cut "
                         f"short at {int(rows['epochs_run'].max())} epochs at most): its best "
                         "is judged on fewer epochs than the others")
    return "".join(f" {note[0].upper()}{note[1:]}." for note in notes)


def _over_baseline(board: pd.DataFrame, score: Score, winner: pd.Series, subject: str,
                   found: pd.DataFrame | None = None) -> str:
    """The winner (a row of `found`, the confirmed configs, or of the board) against trial 0, the
    task's baseline settings: against the baseline's confirmed mean where it was confirmed too,
    else its one run."""
    base = board[board["baseline"].fillna(False).astype(bool) & board[score.column].notna()]
    if not len(base):
        return ""
    row = base.iloc[0]
    settings = _config(board, row["trial_id"], None)
    if winner["trial_id"] == row["trial_id"]:
        return (f" The best config is the baseline settings themselves ({settings}, trial "
                f"{row['trial_id']}): the search found nothing better.")
    mine = found[found["trial_id"] == row["trial_id"]] if found is not None else []
    if len(mine):
        mean, sd, seeds = mine.iloc[0][["mean", "sd", "seeds"]]
        value, said = mean, f"{score.spread(mean, sd)} over {seeds} seeds"
    else:
        value = row[score.column]
        said = f"{score.format(value)} after {row['epochs_run']} epochs"
    mean = winner["mean"] if "mean" in winner else winner[score.column]
    return (f" {subject} is {score.margin(mean, value)} the baseline settings ({settings}: "
            f"{said}, trial {row['trial_id']}).")


def _longer(experiment: Experiment, judged: Verdicts) -> str:
    """Where the run compares epochs: what each longer training buys over the next shorter one,
    confirmed mean against confirmed mean, and the verdict on it."""
    score = experiment.score
    steps = []
    for long, short, found in judged.ladder:
        words = {BETTER: "better", EVEN: f"even within {_margin(score, judged.margin)}"
                 + (", a real gain smaller than it" if found.low > 0 else "")}
        steps.append(f"{long['epochs']} epochs: {score.amount(found.gain, signed=True, unit=True)}"
                     f" over {short['epochs']} {_interval(score, found)}, "
                     f"{words.get(found.verdict, 'undecided')}")
    if not steps:
        return ""
    return " What more epochs buy, confirmed mean against confirmed mean: " + "; ".join(steps) + "."


def _cheapest(experiment: Experiment, board: pd.DataFrame, found: pd.DataFrame,
              judged: Verdicts) -> str:
    """The confirmed config of least training time that is as good as the best within the
    margin (non-inferiority), and what it saves; or that none trains in CHEAPER of the best's
    time, or whether the ones that do are worse or still open."""
    score, compare = experiment.score, experiment.compare
    best = found.iloc[0]
    if len(found) < 2 or not math.isfinite(best["seconds"]):
        return ""
    faster = f"trains in {CHEAPER:.0%} of the best's time or less"
    if not judged.cheaper:
        return f" No other confirmed config {faster}."
    margin = _margin(score, judged.margin)
    for row, found_gap in judged.cheaper:
        if found_gap.verdict == EVEN:
            return (f" The cheapest config as good as the best within {margin} is "
                    f"{_label(board, row['trial_id'], compare)} "
                    f"({_config(board, row['trial_id'], compare)}): "
                    f"{score.spread(row['mean'], row['sd'])} for "
                    f"{row['seconds'] / best['seconds']:.0%} of the training time "
                    f"({row['seconds']:.0f} s against {best['seconds']:.0f} s a run; "
                    f"{score.amount(found_gap.gain, signed=True, unit=True)} against the best "
                    f"{_interval(score, found_gap)}).")
    if all(g.verdict != EVEN and g.high < -judged.margin for _, g in judged.cheaper):
        return f" Every confirmed config that {faster} is worse than the best by more than {margin}."
    return (f" No confirmed config that {faster} is shown as good as the best within {margin} "
            "yet: their intervals reach below it.")


def _constant(experiment: Experiment) -> str:
    """Where every epoch of every trial scored the same: the metric did not respond."""
    score = experiment.score
    values = experiment.history[score.column].dropna()
    if len(values) < 2 or values.nunique() > 1:
        return ""
    return (f"Every trial scored {score.format(values.iloc[0])} at every epoch: the metric did "
            "not respond to any setting; check that the metric reads the model's outputs and "
            "that the targets vary (python -m tuning.check runs one batch).")


def _no_score(experiment: Experiment, board: pd.DataFrame) -> str:
    score = experiment.score
    if (board["status"] == "diverged").all():
        return (f"Every trial diverged ({trials(len(board))}): the loss became NaN or infinite, "
                f"by epoch {int(board['epochs_run'].max())} in each; check that the model's "
                "outputs are finite (python -m tuning.check runs one batch) and lower the "
                "learning rates.")
    return (f"No trial reached a finite {score.label}: {counts(board)}; "
            "lower the learning rates or read the trials' error.txt.")


def answer(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """The run's question answered with numbers in the run's metric: the confirmed verdict where
    confirmation ran, the margin over the task's baseline where the search had it as trial 0."""
    score = experiment.score
    if not board[score.column].notna().any():
        return _no_score(experiment, board)
    constant = _constant(experiment)
    if constant:
        return constant
    table = table if table is not None else pd.DataFrame(columns=["status"])
    found = stats(table, experiment.compare, score)
    lanes = _lanes(experiment, board)
    if len(found) and found["seeds"].max() >= 2:  # confirmation ran, though some runs failed
        judged = verdicts(table, found, experiment.compare, score,
                          margin_of(experiment.run, score, float(found["mean"].iloc[0])),
                          looks_of(experiment.run))
        return (_verdict(experiment, board, found, judged) + lanes
                + _over_baseline(board, score, found.iloc[0], "The best confirmed mean", found)
                + _longer(experiment, judged) + _cheapest(experiment, board, found, judged))
    picks = candidates(board, experiment.compare).dropna(subset=[score.column])
    top = picks.sort_values(score.column, ascending=not score.higher_is_better).iloc[0]
    return _unconfirmed(experiment, board) + lanes + _over_baseline(board, score, top, "The best")


def _search(experiment: Experiment, board: pd.DataFrame) -> str:
    """The race's and the search's own doings: values dropped, the settled stop, a warm start."""
    record, run, compare = experiment.search, experiment.run, experiment.compare
    parts = []
    for key, drop in (record.get("dropped") or {}).items():
        value = key.split("=", 1)[1].strip("'") if "=" in key else key
        parts.append(f"The race dropped {_name(compare, value) if compare else value} after "
                     f"trial {drop['after']}: {dropped_because(drop, experiment.score)}.")
    settled = record.get("settled")
    if settled:
        ran = int(board["epochs_run"].sum())
        per = ran / max(1, len(board))
        unrun = max(0, settled["of"] - len(board)) * per
        saved = f"; about {100 * unrun / (ran + unrun):.0f}% of its epochs saved" if unrun else ""
        stopped = int((board["status"] == "stopped_settled").sum())
        halted = f"; it stopped the {trials(stopped)} then running" if stopped else ""
        parts.append(f"The search settled after {len(board)} of {settled['of']} trials: "
                     f"{settled_because(settled, experiment.score)}{halted}{saved} "
                     "(--full-budget runs them all).")
    if record.get("starts"):
        parts.append(f"{trials(record['starts'])} began from the space's starting configs "
                     f"(STARTS){', one a value' if compare else ''}.")
    if record.get("warm_start"):
        parts.append(f"TPE started from {trials(record['warm_start'])} of an earlier run "
                     f"({run.get('warm_start')}).")
    return " ".join(parts)


def cost(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame | None) -> str:
    """What the search and the confirmation spent, in epochs, seeds and wall time."""
    run = experiment.run
    ran, planned = int(board["epochs_run"].sum()), board["epochs_planned"].sum()
    stopped = int((board["status"] == "stopped_by_asha").sum())
    text = f"ASHA stopped {stopped} of {trials(len(board))}: {ran} of {planned} planned epochs run"
    if planned:
        text += f", {100 * (1 - ran / planned):.0f}% saved"
    if run.get("search_seconds"):
        text += f", in {run['search_seconds'] / 60:.1f} min"
    runs = table[table["run"] == "confirmation"] if table is not None and len(table) else None
    if runs is not None and len(runs):
        seeds = table.groupby("trial_id").size()
        took = (f"{seeds.max()} seeds a config" if seeds.nunique() == 1 else
                f"{seeds.min()} to {seeds.max()} seeds a config")
        looks = looks_of(run)
        text += (f". Confirmation trained {len(runs)} more runs ({took}, the search's own "
                 f"counting; looks at {', '.join(map(str, looks))}), "
                 f"{int(runs['epochs_run'].sum())} epochs"
                 + (f", in {run['confirm_seconds'] / 60:.1f} min" if run.get("confirm_seconds")
                    else ""))
    search = _search(experiment, board)
    return text + "." + (f" {search}" if search else "")
