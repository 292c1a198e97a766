"""Optuna's own figures of the run's study (optimisation history, hyperparameter importance,
parallel coordinates), drawn from a copy of the study in which every trial is scored at ASHA's
first rung."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from results.figures import asha_rungs, save
from results.metric import Score


def first_rung_study(study: Any, run: dict[str, Any]) -> tuple[Any, int | None]:
    """A copy of the study in which every trial that reached ASHA's first rung is COMPLETE with
    its value of the metric there, a score every trial has at the same fidelity (the study itself
    holds only the trials ASHA let finish as COMPLETE, which would leave out every stopped one)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    rungs = asha_rungs(run)
    if not rungs:
        return study, None
    rung = rungs[0]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        fidelity = optuna.create_study(study_name=study.study_name, directions=study.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        value = trial.intermediate_values.get(rung)
        if value is not None and math.isfinite(value):
            fidelity.add_trial(create_trial(params=trial.params, distributions=trial.distributions,
                                            value=value, user_attrs=trial.user_attrs))
    return fidelity, rung


def _importance_note(study: Any) -> str:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return ("hyperparameter importance needs 2 trials with a score at ASHA's first rung, "
                f"the study has {len(complete)}")
    shared = set.intersection(*(set(t.params) for t in complete))
    if not any(len({repr(t.params[p]) for t in complete}) > 1 for p in shared):
        return "hyperparameter importance needs a parameter that varies between the scored trials"
    return ""


def study_figures(study: Any, directory: Path, rung: int | None = None,
                  score: Score = Score()) -> tuple[dict[str, Path], list[str]]:
    """Optuna's own matplotlib plots of the study (of scores at epoch `rung`, said in their
    titles, where given); a note for each one that cannot be drawn."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vis

    written, notes = {}, []
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return {}, ["the Optuna study has no completed trial yet: its figures are skipped"]
    plots = {"optimization_history": vis.plot_optimization_history,
             "param_importances": vis.plot_param_importances,
             "parallel_coordinate": vis.plot_parallel_coordinate}
    for name, plot in plots.items():
        note = _importance_note(study) if name == "param_importances" else ""
        if not note:
            before = set(plt.get_fignums())
            try:
                # optuna switches pyplot to its ggplot style for good: keep that to its own figures
                with warnings.catch_warnings(), matplotlib.rc_context():
                    warnings.simplefilter("ignore")  # ExperimentalWarning, few-trial warnings
                    ax = plot(study)
                    ax.figure.set_size_inches(9, 4.5)
                    if rung is not None:
                        ax.set_title(f"{ax.get_title()}\nscore: {score.label} at epoch "
                                     f"{rung}, ASHA's first rung ({score.better})", fontsize=11)
                    written[name] = save(ax.figure, directory / f"{name}.png")
            except Exception as err:  # optuna refuses some studies; the rest of the report stands
                why = str(err).strip() or type(err).__name__
                note = f"{name.replace('_', ' ')} not drawn: {why}"
            finally:  # close the figures optuna opened, also on failure, and no one else's
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
        if note:
            notes.append(note.splitlines()[0])
    return written, notes
