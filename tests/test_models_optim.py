"""The built-in tasks' models, and the optimizers and learning-rate schedules built from a config."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainables.config import parse_config
from trainables.models import CNN, MLP
from trainables.config import optimizer_classes
from trainables.optim import build_optimizer, build_scheduler
from trainables.task import load_task

TASK = load_task("fashion_mnist")


def test_the_builtin_task_builds_the_model_its_params_name():
    """The FashionMNIST task builds the MLP or the CNN by its `model` hyperparameter, the MLP's
    width and dropout as given, and names the models it has for any other."""
    assert type(TASK.build_model({"model": "mlp"})) is MLP
    assert type(TASK.build_model({"model": "cnn"})) is CNN
    narrow = TASK.build_model({"model": "mlp", "width": 64, "dropout": 0.2})
    assert narrow.linear_relu_stack[0].out_features == 64
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.2 for m in narrow.modules()) == 2
    with pytest.raises(ValueError, match="model 'resnet' is not one of: mlp, cnn"):
        TASK.build_model({"model": "resnet"})


@pytest.mark.parametrize("name, params", [("mlp", 669_706), ("cnn", 431_080)])
@pytest.mark.parametrize("batch", [1, 5])
def test_model_output_shape(name, params, batch):
    """Both models map (B, 1, 28, 28) images to (B, 10) logits, with the reference models' sizes."""
    torch.manual_seed(0)
    model = TASK.build_model({"model": name})
    assert sum(p.numel() for p in model.parameters()) == params
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert out.dtype == torch.float32


def test_the_registries_build_exactly_the_names_a_config_may_give():
    """A config may name torch.optim's optimizers in lower case, the tool's five first, and
    those a config cannot build are left to configure_optimizers; trainables.optim builds each
    short schedule name trainables.config allows."""
    from trainables.config import SCHEDULE_NAMES
    from trainables.optim import SCHEDULES

    names = tuple(optimizer_classes())
    assert names[:5] == ("sgd", "adam", "adamw", "rmsprop", "adagrad")
    assert {"adadelta", "nadam", "radam", "adamax", "asgd", "rprop"} <= set(names)
    assert not {"lbfgs", "sparseadam"} & set(names)
    assert tuple(SCHEDULES) == SCHEDULE_NAMES


@pytest.mark.parametrize("name", list(optimizer_classes()))
def test_optimizer_step_changes_parameters(name):
    """Each optimizer is the torch.optim class it names, with the config's lr (and weight decay
    where it takes one); a step moves every parameter."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    decays = name != "rprop"
    optimizer = build_optimizer(model.parameters(), parse_config(
        {"optimizer": name, "lr": 0.01, **({"weight_decay": 0.001} if decays else {})}))
    assert type(optimizer).__name__.lower() == name
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.param_groups[0].get("weight_decay", 0.001) == 0.001
    F.cross_entropy(model(torch.randn(8, 4)), torch.arange(8) % 3).backward()
    optimizer.step()
    for old, new in zip(before, model.parameters()):
        assert not torch.equal(old, new)


def test_sgd_momentum_and_nesterov_are_passed():
    """SGD gets the config's momentum and nesterov, RMSprop its momentum."""
    sgd = build_optimizer([nn.Parameter(torch.zeros(1))], parse_config(
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}))
    assert (sgd.param_groups[0]["momentum"], sgd.param_groups[0]["nesterov"]) == (0.9, True)
    rms = build_optimizer([nn.Parameter(torch.zeros(1))],
                          parse_config({"optimizer": "rmsprop", "lr": 0.1, "momentum": 0.5}))
    assert rms.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_runs_the_fused_kernel_with_the_default_loops_updates(name):
    """Adam and AdamW take torch's fused kernel on the CPU (a quarter of the default loop's time
    a step here): over 20 steps of an MLP, parameters within float rounding of the default
    loop's. A config that names an implementation (foreach) keeps it."""
    torch.manual_seed(0)
    fused_model = MLP(width=32)
    loop_model = MLP(width=32)
    loop_model.load_state_dict(fused_model.state_dict())
    config = parse_config({"optimizer": name, "lr": 1e-2, "weight_decay": 1e-3})
    fused = build_optimizer(fused_model.parameters(), config)
    loop = optimizer_classes()[name](loop_model.parameters(), lr=1e-2, weight_decay=1e-3,
                                     foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(20):
        x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    chosen = build_optimizer(fused_model.parameters(), parse_config(
        {"optimizer": name, "lr": 1e-2, "foreach": True}))
    assert not chosen.defaults["fused"] and chosen.defaults["foreach"] is True


def cosine(epoch, epochs=4):
    return 0.5 * (1 + math.cos(math.pi * epoch / epochs))


@pytest.mark.parametrize("schedule, settings, expected", [
    ("none", {}, [1, 1, 1, 1, 1]),
    ("step", {"step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5, 0.25]),
    ("multistep", {"milestones": [1, 3], "gamma": 0.1}, [1, 0.1, 0.1, 0.01, 0.01]),
    ("exponential", {"gamma": 0.5}, [1, 0.5, 0.25, 0.125, 0.0625]),
    ("cosine", {}, [cosine(e) for e in range(5)]),  # annealed to 0 over the config's 4 epochs
    # a linear warm-up from lr / 3 over 2 epochs, then the cosine over the 2 epochs left
    ("cosine", {"warmup_epochs": 2}, [1 / 3, 2 / 3, 1, cosine(1, 2), 0]),
    ("none", {"warmup_epochs": 1}, [0.5, 1, 1, 1, 1]),
    # one cycle over 5 steps: from lr / 25 up to lr by step 0.5 (30% of 5, less 1), then down
    # on a cosine to lr / 25e4 at step 4, after the last epoch
    ("onecycle", {}, [0.04, *(4e-6 + (1 - 4e-6) * cosine(t - 0.5, 3.5) for t in (1, 2, 3, 4))]),
])
def test_schedule_lr_per_epoch(schedule, settings, expected):
    """Each schedule, stepped once per epoch, sets the learning rate of each epoch as expected."""
    config = parse_config({"optimizer": "sgd", "lr": 1.0, "epochs": 4, "schedule": schedule,
                           **settings})
    param = nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], config)
    scheduler = build_scheduler(optimizer, config)
    assert (scheduler is None) == (schedule == "none" and not config.warmup_epochs)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_label_smoothing_smooths_the_training_loss_only():
    """Label smoothing changes the loss trained on, not the task's loss that evaluation reports;
    a task with a loss of its own refuses it in one line, as does a warm-up the run cannot fit."""
    from torch.nn import functional as F

    from trainables.config import ConfigError
    from trainables.optim import training_loss

    out, target = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    smoothed = training_loss(F.cross_entropy, parse_config(
        {"optimizer": "adam", "lr": 1e-3, "label_smoothing": 0.2}))
    expected = 0.8 * F.cross_entropy(out, target) - 0.2 * F.log_softmax(out, 1).mean()
    assert smoothed(out, target) == pytest.approx(expected.item())
    plain = parse_config({"optimizer": "adam", "lr": 1e-3})
    assert training_loss(F.cross_entropy, plain) is F.cross_entropy
    with pytest.raises(ConfigError, match="label_smoothing applies to the default cross-entropy"):
        training_loss(F.mse_loss, parse_config({"optimizer": "adam", "lr": 1e-3,
                                                "label_smoothing": 0.1}))
    for bad, message in [({"warmup_epochs": 4, "epochs": 4}, "warmup_epochs must be fewer than"),
                         ({"warmup_epochs": 1, "schedule": "onecycle"}, "warms up by itself"),
                         ({"label_smoothing": 1.0}, "label_smoothing must be below 1")]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"optimizer": "adam", "lr": 1e-3, **bad})
