"""How many seeds confirmation takes, and what it answers, by its looks and its test: simulated
pairs of configs whose final scores over seeds are normal, run through results.verdict as
tuning.confirm runs it (the search's own run counting, two runs at once on 2 cores).

    python benchmarks/confirmation_looks.py                  # 3,000 confirmations a cell, ~1 min
    python benchmarks/confirmation_looks.py --repetitions 500

Each pair is a gap, each config's spread over seeds, and the correlation of the two configs' scores
by seed (both run the same seeds). It prints, per look schedule and test, the rounds of runs the
confirmation took (mean, with a 95% interval over the confirmations), how often it decided at its
first look, and how often it said better, worse, even or undecided. The tests: Welch's intervals
(what results.verdict uses) and a paired one, the t interval of the per-seed differences. First, the
correlation by seed of the best Adam and SGD configs of the tabulated curves (benchmarks/curves/),
the pairs the default space confirms, measured on 6,000 training images.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results import verdict  # noqa: E402

MARGIN = 1.0  # points, the default margin of an accuracy
SLOTS = 2
# gap (points), spread of a and of b over seeds, correlation by seed
PAIRS = {
    "close: the default run's pair": (0.4, 0.4, 0.2, 0.0),
    "close, correlated by seed": (0.4, 0.4, 0.2, 0.6),
    "truly even": (0.0, 0.4, 0.4, 0.0),
    "even, twice the spread": (0.0, 0.8, 0.8, 0.0),
    "a 0.8-point lead": (0.8, 0.4, 0.4, 0.0),
    "a 1.5-point lead": (1.5, 0.4, 0.4, 0.0),
    "a 2-point lead, twice the spread": (2.0, 0.8, 0.8, 0.0),
}
SCHEDULES = [(3, 5, 8), (3, 4, 5, 6, 7, 8), (3, 4, 6, 8), (2, 3, 5, 8), (4, 8), (3, 8)]


def paired_gap(a: np.ndarray, b: np.ndarray, plan: tuple[int, ...]) -> str:
    """results.verdict.gap's verdict with the t interval of the seed-paired differences."""
    from scipy.stats import t

    diff, looks = a - b, len(plan)
    mean, se, df = diff.mean(), diff.std(ddof=1) / math.sqrt(len(diff)), len(diff) - 1
    half = t.ppf(1 - verdict.ALPHA / looks, df) * se  # the equivalence interval: 1 - 2 ALPHA
    if -MARGIN < mean - half and mean + half < MARGIN:
        return verdict.EVEN
    half = t.ppf(1 - verdict.ALPHA / looks / 2, df) * se
    return verdict.BETTER if mean - half > 0 else verdict.WORSE if mean + half < 0 else "open"


def confirm(a: np.ndarray, b: np.ndarray, plan: tuple[int, ...], paired: bool) -> tuple[int, str]:
    """(rounds of SLOTS runs taken, the verdict) of one confirmation whose configs score a and b
    seed by seed, from one run each (the search's own)."""
    rounds, have = 0, 1
    for seeds in plan:
        rounds, have = rounds + math.ceil(2 * (seeds - have) / SLOTS), seeds
        said = (paired_gap(a[:seeds], b[:seeds], plan) if paired
                else verdict.gap(a[:seeds], b[:seeds], True, MARGIN, plan).verdict)
        if said != verdict.OPEN:
            return rounds, said
    return rounds, "undecided"


def tabulated_correlation() -> tuple[float, int]:
    """The median correlation by seed of the 8 best Adam with the 8 best SGD configs at 12
    epochs in the tabulated curves, and the pairs it is over."""
    import pandas as pd

    frame = pd.read_csv(ROOT / "benchmarks" / "curves" / "sgd_vs_adam_subset.csv.gz")
    last = frame[frame["epoch"] == frame["epoch"].max()]
    scores = last.pivot_table(index="seed", columns=["optimizer", "lr", "momentum", "batch_size"],
                              values="val_accuracy").loc[range(8)]
    best = scores.mean().sort_values(ascending=False).index
    adam = [c for c in best if c[0] == "adam"][:8]
    sgd = [c for c in best if c[0] == "sgd"][:8]
    rs = [scores[x].corr(scores[y]) for x, y in itertools.product(adam, sgd)]
    return float(np.median(rs)), len(rs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rho, pairs = tabulated_correlation()
    print(f"correlation by seed, best Adam against best SGD configs (median of {pairs} pairs): "
          f"{rho:.2f}\n")
    for name, (gain, sd_a, sd_b, corr) in PAIRS.items():
        print(f"{name}: gap {gain}, spreads {sd_a} and {sd_b}, correlation {corr}")
        rng = np.random.default_rng(args.seed)
        draws = rng.standard_normal((args.repetitions, 8, 2))
        a = gain + sd_a * draws[:, :, 0]
        b = sd_b * (corr * draws[:, :, 0] + math.sqrt(1 - corr ** 2) * draws[:, :, 1])
        for plan, paired in [(p, False) for p in SCHEDULES] + [(SCHEDULES[0], True)]:
            runs = [confirm(x, y, plan, paired) for x, y in zip(a, b)]
            rounds = np.array([r for r, _ in runs], float)
            half = 1.96 * rounds.std(ddof=1) / math.sqrt(len(rounds))
            said = {w: sum(s == w for _, s in runs) / len(runs)
                    for w in (verdict.BETTER, verdict.WORSE, verdict.EVEN, "undecided")}
            first = float(np.mean(rounds == math.ceil(2 * (plan[0] - 1) / SLOTS)))
            test = "paired" if paired else "Welch "
            print(f"  {test} looks {str(plan):<20} rounds {rounds.mean():.2f} ± {half:.2f}, "
                  f"at the first look {first:5.1%}   "
                  + "  ".join(f"{w} {share:5.1%}" for w, share in said.items()))
        print()


if __name__ == "__main__":
    main()
