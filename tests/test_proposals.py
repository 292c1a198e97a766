"""TPE per lane (tuning.proposals): how many trials it waits for, and whose history it learns
from."""

import functools
import math

import numpy as np
import optuna
import pytest

from search_spaces import SPACES
from tuning.proposals import lane_space, propose, startup_trials
from tuning.searcher import define_trial


def test_startup_is_a_quarter_of_a_pools_trials_and_one_a_tuned_hyperparameter():
    """24 trials in 2 lanes: 3 for a lane of 3 hyperparameters; 4 epochs lanes pooled, tuning 11
    hyperparameters: 10 (Optuna's default, the cap), not the quarter's 6; never fewer than 2."""
    assert startup_trials(24, 2, 1, 3) == 3
    assert startup_trials(24, 4, 4) == 6 and startup_trials(24, 4, 4, 11) == 10
    assert startup_trials(8, 4, 1, 1) == 2


def test_the_sizes_a_run_uses_for_its_spaces():
    """sgd_vs_adam's lanes wait 3 trials each; mlp_limits' pooled epochs lanes 10."""
    for name, value, expected in (("sgd_vs_adam", "sgd", 3), ("sgd_vs_adam", "adam", 3),
                                  ("mlp_limits", 30, 10)):
        space = SPACES[name]
        define = functools.partial(define_trial, name, space.budget.max_epochs)
        tuned = lane_space(define, space.compare, value)
        lanes = 2 if name == "sgd_vs_adam" else 4
        pooled = 1 if name == "sgd_vs_adam" else 4
        assert startup_trials(space.budget.num_samples, lanes, pooled, len(tuned)) == expected


def history(rng, optimizer, best_log_lr, n):
    """n ended trials of one optimizer whose score peaks at lr = 10 ** best_log_lr."""
    out = []
    low, high = (1e-3, 0.3) if optimizer == "sgd" else (1e-4, 1e-2)
    for _ in range(n):
        lr = float(np.exp(rng.uniform(math.log(low), math.log(high))))
        params = {"optimizer": optimizer, "lr": lr, "batch_size": 128}
        dists = {"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
                 "lr": optuna.distributions.FloatDistribution(low, high, log=True),
                 "batch_size": optuna.distributions.CategoricalDistribution([64, 128, 256])}
        if optimizer == "sgd":
            params["momentum"] = 0.9
            dists["momentum"] = optuna.distributions.CategoricalDistribution([0.0, 0.5, 0.9])
        score = 0.9 - 0.05 * (math.log10(lr) - best_log_lr) ** 2
        out.append(optuna.trial.create_trial(params=params, distributions=dists, value=score))
    return out


@pytest.mark.parametrize("pooled", [False, True])
def test_a_lane_learns_from_its_own_trials_not_from_the_other_values(pooled):
    """SGD's best lr is 0.05, Adam's 1e-3, and Adam scores higher throughout. SGD's TPE, fed SGD's
    trials alone, proposes learning rates around 0.05; fed both lanes as one history (one TPE over
    every trial), it is pulled towards the small learning rates where the best scores were."""
    rng = np.random.default_rng(0)
    sgd, adam = history(rng, "sgd", math.log10(0.05), 12), history(rng, "adam", -3, 12)
    adam = [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                      value=t.value + 0.05) for t in adam]
    define = functools.partial(define_trial, "sgd_vs_adam", 12)
    lanes = [sgd + adam] if pooled else [sgd]
    lrs = [propose(define, lanes, "optimizer", "sgd", "max", seed, 3)["lr"] for seed in range(20)]
    near = np.mean([abs(math.log10(lr) - math.log10(0.05)) < 0.5 for lr in lrs])
    assert (near >= 0.7) != pooled, (near, sorted(lrs))
