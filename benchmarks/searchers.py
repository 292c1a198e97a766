"""Our search against the recipes a user would pick instead: the same space, the same number of
trials, the same data and the same trainable, over several seeds each.

    python benchmarks/searchers.py                       # 3 recipes x 3 seeds: ~20 min on 2 cores
    python benchmarks/searchers.py --seeds 1 --num-samples 4 --max-epochs 2   # a quick look

The recipes:
  ours    tuning.tune: TPE (multivariate, grouped, constant liar), the race (each compared value
          takes turns and is stopped in ASHA rungs of its own) and the task's baseline as trial 0
  optuna  Ray Tune's documented recipe: OptunaSearch (Optuna's TPE) with ASHAScheduler
  random  random search (Optuna's RandomSampler through OptunaSearch) with ASHAScheduler

on benchmarks/fashion_mnist_subset.py (6,000 training and 5,000 validation images), the space's
trials run 2 at a time on 1 CPU each. Printed per recipe, mean ± sd over the seeds:
  - the best validation accuracy any epoch reported after 25%, 50% and 100% of E epochs spent,
    E being the fewest epochs any run spent, so that every recipe is read at the same budget;
  - the epochs spent until an epoch came within 0.3 points of the best any run found (a run that
    never did counts as not reaching it);
  - whether the run's pick of the compared choice (ours: best_config.json; the others: Ray's
    get_best_result, scope "last") is the truth: the best config found for each choice by any
    run, trained again over 3 seeds.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "benchmarks" / "fashion_mnist_subset.py"
RECIPES = ("ours", "optuna", "random")
SHARES = (0.25, 0.5, 1.0)
NEAR = 0.003  # "within 0.3 points of the best"
SCORE = "val_accuracy"


def ours(args: argparse.Namespace, seed: int, storage: Path) -> tuple[pd.DataFrame, object]:
    """Every epoch our search reported (trial_id, epoch, val_accuracy, timestamp, the compared
    value) and its pick."""
    from results.experiment import load_experiment
    from tuning.run import tune

    tuned = tune(args.space, task=str(TASK), num_samples=args.num_samples,
                 max_epochs=args.max_epochs, grace_period=args.grace_period,
                 reduction_factor=args.reduction_factor, seed=seed, confirm_seeds=0,
                 storage_path=str(storage), name=f"ours-{seed}")
    experiment = load_experiment(tuned.run_dir)
    compare = experiment.compare
    epochs = experiment.history[["trial_id", "epoch", SCORE, "timestamp"]].copy()
    epochs["config"] = [experiment.params[t] for t in epochs["trial_id"]]
    return epochs, tuned.best_config[compare]


def stock(args: argparse.Namespace, seed: int, storage: Path, recipe: str, task, data
          ) -> tuple[pd.DataFrame, object]:
    """The same, for Ray Tune's OptunaSearch (TPE, or random sampling) with ASHAScheduler, as its
    documentation sets them up."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search_spaces import get_space
    from trainables.trainable import train_trial

    space = get_space(args.space)
    sampler = (optuna.samplers.RandomSampler(seed=seed) if recipe == "random"
               else optuna.samplers.TPESampler(seed=seed))
    searcher = OptunaSearch(functools.partial(space.define, max_epochs=args.max_epochs),
                            metric=SCORE, mode="max", sampler=sampler)
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=SCORE, mode="max",
                              max_t=args.max_epochs, grace_period=args.grace_period,
                              reduction_factor=args.reduction_factor)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, task=task, data=data), {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=args.num_samples),
        run_config=tune.RunConfig(name=f"{recipe}-{seed}", storage_path=str(storage), verbose=0))
    results = tuner.fit()
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or SCORE not in frame:
            continue
        for _, row in frame.iterrows():
            rows.append({"trial_id": result.metrics["trial_id"], "epoch": row["epoch"],
                         SCORE: row[SCORE], "timestamp": row["timestamp"],
                         "config": result.config})
    return pd.DataFrame(rows), results.get_best_result(SCORE, "max", scope="last").config[space.compare]


def anytime(epochs: pd.DataFrame) -> pd.Series:
    """The best validation accuracy reported so far, indexed by the epochs spent (1, 2, ...)."""
    ordered = epochs.sort_values(["timestamp", "trial_id", "epoch"], kind="stable")
    best = ordered[SCORE].cummax().reset_index(drop=True)
    best.index += 1
    return best


def truth(runs: list[dict], compare: str, task, data, storage: Path, seeds: int = 3
          ) -> dict[object, list[float]]:
    """For each compared value, the config of the best trial any run found that ran every
    epoch, trained again over `seeds` seeds: {value: final validation accuracies}."""
    from ray import tune

    from trainables.trainable import train_trial

    finished = pd.concat([run["epochs"] for run in runs], ignore_index=True)
    last = finished.sort_values("epoch").groupby("trial_id", sort=False).tail(1)
    last = last[last["epoch"] == last["epoch"].max()]
    last = last.assign(value=[c[compare] for c in last["config"]])
    configs = []
    for value, rows in last.groupby("value", sort=False):
        best = rows.loc[rows[SCORE].idxmax(), "config"]
        keep = {k: v for k, v in best.items() if not isinstance(v, float) or v == v}
        configs += [{**keep, "seed": seed, "baseline": False} for seed in range(seeds)]

    def retrain(config: dict, task, data) -> None:
        train_trial(config["train"], task, data)

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(retrain, task=task, data=data), {"cpu": 1}),
        param_space={"train": tune.grid_search(configs)},
        run_config=tune.RunConfig(name="truth", storage_path=str(storage), verbose=0))
    found: dict[object, list[float]] = {}
    for result in tuner.fit():
        found.setdefault(result.config["train"][compare], []).append(result.metrics[SCORE])
    return found


def spread(values: list[float], scale: float = 100, digits: int = 1) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{statistics.mean(values) * scale:.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="sgd_vs_adam", help="a space that compares a choice")
    parser.add_argument("--seeds", type=int, default=3, help="runs per recipe (default: 3)")
    parser.add_argument("--num-samples", type=int, default=24)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--grace-period", type=int, default=2)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    args = parser.parse_args()

    import ray

    from search_spaces import get_space
    from trainables.data import default_data_dir, for_tuning
    from trainables.task import load_task
    from trainables.trainable import TrialData
    from tuning.run import quiet

    compare = get_space(args.space).compare
    if compare is None:
        parser.error(f"space {args.space} compares nothing; the picks need a compared choice")
    task = load_task(str(TASK))
    data_dir = default_data_dir()
    data = TrialData(for_tuning(task.splits(data_dir), None), str(data_dir), None, None)
    quiet(None)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    runs = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in range(args.seeds):
            for recipe in args.recipes:
                start = time.perf_counter()
                if recipe == "ours":
                    epochs, pick = ours(args, seed, Path(storage))
                else:
                    epochs, pick = stock(args, seed, Path(storage), recipe, task, data)
                runs.append({"recipe": recipe, "seed": seed, "epochs": epochs, "pick": pick,
                             "seconds": time.perf_counter() - start})
                print(f"{recipe} seed {seed}: {len(epochs)} epochs, best "
                      f"{100 * epochs[SCORE].max():.2f}%, picks {pick}, "
                      f"{runs[-1]['seconds']:.0f} s", flush=True)
        confirmed = truth(runs, compare, task, data, Path(storage))
    ray.shutdown()
    report(args, runs, confirmed)


def report(args: argparse.Namespace, runs: list[dict], confirmed: dict) -> None:
    from scipy.stats import ttest_ind

    curves = [anytime(run["epochs"]) for run in runs]
    budget = min(len(c) for c in curves)
    best = max(c.iloc[-1] for c in curves)
    ranked = sorted(confirmed, key=lambda v: statistics.mean(confirmed[v]), reverse=True)
    right = ranked[0]
    p = (ttest_ind(confirmed[ranked[0]], confirmed[ranked[1]], equal_var=False).pvalue
         if len(ranked) > 1 else float("nan"))
    print(f"\n{args.space}, {args.num_samples} trials of up to {args.max_epochs} epochs (ASHA grace "
          f"{args.grace_period}, reduction {args.reduction_factor}), {args.seeds} seeds per recipe;"
          f" E = {budget} epochs, the fewest any run spent; best found by any run "
          f"{100 * best:.2f}%")
    print("truth: " + ", ".join(f"{v} {spread(confirmed[v])}% over {len(confirmed[v])} seeds"
                                for v in ranked) + f" (Welch's p = {p:.2g})")
    header = (f"{'recipe':8} {'best @25% E':>13} {'@50% E':>13} {'@100% E':>13} "
              f"{'epochs to best-0.3':>19} {'reached':>8} {'picks ' + str(right):>12} "
              f"{'epochs spent':>13} {'wall s':>9}")
    print(header)
    for recipe in args.recipes:
        mine = [(run, curve) for run, curve in zip(runs, curves) if run["recipe"] == recipe]
        at = [spread([curve.iloc[max(1, int(share * budget)) - 1] for _, curve in mine])
              for share in SHARES]
        reach = [int((curve >= best - NEAR).idxmax()) for _, curve in mine
                 if (curve >= best - NEAR).any()]
        picks = sum(run["pick"] == right for run, _ in mine)
        print(f"{recipe:8} {at[0]:>13} {at[1]:>13} {at[2]:>13} "
              f"{spread(reach, scale=1, digits=0):>19} {len(reach):>4} of {len(mine)} "
              f"{picks:>7} of {len(mine)} {spread([len(c) for _, c in mine], 1, 0):>13} "
              f"{spread([run['seconds'] for run, _ in mine], 1, 0):>9}")


if __name__ == "__main__":
    main()
