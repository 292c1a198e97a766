"""Confirmation that decides: the gap's interval held over the looks, three verdicts, seeds added
while a verdict is open. Simulated runs over seeds, and the confirmation's searcher fed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from results.verdict import BETTER, EVEN, OPEN, WORSE, as_good, gap, looks
from tuning.confirm import Looks

LOOKS = looks(3, 8)


def test_looks_go_from_the_first_seeds_to_the_cap():
    """3, 5, 8 runs a config by default; one look where the cap is the first."""
    assert LOOKS == (3, 5, 8)
    assert looks(3, 3) == (3,) and looks(2, 4) == (2, 3, 4) and looks(0, 8) == (0,)


def sequential(rng, mean_a, mean_b, sd, margin, corrected=True):
    """One confirmation of two configs: seeds added at each look while the verdict is open."""
    a, b = rng.normal(mean_a, sd, LOOKS[-1]), rng.normal(mean_b, sd, LOOKS[-1])
    for n in LOOKS:
        found = gap(a[:n], b[:n], True, margin, LOOKS if corrected else (3,))
        if found.decided:
            return found
    return found


@pytest.mark.parametrize("corrected", [True, False])
def test_a_truly_even_pair_is_called_different_in_at_most_5_percent_over_the_looks(corrected):
    """Two configs with the same mean, seed noise of 1 point, a margin of 0.5 points (rarely
    reached, so that most confirmations take every look): over 4000 confirmations with looks at
    3, 5 and 8 seeds, one is called better than the other in at most 5%; without the correction
    per look (each look at 95%) the repeated looks call a winner more often than that."""
    rng = np.random.default_rng(0)
    verdicts = [sequential(rng, 0.89, 0.89, 0.01, 0.005, corrected).verdict
                for _ in range(4000)]
    wrong = sum(v in (BETTER, WORSE) for v in verdicts) / len(verdicts)
    assert (wrong <= 0.05) == corrected, wrong


def test_a_truly_even_pair_is_mostly_called_even():
    """The same means, seed noise of 0.4 points, the default 1-point margin: even in most
    confirmations, a winner in at most 5%."""
    rng = np.random.default_rng(2)
    verdicts = [sequential(rng, 0.89, 0.89, 0.004, 0.01).verdict for _ in range(2000)]
    assert verdicts.count(EVEN) / len(verdicts) > 0.8
    assert sum(v in (BETTER, WORSE) for v in verdicts) / len(verdicts) <= 0.05


def test_a_gap_of_twice_the_margin_is_called_better_in_most_runs():
    """A 1-point gap with 0.4 points of seed noise (margin 0.5 points): better in most
    confirmations, never the wrong way round, and never even."""
    rng = np.random.default_rng(1)
    verdicts = [sequential(rng, 0.90, 0.89, 0.004, 0.005).verdict for _ in range(1000)]
    assert verdicts.count(BETTER) / len(verdicts) > 0.9
    assert WORSE not in verdicts and EVEN not in verdicts


def test_even_needs_the_interval_inside_the_margin():
    """The same means: even where the runs agree closely, open where they spread too widely for
    the interval to fit inside the margin; fewer than 2 runs a side decide nothing."""
    tight = gap(np.array([0.890, 0.891, 0.889]), np.array([0.889, 0.890, 0.891]), True, 0.01,
               LOOKS)
    wide = gap(np.array([0.87, 0.91, 0.89]), np.array([0.90, 0.88, 0.89]), True, 0.01, LOOKS)
    assert tight.verdict == EVEN and wide.verdict == OPEN
    assert gap(np.array([0.9]), np.array([0.8, 0.81]), True, 0.01, LOOKS).verdict == OPEN


def test_lower_is_better_turns_the_gap_round():
    """For a loss, a lower mean is the better config: its gain is positive."""
    found = gap(np.array([0.30, 0.31, 0.29]), np.array([0.40, 0.41, 0.39]), False, 0.01, (3,))
    assert found.verdict == BETTER and found.gain == pytest.approx(0.1)


def test_as_good_asks_only_whether_the_cheaper_config_is_not_worse_by_the_margin():
    """A cheaper config 0.2 points below the best with tight runs is as good within 1 point; one
    3 points below is worse beyond it."""
    best = np.array([0.900, 0.901, 0.899])
    assert as_good(np.array([0.898, 0.899, 0.897]), best, True, 0.01, LOOKS).verdict == EVEN
    assert as_good(np.array([0.870, 0.871, 0.869]), best, True, 0.01, LOOKS).verdict == WORSE


def confirm_by_hand(finals: dict[str, list[float]], max_seeds: int = 8) -> dict[str, list[int]]:
    """The confirmation's searcher fed each run's final score from `finals` (by config, seed 0
    being the search's own run): the seeds it trained each config with, in order."""
    run = {"metric": "val_accuracy", "mode": "max", "compare": "optimizer", "confirm_seeds": 3,
           "max_seeds": max_seeds}
    configs = {t: {"optimizer": t, "lr": 0.01, "epochs": 12, "confirms": t} for t in finals}
    rows = [{"trial_id": t, "seed": 0, "status": "completed", "val_accuracy": v[0]}
            for t, v in finals.items()]
    searcher = Looks(configs, rows, run)
    trained: dict[str, list[int]] = {t: [] for t in finals}
    running, n = [], 0
    while True:
        config = searcher.suggest(f"r{n}")
        if config == "FINISHED":
            return trained
        if config is None:  # waiting for the look's runs: they end, in order
            for ray_id, config in running:
                score = finals[config["confirms"]][config["seed"]]
                searcher.on_trial_complete(ray_id, {"epoch": 12, "epochs_planned": 12,
                                                    "val_accuracy": score})
            running = []
            continue
        trained[config["confirms"]].append(config["seed"])
        running.append((f"r{n}", config))
        n += 1


def test_confirmation_stops_at_the_first_look_once_the_verdict_is_clear():
    """Adam 5 points ahead with tight runs: 2 more runs each (seeds 1 and 2), then finished."""
    finals = {"adam": [0.90, 0.901, 0.899] + [0.9] * 5, "sgd": [0.85, 0.851, 0.849] + [0.85] * 5}
    assert confirm_by_hand(finals) == {"adam": [1, 2], "sgd": [1, 2]}


def test_confirmation_adds_seeds_while_open_up_to_the_cap():
    """Runs that spread too widely to decide: seeds 3 and 4 at the second look, 5 to 7 at the
    third; and no more than --max-seeds allows."""
    finals = {"adam": [0.90, 0.87, 0.91, 0.88, 0.92, 0.86, 0.90, 0.89],
              "sgd": [0.89, 0.91, 0.86, 0.90, 0.87, 0.92, 0.88, 0.89]}
    assert confirm_by_hand(finals) == {"adam": list(range(1, 8)), "sgd": list(range(1, 8))}
    assert confirm_by_hand(finals, max_seeds=5) == {"adam": [1, 2, 3, 4], "sgd": [1, 2, 3, 4]}


def test_confirmation_stops_at_the_look_that_decides():
    """Open at 3 seeds, even at 5: seeds 1 to 4 each, none after."""
    finals = {"adam": [0.900, 0.905, 0.895, 0.900, 0.900, 0.8, 0.8, 0.8],
              "sgd": [0.899, 0.894, 0.904, 0.899, 0.899, 0.8, 0.8, 0.8]}
    assert gap(np.array(finals["adam"][:3]), np.array(finals["sgd"][:3]), True, 0.01,
               LOOKS).verdict == OPEN
    assert confirm_by_hand(finals) == {"adam": [1, 2, 3, 4], "sgd": [1, 2, 3, 4]}


def test_even_is_two_one_sided_tests_at_5_percent_and_shows_their_90_percent_interval():
    """Adam 0.4 points ahead over 5 seeds, spread 0.4 and 0.16 points: the 95% interval over the
    looks (-0.3 to 1.1 points) crosses the 1-point margin, but equivalence is two one-sided tests
    at 5%, whose 90% interval (-0.2 to 0.98) lies within it: even, and the answer shows that
    interval as a 90% one."""
    adam = np.array([0.894, 0.886, 0.893, 0.885, 0.892])
    sgd = np.array([0.886, 0.884, 0.888, 0.885, 0.887])
    found = gap(adam, sgd, True, 0.01, LOOKS)
    assert found.verdict == EVEN and found.level == pytest.approx(0.9)
    assert -0.002 < found.low < 0 and 0.009 < found.high < 0.01
    assert found.gain == pytest.approx(0.004)
    cheap = as_good(sgd, adam, True, 0.01, LOOKS)
    assert cheap.verdict == EVEN and cheap.level == pytest.approx(0.9)


@pytest.mark.parametrize("apart", [0.01, -0.01])
def test_a_pair_truly_a_margin_apart_is_called_even_in_at_most_5_percent(apart):
    """Means exactly the 1-point margin apart (either way), seed noise of 0.5 points: over 4000
    confirmations with looks at 3, 5 and 8 seeds, even in at most 5% (2.9%); without the
    correction per look (each look's two one-sided tests at 5%) in more than 5% (7.6%)."""
    rng = np.random.default_rng(3)
    even = {corrected: sum(sequential(rng, 0.89 + apart, 0.89, 0.005, 0.01, corrected).verdict
                           == EVEN for _ in range(4000)) / 4000 for corrected in (True, False)}
    assert even[True] <= 0.05 < even[False], even


def test_a_longer_training_even_with_a_real_gain_says_both():
    """What 10 epochs buy over 5, 0.8 points with tight runs: even within the 1-point margin,
    and a real gain smaller than it (the 90% interval above 0), as the mlp_limits run found; a
    gain whose interval reaches 0 is even and no more."""
    from types import SimpleNamespace

    import pandas as pd

    from results.answer import _longer
    from results.confirmation import Verdicts
    from results.metric import Score

    five, ten = pd.Series({"epochs": 5}), pd.Series({"epochs": 10})
    real = gap(np.array([0.8950, 0.8952, 0.8948]), np.array([0.8870, 0.8872, 0.8868]), True, 0.01,
               LOOKS)
    unsure = gap(np.array([0.890, 0.893, 0.887]), np.array([0.889, 0.888, 0.890]), True, 0.01,
                 LOOKS)
    assert real.verdict == unsure.verdict == EVEN and real.low > 0 > unsure.low
    said = [_longer(SimpleNamespace(score=Score()), Verdicts(0.01, ladder=[(ten, five, found)]))
            for found in (real, unsure)]
    assert "even within the 1-point margin, a real gain smaller than it." in said[0], said[0]
    assert said[1].endswith("even within the 1-point margin."), said[1]
