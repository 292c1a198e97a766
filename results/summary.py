"""summary.md and report.html: the answer to the run's question first, then the top trials and
the figures."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from results.confirmation import (CHEAPER, NOISE, candidates, cheaper_than, cheapest_as_good,
                                  stats, welch_p, within_noise)
from results.experiment import STATUSES, Experiment
from results.figures import FIGURES, captions
from results.leaderboard import display_table, hyperparameter_columns, varying
from results.metric import Score
from results.rundir import BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE

TOP = 10  # rows of the leaderboard shown in the summary and the report
NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def _name(column: str, value: Any) -> str:
    if column == "optimizer":
        return NAMES.get(value, str(value))
    return f"{value} epochs" if column == "epochs" else f"{column} {value}"


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _config(board: pd.DataFrame, trial_id: str, compare: str | None) -> str:
    """The hyperparameters that vary between trials, of one trial, as words."""
    row = board.set_index("trial_id").loc[trial_id]
    return ", ".join(f"{c} {_value(row[c])}" for c in varying(board)
                     if c != compare and pd.notna(row[c]))


def _label(board: pd.DataFrame, trial_id: str, compare: str | None) -> str:
    if compare is None:
        return f"trial {trial_id}"
    return _name(compare, board.set_index("trial_id").loc[trial_id, compare])


def _confirmed(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame,
               found: pd.DataFrame) -> str:
    """The answer from confirmation: mean ± sd per config and whether the gap beats the noise."""
    compare, score = experiment.compare, experiment.score

    def said(row: pd.Series) -> str:
        return (f"{score.spread(row['mean'], row['sd'])} over {row['seeds']} seeds for "
                f"{_label(board, row['trial_id'], compare)} "
                f"({_config(board, row['trial_id'], compare)})")

    first = found.iloc[0]
    name = _label(board, first["trial_id"], compare)
    metric = f"final {score.label} ({score.better})"
    if len(found) == 1:
        return f"Only {name} was confirmed: {metric} {said(first)}."
    second = found.iloc[1]
    other = _label(board, second["trial_id"], compare)
    gap = score.gap(first["mean"], second["mean"])
    p = welch_p(table, first["trial_id"], second["trial_id"], score)
    test = f"Welch's t-test p = {p:.2g}" if math.isfinite(p) else "too few seeds for Welch's t-test"
    numbers = f"{metric} {said(first)}, against {said(second)}"
    if math.isfinite(p) and p < NOISE:
        text = f"{name} won: {numbers}; {gap} exceeds the seed noise ({test})."
    else:
        text = (f"{name} and {other} are even within seed noise: {numbers}; {gap} is within "
                f"the noise ({test}).")
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


def _test(p: float) -> str:
    return f"p = {p:.2g}" if math.isfinite(p) else "too few seeds to test"


def _longer(experiment: Experiment, table: pd.DataFrame, found: pd.DataFrame) -> str:
    """Where the run compares epochs: what each longer training buys over the next shorter one,
    confirmed mean against confirmed mean, within the noise or beyond it."""
    if experiment.compare != "epochs" or len(found) < 2:
        return ""
    score = experiment.score
    ladder = found.sort_values("epochs", key=lambda e: pd.to_numeric(e), kind="stable")
    steps = []
    for (_, short), (_, long) in zip(ladder.iloc[:-1].iterrows(), ladder.iloc[1:].iterrows()):
        even, p = within_noise(table, long, short, score)
        margin = f"{score.margin(long['mean'], short['mean'])} {short['epochs']}"
        if not even:  # beyond the noise, or too few seeds to tell
            steps.append(f"{long['epochs']} epochs: {margin} ({_test(p)})")
        else:
            steps.append(f"{long['epochs']} epochs: no gain over {short['epochs']} within the "
                         f"noise ({margin}, {_test(p)})")
    return " What more epochs buy, confirmed mean against confirmed mean: " + "; ".join(steps) + "."


def _cheapest(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame,
              found: pd.DataFrame) -> str:
    """The confirmed config of least training time that is as good as the best within the seed
    noise, and what it saves; or that no other trains in CHEAPER of the best's time, or that
    every one that does is worse beyond the noise."""
    score, compare = experiment.score, experiment.compare
    best = found.iloc[0]
    if len(found) < 2 or not math.isfinite(best["seconds"]):
        return ""
    cheapest = cheapest_as_good(table, found, score)
    faster = f"trains in {CHEAPER:.0%} of the best's time or less"
    if cheapest is None:
        if not len(cheaper_than(found, best)):
            return f" No other confirmed config {faster}."
        return f" Every confirmed config that {faster} is worse beyond the seed noise."
    row, p = cheapest
    return (f" The cheapest config as good as the best within the seed noise is "
            f"{_label(board, row['trial_id'], compare)} ({_config(board, row['trial_id'], compare)}"
            f"): {score.spread(row['mean'], row['sd'])} for {row['seconds'] / best['seconds']:.0%} "
            f"of the training time ({row['seconds']:.0f} s against {best['seconds']:.0f} s a run; "
            f"{_test(p)} against the best).")


def answer(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """The run's question answered with numbers in the run's metric: confirmed means ± sd where
    confirmation ran, the margin over the task's baseline where the search had it as trial 0."""
    score = experiment.score
    if not board[score.column].notna().any():
        return (f"No trial reached a finite {score.label}: {counts(board)}; "
                "lower the learning rates or read the trials' error.txt.")
    table = table if table is not None else pd.DataFrame(columns=["status"])
    found = stats(table, experiment.compare, score)
    if len(found) and found["seeds"].min() >= 2:
        return (_confirmed(experiment, board, table, found)
                + _over_baseline(board, score, found.iloc[0], "The best confirmed mean", found)
                + _longer(experiment, table, found) + _cheapest(experiment, board, table, found))
    picks = candidates(board, experiment.compare).dropna(subset=[score.column])
    top = picks.sort_values(score.column, ascending=not score.higher_is_better).iloc[0]
    return _unconfirmed(experiment, board) + _over_baseline(board, score, top, "The best")


def cost(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame | None) -> str:
    """What the search and the confirmation spent, in epochs and wall time."""
    run = experiment.run
    ran, planned = int(board["epochs_run"].sum()), board["epochs_planned"].sum()
    stopped = int((board["status"] == "stopped_by_asha").sum())
    text = f"ASHA stopped {stopped} of {_trials(len(board))}: {ran} of {planned} planned epochs run"
    if planned:
        text += f", {100 * (1 - ran / planned):.0f}% saved"
    if run.get("search_seconds"):
        text += f", in {run['search_seconds'] / 60:.1f} min"
    runs = table[table["run"] == "confirmation"] if table is not None and len(table) else None
    if runs is not None and len(runs):
        text += (f". Confirmation trained {len(runs)} more runs, {int(runs['epochs_run'].sum())} "
                 "epochs" + (f", in {run['confirm_seconds'] / 60:.1f} min"
                             if run.get("confirm_seconds") else ""))
    return text + "."


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def counts(board: pd.DataFrame) -> str:
    """'22 trials: 12 completed, 8 stopped by ASHA, 1 diverged, 1 errored'."""
    found = board["status"].value_counts()
    parts = [f"{found[s]} {s.replace('_', ' ').replace('asha', 'ASHA')}"
             for s in STATUSES if s in found]
    return f"{_trials(len(board))}: {', '.join(parts)}" if parts else _trials(0)


def final_line(run_dir: Path, score: Score) -> str:
    """The final training's test score, when final/final_metrics.json exists and reads, beside
    the validation score best_config.json promised for it; where the task has no test split,
    that it was not tested."""
    try:
        final = json.loads((run_dir / FINAL_DIR / FINAL_METRICS_FILE).read_text())
        epochs = len(final["epochs"])
        tested = final.get(f"test_{score.name}")
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    head = "Final training of the best configuration on the whole training set (final/): "
    if tested is None:
        return (head + f"{epochs} epochs, not tested: the task has no test split (its "
                "load_data returns none).")
    if not math.isfinite(tested):
        return ""
    try:
        best = json.loads((run_dir / BEST_CONFIG_FILE).read_text())
        column = best.get("metric", "val_accuracy")
        seeds = f" over {best['seeds']} seeds" if best.get("seeds", 1) > 1 else ""
        promised = (f" ({score.label} {score.spread(best[column], best.get(f'{column}_sd'))}"
                    f"{seeds})")
    except (OSError, ValueError, KeyError, TypeError):
        promised = ""
    return f"{head}{score.format(tested)} test {score.words} after {epochs} epochs{promised}."


def _context(experiment: Experiment, board: pd.DataFrame) -> list[str]:
    run = experiment.run
    lines = []
    if run.get("question"):
        lines.append(f"Question: {run['question']}")
    task = (run.get("task") or {}).get("name")
    about = [f"space {run['space']}" if run.get("space") else "",
             f"task {task}" if task else "",
             f"status {run['status']}" if run.get("status") else "",
             f"metric {experiment.score.column} ({experiment.score.better})"]
    lines.append(f"Run {run.get('name') or experiment.run_dir.name}: "
                 + ", ".join(a for a in about if a) + f"; {counts(board)}.")
    fixed = [c for c in hyperparameter_columns(board) if c not in varying(board)
             and board[c].notna().all()]
    if fixed:
        lines.append("The same in every trial: "
                     + ", ".join(f"{c} {_value(board[c].iloc[0])}" for c in fixed) + ".")
    return lines


RETRAIN = "Retrain the winner on the whole training set"
COMMAND = "python -m tuning.train --config {}"


def _figures(written: dict[str, Path]) -> dict[str, Path]:
    return {stem: path for stem, path in written.items() if stem in FIGURES}


def _retrain(written: dict[str, Path]) -> str:
    return COMMAND.format(written["best_config"]) if "best_config" in written else ""


def confirmation_display(experiment: Experiment, confirmed: pd.DataFrame) -> pd.DataFrame:
    """Each confirmed config: its mean ± sd and every seed's final value of the metric, as text."""
    score = experiment.score
    found = stats(confirmed, experiment.compare, score)
    rows = []
    for _, row in found.iterrows():
        runs = confirmed[confirmed["trial_id"] == row["trial_id"]]
        rows.append({**({experiment.compare: str(row[experiment.compare])}
                        if experiment.compare else {}),
                     "trial_id": row["trial_id"],
                     "mean ± sd": score.spread(row["mean"], row["sd"], digits=2),
                     "train s": f"{row['seconds']:.0f}" if pd.notna(row["seconds"]) else "-",
                     "seeds": ", ".join(f"{s}: {score.format(a) if pd.notna(a) else st}"
                                        for s, a, st in zip(runs["seed"], runs[score.column],
                                                            runs["status"]))})
    return pd.DataFrame(rows)


def _markdown_table(table: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(rows + ["| " + " | ".join(map(str, r)) + " |"
                             for r in table.itertuples(index=False)])


def confirmation_heading(score: Score) -> tuple[str, str]:
    return ("Confirmation over seeds", f"Final {score.label} of each confirmed config trained for "
                                       "its planned epochs with each seed, and its mean training "
                                       "seconds a run (confirmation.csv).")


def summary_markdown(experiment: Experiment, board: pd.DataFrame, written: dict[str, Path],
                     notes: list[str], confirmed: pd.DataFrame | None = None) -> str:
    """written: the files written so far by name, the figures and best_config among them;
    confirmed: the confirmation table (results.confirmation.confirmation_table)."""
    table = display_table(board, TOP)
    retrain = _retrain(written)
    seeds = confirmation_display(experiment, confirmed) if confirmed is not None else []
    score = experiment.score
    heading, text = confirmation_heading(score)
    parts = [answer(experiment, board, confirmed), final_line(experiment.run_dir, score),
             cost(experiment, board, confirmed), "\n\n".join(_context(experiment, board)),
             f"## {heading}\n\n{text}\n\n{_markdown_table(seeds)}" if len(seeds) else "",
             "## Top trials\n\n" + _markdown_table(table)
             + f"\n\nTop {len(table)} of {len(board)}; every trial in leaderboard.csv, "
             "every epoch in history.csv." + (f" {RETRAIN}: `{retrain}`" if retrain else ""),
             "## Figures\n\n" + "\n\n".join(f"![{captions(score)[s]}](figures/{p.name})"
                                            for s, p in _figures(written).items())]
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    return "\n\n".join(p for p in parts if p) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}.answer{font-size:1.3em;font-weight:600;line-height:1.4}
table{border-collapse:collapse;font-size:.85em}
td,th{padding:.25em .45em;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}
figure{margin:1.5em 0}figcaption{color:#555}.wide{overflow-x:auto}"""


def report_html(experiment: Experiment, board: pd.DataFrame, written: dict[str, Path],
                notes: list[str], confirmed: pd.DataFrame | None = None) -> str:
    """A page that opens from disk alone: the figures are embedded as base64 PNG."""
    esc = html.escape
    title = experiment.run.get("name") or experiment.run_dir.name
    body = [f'<p class="answer">{esc(answer(experiment, board, confirmed))}</p>']
    score = experiment.score
    final = final_line(experiment.run_dir, score)
    if final:
        body.append(f'<p class="answer">{esc(final)}</p>')
    body.append(f"<p>{esc(cost(experiment, board, confirmed))}</p>")
    body += [f"<p>{esc(line)}</p>" for line in _context(experiment, board)]
    seeds = confirmation_display(experiment, confirmed) if confirmed is not None else []
    if len(seeds):
        heading, text = confirmation_heading(score)
        body.append(f"<h2>{esc(heading)}</h2><p>{esc(text)}</p>"
                    + seeds.to_html(index=False, border=0))
    top = display_table(board, TOP).to_html(index=False, border=0)
    body.append(f'<h2>Top trials</h2><div class="wide">{top}</div>')
    full = display_table(board, len(board)).to_html(index=False, border=0)
    body.append(f'<details><summary>All {len(board)} trials</summary>'
                f'<div class="wide">{full}</div></details>')
    if _retrain(written):
        body.append(f"<p>{RETRAIN}: <code>{esc(_retrain(written))}</code></p>")
    body.append("<h2>Figures</h2>")
    for stem, path in _figures(written).items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = esc(captions(score)[stem])
        body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                    f"<figcaption>{caption} (figures/{esc(path.name)})</figcaption>"
                    "</figure>")
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}: tuning report</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
