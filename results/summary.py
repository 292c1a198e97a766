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

from results.experiment import STATUSES, Experiment
from results.figures import FIGURES
from results.leaderboard import display_table, hyperparameter_columns, varying

TOP = 10  # rows of the leaderboard shown in the summary and the report
NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


def _name(column: str, value: Any) -> str:
    return NAMES.get(value, str(value)) if column == "optimizer" else f"{column} {value}"


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def _lr(row: pd.Series, compare: str | None) -> str:
    return f" at lr {row['lr']:.2g}" if compare != "lr" and pd.notna(row.get("lr")) else ""


def answer(experiment: Experiment, board: pd.DataFrame) -> str:
    """The run's question answered in one sentence with numbers."""
    scored = board[board["best_val_accuracy"].notna()]
    if not len(scored):
        return (f"No trial reached a finite validation accuracy: {counts(board)}; "
                "lower the learning rates or read the trials' error.txt.")
    compare = experiment.compare
    if compare is None:
        best = scored.iloc[0]
        words = ", ".join(_name(c, best[c]) if c == "optimizer" else f"{c} {_value(best[c])}"
                          for c in varying(board) if pd.notna(best[c]))
        return (f"Best configuration: {words} reached {100 * best['best_val_accuracy']:.1f}% "
                f"validation accuracy at epoch {best['best_epoch']} (trial {best['trial_id']}, "
                f"the best of {_trials(len(board))}).")
    groups = []  # (name, best row, median, count), the winner's group first as the board is ranked
    for value, rows in scored.groupby(compare, sort=False, dropna=False):
        groups.append((_name(compare, value), rows.iloc[0],
                       rows["best_val_accuracy"].median(), len(rows)))
    name, best, median, n = groups[0]
    numbers = (f"best {100 * best['best_val_accuracy']:.1f}% validation accuracy "
               f"(median {100 * median:.1f}% over {_trials(n)}){_lr(best, compare)}")
    lost = [(_name(compare, v), len(rows)) for v, rows in board.groupby(compare, dropna=False)
            if v not in set(scored[compare])]
    if len(groups) == 1 and not lost:
        return f"Only {name} was tried: {numbers}."
    others = [f"{o}'s best {100 * b['best_val_accuracy']:.1f}% (median {100 * m:.1f}% over {k})"
              f"{_lr(b, compare)}" for o, b, m, k in groups[1:]]
    others += [f"{o}, whose {_trials(k)} all diverged or errored" for o, k in lost]
    return f"{name} won: {numbers}, against {' and '.join(others)}."


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def counts(board: pd.DataFrame) -> str:
    """'22 trials: 12 completed, 8 stopped by ASHA, 1 diverged, 1 errored'."""
    found = board["status"].value_counts()
    parts = [f"{found[s]} {s.replace('_', ' ').replace('asha', 'ASHA')}"
             for s in STATUSES if s in found]
    return f"{_trials(len(board))}: {', '.join(parts)}" if parts else _trials(0)


def final_line(run_dir: Path) -> str:
    """The final training's test accuracy, when final/final_metrics.json exists and reads."""
    try:
        final = json.loads((run_dir / "final" / "final_metrics.json").read_text())
        accuracy, epochs = float(final["test_accuracy"]), len(final["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not math.isfinite(accuracy):
        return ""
    return (f"Final training of the best configuration on the whole training set (final/): "
            f"{100 * accuracy:.1f}% test accuracy after {epochs} epochs.")


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


def summary_markdown(experiment: Experiment, board: pd.DataFrame, written: dict[str, Path],
                     notes: list[str]) -> str:
    """written: the files written so far by name, the figures and best_config among them."""
    table = display_table(board, TOP)
    retrain = _retrain(written)
    rows = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    rows += ["| " + " | ".join(r) + " |" for r in table.itertuples(index=False)]
    parts = [answer(experiment, board), final_line(experiment.run_dir),
             "\n\n".join(_context(experiment, board)),
             "## Top trials\n\n" + "\n".join(rows)
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
                notes: list[str]) -> str:
    """A page that opens from disk alone: the figures are embedded as base64 PNG."""
    esc = html.escape
    title = experiment.run.get("name") or experiment.run_dir.name
    body = [f'<p class="answer">{esc(answer(experiment, board))}</p>']
    final = final_line(experiment.run_dir)
    if final:
        body.append(f'<p class="answer">{esc(final)}</p>')
    body += [f"<p>{esc(line)}</p>" for line in _context(experiment, board)]
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
