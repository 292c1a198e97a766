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

from results.confirmation import candidates, stats, welch_p
from results.experiment import STATUSES, Experiment
from results.figures import FIGURES
from results.leaderboard import display_table, hyperparameter_columns, varying
from results.rundir import BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE

TOP = 10  # rows of the leaderboard shown in the summary and the report
NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def _name(column: str, value: Any) -> str:
    return NAMES.get(value, str(value)) if column == "optimizer" else f"{column} {value}"


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


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
    compare = experiment.compare

    def said(row: pd.Series) -> str:
        spread = f" ± {100 * row['sd']:.1f}" if pd.notna(row["sd"]) else ""
        return (f"{100 * row['mean']:.1f}{spread}% over {row['seeds']} seeds for "
                f"{_label(board, row['trial_id'], compare)} "
                f"({_config(board, row['trial_id'], compare)})")

    first = found.iloc[0]
    name = _label(board, first["trial_id"], compare)
    if len(found) == 1:
        return f"Only {name} was confirmed: final validation accuracy {said(first)}."
    second = found.iloc[1]
    other = _label(board, second["trial_id"], compare)
    gap = 100 * (first["mean"] - second["mean"])
    p = welch_p(table, first["trial_id"], second["trial_id"])
    test = f"Welch's t-test p = {p:.2g}" if math.isfinite(p) else "too few seeds for Welch's t-test"
    numbers = f"final validation accuracy {said(first)}, against {said(second)}"
    if math.isfinite(p) and p < 0.05:
        text = (f"{name} won: {numbers}; the {gap:.1f}-point gap exceeds the seed noise "
                f"({test}).")
    else:
        text = (f"{name} and {other} are even within seed noise: {numbers}; the {gap:.1f}-point "
                f"gap is within the noise ({test}).")
    rest = [f"{_label(board, r['trial_id'], compare)} {100 * r['mean']:.1f}"
            + (f" ± {100 * r['sd']:.1f}" if pd.notna(r["sd"]) else "") + "%"
            for _, r in found.iloc[2:].iterrows()]
    return text + (f" Then {', '.join(rest)}." if rest else "")


def _unconfirmed(experiment: Experiment, board: pd.DataFrame) -> str:
    """The answer without confirmation: each choice's top trial, one seed each."""
    compare = experiment.compare
    picks = candidates(board, compare)
    said = [f"{_label(board, r['trial_id'], compare)} {_pct(r['val_accuracy'])} after "
            f"{r['epochs_run']} epochs ({_config(board, r['trial_id'], compare)})"
            for _, r in picks.sort_values("val_accuracy", ascending=False).iterrows()]
    return ("Not confirmed over seeds (one run each; --confirm-seeds runs more): "
            + "; ".join(said) + ".")


def _over_baseline(board: pd.DataFrame, winner: float, subject: str) -> str:
    base = board[board["baseline"].fillna(False).astype(bool) & board["val_accuracy"].notna()]
    if not len(base):
        return ""
    row = base.iloc[0]
    return (f" {subject} is {100 * (winner - row['val_accuracy']):+.1f} points over the tutorial's "
            f"settings ({_config(board, row['trial_id'], None)}: {_pct(row['val_accuracy'])} "
            f"after {row['epochs_run']} epochs, trial {row['trial_id']}).")


def answer(experiment: Experiment, board: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """The run's question answered with numbers: confirmed means ± sd where confirmation ran,
    the margin over the tutorial's settings where the search had them as its baseline."""
    if not board["val_accuracy"].notna().any():
        return (f"No trial reached a finite validation accuracy: {counts(board)}; "
                "lower the learning rates or read the trials' error.txt.")
    table = table if table is not None else pd.DataFrame(columns=["status"])
    found = stats(table, experiment.compare)
    if len(found) and found["seeds"].min() >= 2:
        return (_confirmed(experiment, board, table, found)
                + _over_baseline(board, found["mean"].iloc[0], "The best confirmed mean"))
    top = candidates(board, experiment.compare)["val_accuracy"].max()
    return _unconfirmed(experiment, board) + _over_baseline(board, top, "The best")


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
        text += (f". Confirmation trained {len(runs)} more runs, {int(runs['epochs'].sum())} "
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


def final_line(run_dir: Path) -> str:
    """The final training's test accuracy, when final/final_metrics.json exists and reads, beside
    the validation score best_config.json promised for it."""
    try:
        final = json.loads((run_dir / FINAL_DIR / FINAL_METRICS_FILE).read_text())
        accuracy, epochs = float(final["test_accuracy"]), len(final["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not math.isfinite(accuracy):
        return ""
    try:
        best = json.loads((run_dir / BEST_CONFIG_FILE).read_text())
        spread = f" ± {100 * best['val_accuracy_sd']:.1f}" if best.get("val_accuracy_sd") else ""
        seeds = f" over {best['seeds']} seeds" if best.get("seeds", 1) > 1 else ""
        promised = f" (validation accuracy {100 * best['val_accuracy']:.1f}{spread}%{seeds})"
    except (OSError, ValueError, KeyError, TypeError):
        promised = ""
    return (f"Final training of the best configuration on the whole training set (final/): "
            f"{100 * accuracy:.1f}% test accuracy after {epochs} epochs{promised}.")


def _context(experiment: Experiment, board: pd.DataFrame) -> list[str]:
    run = experiment.run
    lines = []
    if run.get("question"):
        lines.append(f"Question: {run['question']}")
    about = [f"space {run['space']}" if run.get("space") else "",
             f"status {run['status']}" if run.get("status") else "",
             f"metric {run.get('metric', 'val_accuracy')} ({run.get('mode', 'max')})"]
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
    """Each confirmed config: its mean ± sd and every seed's final validation accuracy, as text."""
    found = stats(confirmed, experiment.compare)
    rows = []
    for _, row in found.iterrows():
        runs = confirmed[confirmed["trial_id"] == row["trial_id"]]
        rows.append({**({experiment.compare: str(row[experiment.compare])}
                        if experiment.compare else {}),
                     "trial_id": row["trial_id"],
                     "mean ± sd": f"{100 * row['mean']:.2f}"
                                  + (f" ± {100 * row['sd']:.2f}" if pd.notna(row["sd"]) else "")
                                  + "%",
                     "seeds": ", ".join(f"{s}: {_pct(a) if pd.notna(a) else st}" for s, a, st in
                                        zip(runs["seed"], runs["val_accuracy"], runs["status"]))})
    return pd.DataFrame(rows)


def _markdown_table(table: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(rows + ["| " + " | ".join(map(str, r)) + " |"
                             for r in table.itertuples(index=False)])


CONFIRMATION = ("## Confirmation over seeds\n\nFinal validation accuracy of each confirmed config "
                "trained for its planned epochs with each seed (confirmation.csv).")


def summary_markdown(experiment: Experiment, board: pd.DataFrame, written: dict[str, Path],
                     notes: list[str], confirmed: pd.DataFrame | None = None) -> str:
    """written: the files written so far by name, the figures and best_config among them;
    confirmed: the confirmation table (results.confirmation.confirmation_table)."""
    table = display_table(board, TOP)
    retrain = _retrain(written)
    seeds = confirmation_display(experiment, confirmed) if confirmed is not None else []
    parts = [answer(experiment, board, confirmed), final_line(experiment.run_dir),
             cost(experiment, board, confirmed), "\n\n".join(_context(experiment, board)),
             CONFIRMATION + "\n\n" + _markdown_table(seeds) if len(seeds) else "",
             "## Top trials\n\n" + _markdown_table(table)
             + f"\n\nTop {len(table)} of {len(board)}; every trial in leaderboard.csv, "
             "every epoch in history.csv." + (f" {RETRAIN}: `{retrain}`" if retrain else ""),
             "## Figures\n\n" + "\n\n".join(f"![{FIGURES[s]}](figures/{p.name})"
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
    final = final_line(experiment.run_dir)
    if final:
        body.append(f'<p class="answer">{esc(final)}</p>')
    body.append(f"<p>{esc(cost(experiment, board, confirmed))}</p>")
    body += [f"<p>{esc(line)}</p>" for line in _context(experiment, board)]
    seeds = confirmation_display(experiment, confirmed) if confirmed is not None else []
    if len(seeds):
        heading, text = CONFIRMATION.removeprefix("## ").split("\n\n")
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
        body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(FIGURES[stem])}">'
                    f"<figcaption>{esc(FIGURES[stem])} (figures/{esc(path.name)})</figcaption>"
                    "</figure>")
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}: tuning report</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
