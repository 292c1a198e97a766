"""Validating a config dict into a TrainConfig."""

import pytest

from trainables.config import KEYS, ConfigError, TrainConfig, parse_config


def error_of(raw, **kwargs):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_tutorials():
    """Given only optimizer and lr: batch 64, 10 epochs, no momentum, no schedule, shuffled."""
    config = parse_config({"optimizer": "sgd", "lr": 1e-3})
    assert config == TrainConfig(optimizer="sgd", lr=1e-3)
    assert (config.batch_size, config.epochs) == (64, 10)
    assert (config.momentum, config.nesterov, config.weight_decay) == (0.0, False, 0.0)
    assert (config.schedule, config.shuffle, config.params) == ("none", True, {})


def test_every_key_is_read():
    """A config naming every key comes back with every value, typed as the dataclass says."""
    raw = {"optimizer": "sgd", "lr": 0.05, "batch_size": 128.0, "epochs": 3, "momentum": 0.9,
           "nesterov": True, "weight_decay": 1e-4, "schedule": "multistep", "gamma": 0.5,
           "step_size": 2, "milestones": [1, 2], "warmup_epochs": 1, "label_smoothing": 0.1,
           "shuffle": False, "seed": 7, "schedule_interval": "batch", "precision": "bf16",
           "max_grad_norm": 1.0, "accumulate_grad_batches": 2, "swa_start": 2, "swa_lr": 0.01}
    assert set(raw) == set(KEYS)
    config = parse_config(raw)
    assert config.to_dict() == {**raw, "batch_size": 128}
    assert isinstance(config.batch_size, int) and isinstance(config.epochs, int)
    assert isinstance(parse_config({"optimizer": "adam", "lr": 1}).lr, float)


def test_unknown_key_names_it_and_the_allowed_keys():
    """An unknown key is a ConfigError naming the key and listing every allowed key, the task's
    own hyperparameters among them."""
    message = error_of({"optimizer": "sgd", "lr": 0.1, "learning_rate": 0.1})
    assert "'learning_rate'" in message
    sgd = "; sgd's: momentum, dampening, weight_decay, nesterov, maximize, foreach, " \
          "differentiable, fused"
    assert message.endswith("allowed keys: " + ", ".join(KEYS) + sgd)
    message = error_of({"optimizer": "sgd", "lr": 0.1, "dropuot": 0.1},
                       hyperparameters={"width": 512, "dropout": 0.0})
    assert message == ("unknown key 'dropuot'; allowed keys: " + ", ".join(KEYS) + sgd
                       + "; the task's own: width, dropout")


def test_the_tasks_hyperparameters_ride_along_typed_as_their_defaults():
    """A task's own hyperparameters reach TrainConfig.params, defaults filled in, each checked
    against its default's type; one without a default (a space's) is taken as it is."""
    known = {"width": 512, "dropout": 0.0, "model": "mlp", "act": None}
    config = parse_config({"optimizer": "adam", "lr": 1e-3, "dropout": 0, "act": "gelu"},
                          hyperparameters=known)
    assert config.params == {"width": 512, "dropout": 0.0, "model": "mlp", "act": "gelu"}
    assert isinstance(config.params["dropout"], float)
    assert config.to_dict()["dropout"] == 0.0 and config.to_dict()["optimizer"] == "adam"
    assert error_of({"optimizer": "adam", "lr": 1e-3, "width": 1.5}, hyperparameters=known) == \
        "width must be a whole number, got 1.5"


def test_ignored_keys_are_dropped():
    """Keys passed as ignore (bookkeeping) are accepted and dropped."""
    config = parse_config({"optimizer": "sgd", "lr": 0.1, "best_epoch": 4}, ignore=("best_epoch",))
    assert config == TrainConfig(optimizer="sgd", lr=0.1)


@pytest.mark.parametrize("missing", ["optimizer", "lr"])
def test_missing_required_key(missing):
    """optimizer and lr are required, and the message names the missing one."""
    raw = {"optimizer": "sgd", "lr": 0.1}
    del raw[missing]
    assert f"missing key {missing!r}" in error_of(raw)


@pytest.mark.parametrize("key", ["lr", "batch_size", "epochs", "gamma", "step_size"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_is_rejected(key, value):
    """lr, batch_size, epochs, gamma and step_size must be above 0; the message names the key."""
    message = error_of({"optimizer": "sgd", "lr": 0.1, key: value})
    assert message == f"{key} must be greater than 0, got {value}"


@pytest.mark.parametrize("key, allowed", [
    ("optimizer", "sgd, adam, adamw, rmsprop, adagrad, adadelta, adafactor, adamax, asgd, nadam, "
                  "radam, rprop"),
    ("schedule", "none, step, multistep, exponential, cosine, onecycle, ConstantLR, "
                 "CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, ExponentialLR, "
                 "LinearLR, MultiStepLR, OneCycleLR, PolynomialLR, ReduceLROnPlateau, StepLR"),
    ("precision", "fp32, bf16, fp16"),
    ("schedule_interval", "epoch, batch"),
])
def test_unknown_choice_names_key_and_allowed_values(key, allowed):
    """An unknown optimizer, schedule, precision or interval names the key and the allowed
    values (torch.optim's optimizers and schedules, as torch 2.14 has them)."""
    message = error_of({"optimizer": "sgd", "lr": 0.1, key: "bogus"})
    assert message == f"{key} 'bogus' is not one of: {allowed}"


def test_any_optimizer_takes_its_own_arguments_checked_against_its_signature():
    """The pytorch/examples MNIST script's Adadelta with its rho; Adam's betas from a JSON list; an
    argument the optimizer lacks, one it cannot take the type of, and an optimizer a config
    cannot build (LBFGS steps with a closure) each refused in one line."""
    config = parse_config({"optimizer": "adadelta", "lr": 1.0, "rho": 0.95, "schedule": "step",
                           "step_size": 1, "gamma": 0.7})
    assert config.optimizer_args == {"rho": 0.95} and config.to_dict()["rho"] == 0.95
    assert parse_config({"optimizer": "adam", "lr": 1e-3, "betas": [0.9, 0.99]}
                        ).optimizer_args == {"betas": (0.9, 0.99)}
    assert error_of({"optimizer": "adam", "lr": 1e-3, "rho": 0.9}).startswith(
        "unknown key 'rho'; allowed keys: ")
    assert "adam's: betas, eps, weight_decay, amsgrad" in error_of(
        {"optimizer": "adam", "lr": 1e-3, "rho": 0.9})
    assert error_of({"optimizer": "adam", "lr": 1e-3, "betas": 0.9}) == \
        "betas must be a list of 2 numbers, got 0.9"
    assert error_of({"optimizer": "adadelta", "lr": 1.0, "rho": "high"}) == \
        "rho must be a finite number, got 'high'"
    assert error_of({"optimizer": "lbfgs", "lr": 1.0}) == (
        "optimizer 'lbfgs' steps with a closure: build it in the task's "
        "configure_optimizers(model, params)")
    assert error_of({"optimizer": "rprop", "lr": 0.01, "weight_decay": 0.1}) == \
        "weight_decay does not apply to 'rprop'"
    # with the task's own optimizers, any name, and no argument of torch's
    assert parse_config({"optimizer": "lion", "lr": 1e-4}, own_optimizers=True).optimizer == "lion"


def test_any_schedule_takes_its_own_arguments():
    """A torch.optim.lr_scheduler class by name with its arguments (gamma, step_size and
    milestones are the core's); one it needs and lacks, and a per-batch ReduceLROnPlateau,
    refused."""
    config = parse_config({"optimizer": "sgd", "lr": 0.1, "schedule": "CosineAnnealingLR",
                           "T_max": 100, "eta_min": 1e-4, "schedule_interval": "batch"})
    assert config.schedule_args == {"T_max": 100, "eta_min": 1e-4}
    assert error_of({"optimizer": "sgd", "lr": 0.1, "schedule": "OneCycleLR"}) == \
        "schedule OneCycleLR needs max_lr in the config"
    assert error_of({"optimizer": "sgd", "lr": 0.1, "schedule": "ReduceLROnPlateau",
                     "schedule_interval": "batch"}).startswith("ReduceLROnPlateau steps once an")
    assert error_of({"optimizer": "sgd", "lr": 0.1, "swa_lr": 0.05}) == \
        "swa_lr needs swa_start, the epoch from which weights are averaged"
    assert error_of({"optimizer": "sgd", "lr": 0.1, "epochs": 5, "swa_start": 6}) == \
        "swa_start must be at most epochs (5), got 6"
    assert error_of({"optimizer": "sgd", "lr": 0.1, "accumulate_grad_batches": 0}) == \
        "accumulate_grad_batches must be greater than 0, got 0"


@pytest.mark.parametrize("key, value, expected", [
    ("epochs", 1.5, "epochs must be a whole number, got 1.5"),
    ("batch_size", True, "batch_size must be a whole number, got True"),
    ("lr", "0.1", "lr must be a finite number, got '0.1'"),
    ("lr", float("nan"), "lr must be a finite number, got nan"),
    ("momentum", -0.1, "momentum must be 0 or more, got -0.1"),
    ("weight_decay", -1, "weight_decay must be 0 or more, got -1"),
    ("shuffle", 1, "shuffle must be true or false, got 1"),
    ("optimizer", 3, "optimizer must be a string, got 3"),
    ("milestones", [], "milestones must be a non-empty list of epochs, got []"),
    ("milestones", [2, 1], "milestones must be increasing epochs above 0, got [2, 1]"),
    ("milestones", [0, 3], "milestones must be increasing epochs above 0, got [0, 3]"),
])
def test_wrong_types_and_ranges(key, value, expected):
    """Values of the wrong type or range are refused with a message naming the key and the value."""
    assert error_of({"optimizer": "sgd", "lr": 0.1, key: value}) == expected


def test_momentum_and_nesterov_only_where_they_apply():
    """momentum is for sgd and rmsprop only; nesterov needs sgd with momentum."""
    assert parse_config({"optimizer": "rmsprop", "lr": 0.1, "momentum": 0.9}).momentum == 0.9
    assert "not 'adam'" in error_of({"optimizer": "adam", "lr": 0.1, "momentum": 0.9})
    assert "nesterov needs" in error_of({"optimizer": "sgd", "lr": 0.1, "nesterov": True})
    assert "nesterov needs" in error_of({"optimizer": "rmsprop", "lr": 0.1, "momentum": 0.9,
                                         "nesterov": True})


@pytest.mark.parametrize("raw", [[1, 2], "sgd", None])
def test_not_an_object(raw):
    """A config that is not a dict is a ConfigError saying what it got."""
    assert "must be a JSON object" in error_of(raw)
