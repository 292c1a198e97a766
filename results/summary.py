"""summary.md and report.html: the answer to the run's question first, then the top trials and
the figures."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from results.answer import answer, cost, counts, value_text
from results.confirmation import stats
from results.experiment import Experiment
from results.figures import FIGURES, captions
from results.leaderboard import display_table, hyperparameter_columns, varying
from results.metric import Score
from trainables.rundir import BEST_CONFIG_FILE, FINAL_DIR, FINAL_METRICS_FILE

TOP = 10  # rows of the leaderboard shown in the summary and the report


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
                     + ", ".join(f"{c} {value_text(board[c].iloc[0])}" for c in fixed) + ".")
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
