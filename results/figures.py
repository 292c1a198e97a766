"""The report's figures drawn from the trials, written as PNG files into RUN_DIR/figures/, their
axes in the run's metric: learning curves, the metric against learning rate, the anytime curve,
confirmed metric against cost; and the final training's curve. The study's own figures are
results.study_figures'; results.report.write_figures draws each that can be drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from results.experiment import Experiment
from results.metric import Score
from trainables.rundir import write_atomic


def captions(score: Score) -> dict[str, str]:
    """Each figure's caption, by its file stem, in the run's metric."""
    label = score.label
    return {
        "learning_curves": f"{label[0].upper()}{label[1:]} of every trial by epoch",
        "metric_vs_lr": f"Best {label} ({score.better}) against learning rate",
        "anytime": f"Best {label} found so far against the epochs and the wall time the search "
                   "spent, per compared choice",
        "cost_vs_metric": f"Confirmed {label} (mean ± sd over seeds) against training seconds "
                          "a run, per confirmed config; the line joins those no other beats on "
                          "both",
        "optimization_history": f"Optuna: optimisation history of every trial's {label} at "
                                "ASHA's first rung, a score every trial has",
        "param_importances": f"Optuna: hyperparameter importance, fitted on every trial's {label} "
                             "at ASHA's first rung (stopped trials included)",
        "parallel_coordinate": f"Optuna: parallel coordinates of every trial's {label} at ASHA's "
                               "first rung",
    }


FIGURES = captions(Score())  # the stems, in the order the report shows them
ENDS = {  # how a curve ends, by status: marker, label
    "stopped_by_asha": ("x", "stopped by ASHA"),
    "stopped_settled": ("|", "stopped: search settled"),
    "diverged": ("v", "diverged"),
    "unfinished": ("o", "unfinished"),
}


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path


def _groups(experiment: Experiment,
            board: pd.DataFrame) -> tuple[str | None, dict[str, Any], pd.Series]:
    """The compare column, a colour per value, and each trial's group (by trial_id)."""
    import matplotlib

    compare = experiment.compare
    key = board[compare].astype(str) if compare else pd.Series("all trials", index=board.index)
    values = list(pd.unique(board[compare].dropna())) if compare else []
    try:
        values.sort()  # batch sizes 16, 32, 128 in numeric order, not as text
    except TypeError:
        values.sort(key=str)
    order = [str(v) for v in values] + sorted(set(key) - {str(v) for v in values})
    colours = matplotlib.colormaps["tab10"]
    palette = {g: colours(i % 10) for i, g in enumerate(order)}
    return compare, palette, pd.Series(key.values, index=board["trial_id"].values)


def asha_rungs(run: dict[str, Any]) -> list[int]:
    """The epochs at which ASHA compares trials: grace_period * reduction_factor**k below
    max_epochs."""
    grace, factor, top = (run.get(k) for k in ("grace_period", "reduction_factor", "max_epochs"))
    if not all(isinstance(v, (int, float)) and v > 0 for v in (grace, factor, top)) or factor <= 1:
        return []
    rungs, rung = [], grace
    while rung < top:
        rungs.append(rung)
        rung *= factor
    return rungs


def learning_curves(experiment: Experiment, board: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    compare, palette, group = _groups(experiment, board)
    score = experiment.score
    status = dict(zip(board["trial_id"], board["status"]))
    winner = board["trial_id"].iloc[0] if board[score.best_column].notna().any() else None
    fig, ax = plt.subplots(figsize=(9, 5))
    ended = set()
    for rung in asha_rungs(experiment.run):
        ax.axvline(rung, color="0.8", linestyle="--", linewidth=1, zorder=0)
    for trial_id, epochs in experiment.history.groupby("trial_id", sort=False):
        colour = palette[group[trial_id]]
        y = score.scale(epochs[score.column])
        best = trial_id == winner
        ax.plot(epochs["epoch"], y, color=colour, alpha=1 if best else 0.55,
                linewidth=2.5 if best else 1.2, marker="." if len(epochs) == 1 else None)
        finite = epochs[y.notna()]
        if status[trial_id] in ENDS and len(finite):
            ended.add(status[trial_id])
            marker = ENDS[status[trial_id]][0]
            ax.plot(finite["epoch"].iloc[-1], y[y.notna()].iloc[-1], marker,
                    color=colour, markersize=7, markerfacecolor="none" if marker == "o" else colour)
    handles = [Line2D([], [], color=c, linewidth=2, label=f"{compare}={g}" if compare else g)
               for g, c in palette.items()]
    handles += [Line2D([], [], color="0.3", marker=ENDS[s][0], linestyle="none",
                       markerfacecolor="none" if s == "unfinished" else "0.3", label=ENDS[s][1])
                for s in ENDS if s in ended]
    if asha_rungs(experiment.run):
        handles.append(Line2D([], [], color="0.8", linestyle="--", label="ASHA rungs"))
    if winner is not None:
        handles.append(Line2D([], [], color="0.3", linewidth=2.5, label=f"best: {winner}"))
    ax.legend(handles=handles, loc="lower right" if score.higher_is_better else "upper right",
              fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=score.axis(),
           title=f"Learning curves of {len(board)} trials ({score.better})")
    ax.grid(alpha=0.3)
    save(fig, path)
    plt.close(fig)
    return path


POINTS = {  # how a trial shows against learning rate, by status: marker, filled, label
    "completed": ("o", True, "completed"),
    "stopped_by_asha": ("o", False, "stopped by ASHA"),
    "stopped_settled": ("o", False, "stopped: search settled"),
    "unfinished": ("s", False, "unfinished"),
    "diverged": ("v", False, "diverged (best before)"),
    "errored": ("D", False, "errored (best before)"),
}


def metric_vs_lr(experiment: Experiment, board: pd.DataFrame, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    compare, palette, group = _groups(experiment, board)
    score = experiment.score
    best = score.best_column
    fig, ax = plt.subplots(figsize=(9, 4.5))
    shown = set()
    for g, colour in palette.items():
        rows = board[group[board["trial_id"]].values == g]
        for status, (marker, filled, _) in POINTS.items():
            part = rows[(rows["status"] == status) & rows[best].notna()]
            if len(part):
                shown.add(status)
                ax.scatter(part["lr"], score.scale(part[best]), marker=marker, s=45,
                           facecolors=colour if filled else "none", edgecolors=colour)
        failed = rows[rows[best].isna() & rows["lr"].notna()]
        if len(failed):  # no score to plot: mark their learning rates in a band on the worse side
            shown.add("none")
            ax.scatter(failed["lr"], [0.04 if score.higher_is_better else 0.96] * len(failed),
                       marker="x", s=45, color=colour, transform=ax.get_xaxis_transform())
    if "none" in shown:  # room for the band beyond every score
        low, high = ax.get_ylim()
        if score.higher_is_better:
            ax.set_ylim(low - 0.12 * (high - low), high)
            ax.axhline(low - 0.03 * (high - low), color="0.6", linestyle=":", linewidth=1)
        else:
            ax.set_ylim(low, high + 0.12 * (high - low))
            ax.axhline(high + 0.03 * (high - low), color="0.6", linestyle=":", linewidth=1)
    lr = pd.to_numeric(board["lr"], errors="coerce").dropna()
    ax.set_xscale("log")
    ax.set_xlim(lr.min() / 1.5, lr.max() * 1.5)  # autoscaling ignores the marks along the bottom
    handles = [Line2D([], [], color=c, marker="o", linestyle="none",
                      label=f"{compare}={g}" if compare else g) for g, c in palette.items()]
    handles += [Line2D([], [], color="0.3", marker=m, linestyle="none",
                       markerfacecolor="0.3" if f else "none", label=label)
                for s, (m, f, label) in POINTS.items() if s in shown]
    if "none" in shown:
        handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none",
                              label=f"no {score.words} (diverged or errored at once)"))
    ax.legend(handles=handles, fontsize=8)
    ax.set(xlabel="learning rate (log scale)", ylabel=score.axis("best"),
           title=f"Best {score.label} against learning rate ({score.better})")
    ax.grid(alpha=0.3, which="both")
    save(fig, path)
    plt.close(fig)
    return path


def anytime(experiment: Experiment, board: pd.DataFrame, path: Path) -> Path:
    """The anytime curve HPO papers compare tuners by: the best value of the metric reported so
    far, against the epochs the search has run and against its wall time, one line per compared
    choice (and one for all trials)."""
    import matplotlib.pyplot as plt

    compare, palette, group = _groups(experiment, board)
    score = experiment.score
    epochs = experiment.history.dropna(subset=["timestamp"]).sort_values(
        ["timestamp", "trial_id", "epoch"], kind="stable").reset_index(drop=True)
    epochs["spent"] = range(1, len(epochs) + 1)
    start = (epochs["timestamp"] - epochs["seconds"].fillna(0)).min()
    epochs["minutes"] = (epochs["timestamp"] - start) / 60
    epochs["group"] = group.reindex(epochs["trial_id"]).values
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    lines = [("all trials", epochs, "0.2")] if compare else []
    lines += [(g, epochs[epochs["group"] == g], palette[g]) for g in palette]
    for label, rows, colour in lines:
        values = score.scale(rows[score.column])
        best = values.cummax() if score.higher_is_better else values.cummin()
        for ax, x in zip(axes, ("spent", "minutes")):
            ax.step(rows[x], best, where="post", color=colour, linewidth=2 if label == "all trials"
                    else 1.5, label=f"{compare}={label}" if compare and label != "all trials"
                    else label)
    axes[0].set(xlabel="epochs run by the search", ylabel=score.axis("best") + " so far")
    axes[1].set(xlabel="wall time (minutes)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right" if score.higher_is_better else "upper right")
    fig.suptitle(f"Best found so far ({score.better})")
    save(fig, path)
    plt.close(fig)
    return path


def cost_vs_metric(experiment: Experiment, board: pd.DataFrame, found: pd.DataFrame,
                   path: Path) -> Path:
    """Each confirmed config's mean ± sd against its training seconds a run, coloured by its
    compared value, with the front of those no cheaper config beats marked."""
    import matplotlib.pyplot as plt

    from results.confirmation import front

    compare, palette, group = _groups(experiment, board)
    score = experiment.score
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, row in found.iterrows():
        name = group.get(row["trial_id"], "all trials")
        ax.errorbar(row["seconds"], score.scale(row["mean"]), yerr=score.scale(row["sd"] or 0),
                    fmt="o", color=palette.get(name, "0.3"), capsize=3,
                    label=f"{compare}={name}" if compare else f"trial {row['trial_id']}")
        ax.annotate(f" {row['seeds']} seeds", (row["seconds"], score.scale(row["mean"])),
                    fontsize=7, color="0.4")
    edge = front(found, score)
    ax.plot(edge["seconds"], score.scale(edge["mean"]), "--", color="0.3", linewidth=1,
            label="front: none cheaper is better")
    ax.set(xlabel="training seconds a run (mean over seeds)", ylabel=score.axis("confirmed"),
           title=f"What each confirmed config costs ({score.better})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
    plt.close(fig)
    return path


def training_curve(epochs: list[dict[str, Any]], path: Path, title: str, metric: str) -> Path:
    """A final training's curve (tuning.train): loss per epoch, and the test metric where the task
    has a test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = Score(f"test_{metric}")
    tested = score.column in epochs[0]
    x = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 2 if tested else 1, figsize=(9 if tested else 5, 3.5),
                             squeeze=False)
    ax_loss = axes[0][0]
    ax_loss.plot(x, [e["train_loss"] for e in epochs], "o-", label="train")
    if tested:
        ax_loss.plot(x, [e["test_loss"] for e in epochs], "o-", label="test")
        words = f"test {score.words}"
        axes[0][1].plot(x, [score.scale(e[score.column]) for e in epochs], "o-", color="tab:green")
        axes[0][1].set(xlabel="epoch", ylabel=words + (" (%)" if score.percent else ""),
                       title=words)
    ax_loss.set(xlabel="epoch", ylabel="average loss", title="loss")
    ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
