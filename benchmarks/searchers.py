"""Our search against the recipes a user would pick instead, on the same space, budget and data,
many times over: learning curves trained once (benchmarks/train_curves.py) replayed through each
recipe's real searcher and scheduler in simulated time (benchmarks/replay.py).

    python benchmarks/searchers.py                      # 6 recipes x 40 repetitions, 2 scenarios
    python benchmarks/searchers.py --repeat 10 --recipes ours equal optuna

The recipes, each with 24 trials of up to 12 epochs, 2 at a time:
  ours     tuning.searcher.StudySearch and tuning.scheduler.RaceScheduler as a run has them: TPE per
           lane, the baseline as trial 0, each lane started at the space's STARTS, the adaptive
           race, the settled stop; then the confirmation's looks (tuning.confirm.Looks) on further
           seeds of the table (--no-starts: without the starts)
  full     the same with the full budget (--full-budget): no settled stop
  equal    the same, every compared value keeping an equal share (--equal-shares) and the full
           budget (--full-budget): the race before it adapted
  optuna   Ray Tune's documented recipe: OptunaSearch (Optuna's TPE) with ASHAScheduler
  random   Optuna's RandomSampler through OptunaSearch, with ASHAScheduler
  hyperband  Optuna's own TPE and HyperbandPruner, through ask and tell

Two scenarios: sgd_vs_adam, whose truth the tables hold (each value's best true accuracy); and
even, Adam against a copy of itself reading Adam's seeds in another order, two values truly even.
A config's true accuracy is its mean at epoch 12 over seeds no replay reads (Adam's 16 held-out
seeds, benchmarks/train_curves.py --held-out; SGD's over the table's 8, which have none). Printed
per recipe: the interquartile mean, with a bootstrap 95% interval, of the true accuracy of the
config the recipe would name at 25%, 50% and 100% of the budget (the epochs the optuna recipe
spends on average), and of the best accuracy any epoch reported; how often the value it names is
the truth's; how often it names a winner where the values are even; and the simulated wall time.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay import SCORE, Epoch, Table, replay  # noqa: E402

RECIPES = ("ours", "full", "equal", "optuna", "random", "hyperband")
SHARES = (0.25, 0.5, 1.0)
BUDGET = {"num_samples": 24, "max_epochs": 12, "grace_period": 2, "reduction_factor": 3}
BASELINE = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.0, "batch_size": 64}
ADAM_START = {"optimizer": "adam", "lr": 1e-3, "batch_size": 128}
SCENARIOS = {  # the lanes, trial 0, and each lane's starting config (sgd_vs_adam's STARTS)
    "sgd_vs_adam": {"lanes": {"sgd": ("sgd", 0), "adam": ("adam", 0)}, "baseline": BASELINE,
                    "starts": ({"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128},
                               ADAM_START)},
    "even": {"lanes": {"adam": ("adam", 0), "adam2": ("adam", 1)}, "baseline": None,
             "starts": (ADAM_START, {**ADAM_START, "optimizer": "adam2"})},
}
LR = {"sgd": (1e-3, 0.3), "adam": (1e-4, 1e-2), "adam2": (1e-4, 1e-2)}


def define(values: tuple[str, ...], trial: Any, max_epochs: int = 12) -> dict:
    """The sgd_vs_adam space over `values` (the even scenario's adam2 is Adam again)."""
    optimizer = trial.suggest_categorical("optimizer", list(values))
    trial.suggest_float("lr", *LR[optimizer], log=True)
    if optimizer == "sgd":
        trial.suggest_categorical("momentum", [0.0, 0.5, 0.9])
    trial.suggest_categorical("batch_size", [64, 128, 256])
    return {"epochs": max_epochs}


def ours(table: Table, values: tuple[str, ...], baseline: dict | None, seed: int,
         adaptive: bool, settle: bool, run_dir: Path, starts: tuple[dict, ...] = ()
         ) -> tuple[list[Epoch], float, Any]:
    """Our search replayed: its epochs, wall time and search object."""
    import search_spaces
    from search_spaces import Budget, Space
    from tuning.scheduler import RaceScheduler
    from tuning.searcher import SearchPlan, StudySearch

    name = f"bench_{'_'.join(values)}"
    search_spaces.SPACES[name] = Space(name, "benchmark", "?", "optimizer",
                                       Budget(**BUDGET), functools.partial(define, values))
    plan = SearchPlan(name, BUDGET["max_epochs"], SCORE, "max", seed, BUDGET["num_samples"],
                      BUDGET["grace_period"], BUDGET["reduction_factor"], compare="optimizer",
                      choices=values, baseline=baseline, starts=starts, adaptive=adaptive,
                      settle=settle)
    search = StudySearch(plan, run_dir, "bench")
    epochs, wall = replay(table, search, RaceScheduler(search), seed_offset=seed)
    return epochs, wall, search


def stock(table: Table, values: tuple[str, ...], seed: int, recipe: str
          ) -> tuple[list[Epoch], float]:
    """Ray Tune's OptunaSearch (TPE, or random) with ASHAScheduler, as documented."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    sampler = (optuna.samplers.RandomSampler(seed=seed) if recipe == "random"
               else optuna.samplers.TPESampler(seed=seed))
    searcher = OptunaSearch(functools.partial(define, values), metric=SCORE, mode="max",
                            sampler=sampler)
    searcher.set_search_properties(None, None, {})
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=SCORE, mode="max",
                              max_t=BUDGET["max_epochs"], grace_period=BUDGET["grace_period"],
                              reduction_factor=BUDGET["reduction_factor"])
    limited = Limit(searcher, BUDGET["num_samples"])
    return replay(table, limited, scheduler, seed_offset=seed)


class Limit:
    """num_samples for a searcher that Tune would otherwise ask for ever."""

    def __init__(self, searcher: Any, n: int) -> None:
        self.searcher, self.left = searcher, n

    def suggest(self, trial_id: str) -> Any:
        if self.left <= 0:
            return "FINISHED"
        self.left -= 1
        return self.searcher.suggest(trial_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.searcher, name)


def hyperband(table: Table, values: tuple[str, ...], seed: int) -> tuple[list[Epoch], float]:
    """Optuna's own TPE and HyperbandPruner through ask and tell, two trials at a time."""
    import heapq

    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(
                                    min_resource=BUDGET["grace_period"],
                                    max_resource=BUDGET["max_epochs"],
                                    reduction_factor=BUDGET["reduction_factor"]))
    events, epochs, now, made, live = [], [], 0.0, 0, {}
    while True:
        while len(live) < 2 and made < BUDGET["num_samples"]:
            trial = study.ask()
            fixed = define(values, trial)
            config = {**trial.params, **fixed}
            scores, seconds = table.curve(config, seed)
            live[trial.number] = (trial, config, scores, seconds)
            heapq.heappush(events, (now + seconds[0], trial.number, 1))
            made += 1
        if not events:
            return epochs, now
        now, number, epoch = heapq.heappop(events)
        trial, config, scores, seconds = live[number]
        epochs.append(Epoch(str(number), epoch, float(scores[epoch - 1]), now, config))
        trial.report(float(scores[epoch - 1]), epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif epoch >= BUDGET["max_epochs"]:
            study.tell(trial, float(scores[epoch - 1]))
        else:
            heapq.heappush(events, (now + seconds[epoch], number, epoch + 1))
            continue
        del live[number]


def incumbents(epochs: list[Epoch]) -> list[tuple[int, dict]]:
    """After each epoch reported (1, 2, ...): the config the recipe would name then, the trial
    whose last reported score is best (Ray's get_best_result, scope "last")."""
    last: dict[str, tuple[int, float, dict]] = {}
    out, best = [], None
    for n, e in enumerate(epochs, 1):
        last[e.trial_id] = (e.epoch, e.score, e.config)
        if best is None or e.trial_id == best or e.score > last[best][1]:
            best = max(last, key=lambda t: last[t][1])
        out.append((n, last[best][2]))
    return out


def confirm(table: Table, search: Any, seed: int, epochs: list[Epoch]
            ) -> tuple[Any, str, int, float]:
    """Our confirmation (tuning.confirm.Looks, as a run has it) on the table's further seeds: each
    lane's best trial that ran its 12 epochs, the search's own run as seed 0, a look at a time;
    (the value named best, the verdict, runs trained, their simulated seconds at 2 at a time)."""
    from results.confirmation import decide
    from tuning.confirm import Looks

    best: dict[Any, tuple[float, dict]] = {}
    for e in epochs:
        value = e.config["optimizer"]
        if e.epoch == BUDGET["max_epochs"] and not e.config.get("baseline") and (
                value not in best or e.score > best[value][0]):
            best[value] = (e.score, e.config)
    if not best:
        return None, "none", 0, 0.0
    run = {"metric": SCORE, "mode": "max", "compare": "optimizer", "confirm_seeds": 3,
           "max_seeds": 8}
    configs = {v: {**config, "seed": 0, "confirms": v} for v, (_, config) in best.items()}
    rows = [{"trial_id": v, "seed": 0, "status": "completed", SCORE: s}
            for v, (s, _) in best.items()]
    looks, trained, seconds = Looks(configs, rows, run), 0, 0.0
    while (config := looks.suggest(f"c{trained}")) != "FINISHED":
        scores, secs = table.curve(config, seed + config["seed"])  # each run ends at once
        looks.on_trial_complete(f"c{trained}", {"epoch": BUDGET["max_epochs"], SCORE:
                                                float(scores[-1]),
                                                "epochs_planned": BUDGET["max_epochs"]})
        trained, seconds = trained + 1, seconds + float(np.sum(secs)) / 2
    judged = decide(looks.table(), "optimizer", run)
    if judged.main is None:
        return next(iter(best)), "only", trained, seconds
    first, _, found = judged.main
    return first["trial_id"], found.verdict, trained, seconds


def iqm(values: list[float]) -> float:
    x = np.sort(np.asarray(values, float))
    cut = len(x) // 4
    return float(np.mean(x[cut:len(x) - cut] if len(x) >= 4 else x))


def bootstrap(values: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x = np.asarray(values, float)
    stats = [iqm(rng.choice(x, len(x))) for _ in range(draws)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def run_recipe(recipe: str, table: Table, scenario: dict, seed: int, starts: bool = True
               ) -> dict[str, Any]:
    values = tuple(scenario["lanes"])
    start = time.perf_counter()
    search = None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if recipe in ("ours", "full", "equal"):
            epochs, wall, search = ours(table, values, scenario["baseline"], seed,
                                        recipe != "equal", recipe == "ours", Path(tmp),
                                        scenario["starts"] if starts else ())
        elif recipe == "hyperband":
            epochs, wall = hyperband(table, values, seed)
        else:
            epochs, wall = stock(table, values, seed, recipe)
        if search is not None:
            pick, said, runs, extra = confirm(table, search, seed, epochs)
            dropped = [k for k, lane in search.race.lanes.items() if lane.dropped]
            settled = search.race.settled_at
        else:
            pick, said, runs, extra = incumbents(epochs)[-1][1]["optimizer"], "best trial", 0, 0.0
            dropped, settled = [], None
    return {"recipe": recipe, "seed": seed, "epochs": epochs, "wall": wall, "pick": pick,
            "verdict": said, "confirm_runs": runs, "confirm_seconds": extra, "dropped": dropped,
            "settled": settled, "cpu": time.perf_counter() - start}


def report(name: str, table: Table, runs: list[dict], recipes: list[str]) -> None:
    truth = {v: table.best(v) for v in SCENARIOS[name]["lanes"]}
    right = max(truth, key=truth.get)
    even = name == "even"
    budget = int(np.mean([len(r["epochs"]) for r in runs if r["recipe"] == "optuna"] or
                         [len(r["epochs"]) for r in runs]))
    print(f"\n{name}: truth " + ", ".join(f"{v} {100 * t:.2f}%" for v, t in truth.items())
          + f"; budget E = {budget} epochs (the optuna recipe's mean); {len(runs) // len(recipes)}"
          " repetitions a recipe")
    head = (f"{'recipe':10}" + "".join(f"{'true @' + format(s, '.0%') + ' E':>22}" for s in SHARES)
            + f"{'observed @100% E':>22}{'right':>7}{'winner' if even else 'named':>8}"
            f"{'epochs':>8}{'wall s':>8}{'+confirm':>9}")
    print(head)
    for recipe in recipes:
        mine = [r for r in runs if r["recipe"] == recipe]
        cells = []
        for share in SHARES:
            at = max(1, int(share * budget))
            values = []
            for r in mine:
                chosen = incumbents(r["epochs"])
                config = chosen[min(at, len(chosen)) - 1][1]
                values.append(100 * table.truth(config))
            lo, hi = bootstrap(values)
            cells.append(f"{iqm(values):.2f} [{lo:.2f}, {hi:.2f}]")
        observed = [100 * max(e.score for e in r["epochs"][:budget]) for r in mine]
        lo, hi = bootstrap(observed)
        cells.append(f"{iqm(observed):.2f} [{lo:.2f}, {hi:.2f}]")
        picks = sum(r["pick"] == right for r in mine)
        named = sum(r["verdict"] in ("better", "best trial", "only") for r in mine)
        wall = np.median([r["wall"] for r in mine])
        extra = np.median([r["confirm_seconds"] for r in mine])
        print(f"{recipe:10}" + "".join(f"{c:>22}" for c in cells) + f"{picks:>4}/{len(mine)}"
              f"{named:>5}/{len(mine)}{np.median([len(r['epochs']) for r in mine]):>8.0f}"
              f"{wall:>8.0f}{extra:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="repetitions a recipe (default: 40)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--table", type=Path, default=None,
                        help="the curves (default: the committed table, with its held-out seeds; "
                             "another table's truth is measured on its own seeds)")
    parser.add_argument("--startup", type=int, default=None,
                        help="random start-up trials of each lane's TPE (default: as a run sizes "
                             "them, tuning.proposals.startup_trials)")
    parser.add_argument("--no-starts", action="store_true",
                        help="our recipes without the space's starting configs (STARTS)")
    args = parser.parse_args()
    if args.startup is not None:
        import tuning.proposals

        tuning.proposals.STARTUP_MIN = tuning.proposals.STARTUP_MAX = args.startup
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in args.scenarios:
        kwargs = {"lanes": SCENARIOS[name]["lanes"]}
        table = Table(args.table, held_out=None, **kwargs) if args.table else Table(**kwargs)
        runs = []
        for seed in range(args.repeat):
            for recipe in args.recipes:
                runs.append(run_recipe(recipe, table, SCENARIOS[name], seed, not args.no_starts))
                r = runs[-1]
                print(f"  {name} {recipe} seed {seed}: {len(r['epochs'])} epochs, picks "
                      f"{r['pick']} ({r['verdict']}), dropped {r['dropped']}, settled "
                      f"{bool(r['settled'])}, {r['cpu']:.1f} s", flush=True)
        report(name, table, runs, args.recipes)


if __name__ == "__main__":
    main()
