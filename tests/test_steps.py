"""One's own training code: every loss scored by its natural metric, the task's hooks
(training_step, evaluation_step, collate_fn, configure_optimizers) on batches of any shape, and
the config keys of the step (precision, max_grad_norm, accumulate_grad_batches, a schedule stepped
once a batch, any torch schedule by name, SWA), each through the Trainer a trial runs."""

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from trainables.config import parse_config
from trainables.loop import Trainer, evaluate
from trainables.metrics import Metric, ShapeError, batch_total, finish
from trainables.task import Task


def make_task(**parts):
    """A task of a linear model on 96 samples of 4 features; `parts` replace any of its parts."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    base = dict(ref="t", name="t", module="t", path="t.py", sha256="",
                load_data=lambda d: {"train": (x, y)}, build_model=lambda p: nn.Linear(4, 2),
                loss=F.cross_entropy, metric=Metric("accuracy", "max"))
    return Task(**{**base, **parts}), (x, y)


def fit(task, config, parts, epochs=None):
    """Train `config` for its epochs on parts (train, val); the trainer and each epoch's row."""
    trainer = Trainer(parse_config(config, hyperparameters=task.hyperparameters,
                                   own_optimizers=task.configure_optimizers is not None), task)
    train, val = trainer.feed(parts[0], train=True), trainer.feed(parts[1], train=False)
    rows = [trainer.fit_epoch(train, val) for _ in range(epochs or trainer.config.epochs)]
    return trainer, rows


# ----- every loss, scored right

def test_one_logit_with_bce_with_logits_is_scored_as_a_binary_accuracy():
    """One logit a sample and BCEWithLogitsLoss against (N,) 0/1 targets: the logit thresholded at
    0, an accuracy within [0, 1]. The built-in accuracy took the argmax of the single column and
    compared (N,) with (N, 1), which broadcast: 3900% on 2 epochs of such a task."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).float()
    expected = ((model(x).squeeze(1) >= 0).float() == y).float().mean().item()
    for loss in (F.binary_cross_entropy_with_logits, nn.BCEWithLogitsLoss()):
        scores = evaluate(model, loss, (x, y.unsqueeze(1)))
        assert scores["accuracy"] == pytest.approx(expected)
        assert 0 <= scores["accuracy"] <= 1
    # (N,) targets of (N, 1) outputs: the same, once the loss says they are logits
    assert batch_total("accuracy", model(x), y, "logits")[0].item() == round(64 * expected)
    # a loss of the task's own: whether they are logits or probabilities is not known
    with pytest.raises(ShapeError, match="without knowing whether it is a probability or a"):
        evaluate(model, lambda out, t: F.binary_cross_entropy_with_logits(out, t),
                 (x, y.unsqueeze(1)))


def test_bce_on_probabilities_is_thresholded_at_one_half_and_multi_label_per_label():
    """BCELoss scores probabilities at 0.5; (N, L) multi-label outputs are scored label by
    label."""
    probabilities = torch.tensor([[0.9], [0.4], [0.6], [0.2]])
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    model = nn.Identity()
    assert evaluate(model, F.binary_cross_entropy, (probabilities, targets))["accuracy"] == 0.5
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert evaluate(model, nn.BCEWithLogitsLoss(), (logits, labels))["accuracy"] == \
        pytest.approx(5 / 6)


def test_class_scores_against_indices_or_distributions():
    """Cross-entropy's (N, C) scores against class indices, and KLDivLoss's log-probabilities (or
    soft cross-entropy) against (N, C) distributions: the largest output is the largest target."""
    model = nn.Identity()
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0], [5.0, 0.0, 1.0]])
    indices = torch.tensor([0, 1, 0, 0])
    assert evaluate(model, F.cross_entropy, (scores, indices))["accuracy"] == 0.75
    soft = F.one_hot(indices, 3).float() * 0.8 + 0.2 / 3
    kl = nn.KLDivLoss(reduction="batchmean")
    got = evaluate(model, lambda out, t: kl(F.log_softmax(out, 1), t), (scores, soft))
    assert got["accuracy"] == 0.75
    assert evaluate(model, F.cross_entropy, (scores, soft))["accuracy"] == 0.75


@pytest.mark.parametrize("loss, metric, expected", [
    (F.mse_loss, "rmse", math.sqrt((0.25 + 1 + 0) / 3)),
    (F.l1_loss, "mae", (0.5 + 1 + 0) / 3),
])
def test_regression_losses_with_their_metrics(loss, metric, expected):
    """MSELoss with RMSE, L1Loss with MAE, over every output."""
    out, targets = torch.tensor([[1.5], [2.0], [3.0]]), torch.tensor([[1.0], [3.0], [3.0]])
    got = evaluate(nn.Identity(), loss, (out, targets), Metric(metric, "min"))
    assert got[metric] == pytest.approx(expected)


@pytest.mark.parametrize("out, targets, kind, words", [
    (torch.zeros(8, 1), torch.zeros(8, dtype=torch.long), None,
     "accuracy cannot score one output a sample"),
    (torch.zeros(8, 3), torch.zeros(8, 2), None, "accuracy cannot compare outputs (8, 3) against "
                                                 "targets (8, 2)"),
    (torch.zeros(8, 3), torch.zeros(8), "logits",
     "accuracy cannot compare outputs (8, 3) against targets (8,)"),
])
def test_the_built_in_accuracy_refuses_shapes_it_would_broadcast(out, targets, kind, words):
    """Outputs and targets the accuracy cannot compare without broadcasting are an error naming
    both shapes (tuning.check says it in one line: test_task.py); so is an RMSE of outputs that
    are not one a target; an accuracy outside [0, 1] is no score."""
    with pytest.raises(ShapeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        batch_total("accuracy", out, targets, kind)
    with pytest.raises(ShapeError, match="rmse cannot compare outputs"):
        batch_total("rmse", torch.zeros(8, 2), torch.zeros(8))
    with pytest.raises(ValueError, match="outside"):
        finish("accuracy", 39.0, 1)


# ----- hooks: dict batches, several inputs, a loss with an extra term

class Pairs(nn.Module):
    """A model of two inputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(3, 2)

    def forward(self, first, second):
        return self.a(first) + self.b(second)


class Records(Dataset):
    """Items as dicts of tensors of different lengths, Hugging Face's way."""

    def __init__(self, n=96):
        g = torch.Generator().manual_seed(1)
        self.first, self.second = torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g)
        self.labels = (self.first[:, 0] - self.second[:, 1] > 0).long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"first": self.first[i], "second": self.second[i], "labels": self.labels[i],
                "tokens": torch.arange(1 + i % 5)}


def pad(items):
    """collate_fn: the dicts stacked, their tokens padded to the batch's longest."""
    tokens = nn.utils.rnn.pad_sequence([item["tokens"] for item in items], batch_first=True)
    stacked = {k: torch.stack([item[k] for item in items]) for k in ("first", "second", "labels")}
    return {**stacked, "tokens": tokens, "seen": len(items)}


def dict_task():
    calls = {"train": 0, "eval": 0}

    def training_step(model, batch):
        calls["train"] += 1
        assert batch["tokens"].shape[0] == batch["seen"]  # collated by pad
        out = model(batch["first"], batch["second"])
        return F.cross_entropy(out, batch["labels"]) + 1e-3 * out.pow(2).mean()

    def evaluation_step(model, batch):
        calls["eval"] += 1
        return model(batch["first"], batch["second"]), batch["labels"]

    task, _ = make_task(build_model=lambda p: Pairs(), training_step=training_step,
                        evaluation_step=evaluation_step, collate_fn=pad)
    return task, calls


def test_dict_batches_of_a_two_input_model_train_through_the_task_steps():
    """A map-style dataset of dicts, collated by the task's collate_fn, trained by its
    training_step (a loss with an extra term) and scored on what its evaluation_step returns;
    the loss falls and the accuracy rises above chance."""
    task, calls = dict_task()
    data = Records()
    trainer, rows = fit(task, {"optimizer": "adam", "lr": 0.05, "batch_size": 16, "epochs": 5},
                        (data, Records(48)))
    assert calls["train"] == 5 * 6 and calls["eval"] >= 5
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_accuracy"] > 0.8


@pytest.mark.parametrize("start", [None, "spawn"])
def test_dataloader_workers_start_as_the_task_says(start):
    """WORKER_START "spawn" (or "forkserver": Ray's advice where forked DataLoader workers hang in
    its actors) starts a Dataset's workers afresh; they collate the dicts as the trial's own
    process would, and the run trains to the same weights."""
    task, _ = dict_task()
    task = dataclasses.replace(task, worker_start=start)
    config = parse_config({"optimizer": "adam", "lr": 0.05, "batch_size": 16, "epochs": 1})
    weights = []
    for workers in (0, 1):
        trainer = Trainer(config, task, workers=workers)
        train = trainer.feed(Records(), train=True)
        if workers and start:
            assert train.data.multiprocessing_context.get_start_method() == start
        trainer.fit_epoch(train, None)
        weights.append(trainer.model.a.weight.detach().clone())
    torch.testing.assert_close(*weights)


def test_unused_hooks_leave_the_default_step_as_it_was():
    """A task without hooks trains exactly as it did: the same weights as by hand."""
    task, (x, y) = make_task()
    trainer, _ = fit(task, {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 1,
                            "shuffle": False}, ((x, y), (x, y)))
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for start in range(0, 96, 32):
        F.cross_entropy(model(x[start:start + 32]), y[start:start + 32]).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert torch.equal(trainer.model.weight, model.weight)


@pytest.mark.parametrize("shape", ["optimizer", "pair", "dict"])
def test_configure_optimizers_in_lightnings_shapes(shape):
    """configure_optimizers(model, params): parameter groups of their own learning rates, and a
    schedule of its own (LambdaLR, which a config cannot name), stepped once an epoch, or once a
    batch ("interval": "step"); the compared name reaches it in params."""
    seen = []

    def configure_optimizers(model, params):
        seen.append(params["optimizer"])
        optimizer = torch.optim.SGD([{"params": [model.weight], "lr": params["lr"]},
                                     {"params": [model.bias], "lr": 0.0}])
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        halving = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
        return {"optimizer": optimizer, "pair": (optimizer, halving),
                "dict": {"optimizer": optimizer,
                         "lr_scheduler": {"scheduler": schedule, "interval": "step"}}}[shape]

    task, (x, y) = make_task(configure_optimizers=configure_optimizers)
    trainer, rows = fit(task, {"optimizer": "mine", "lr": 0.4, "batch_size": 32, "epochs": 2},
                        ((x, y), (x, y)))
    assert seen == ["mine"]
    torch.manual_seed(0)
    assert torch.equal(trainer.model.bias, nn.Linear(4, 2).bias)  # lr 0: never moved
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs[0] == {"optimizer": 0.4, "pair": 0.1, "dict": 0.4 * 0.5 ** 6}[shape]
    assert [r["lr"] for r in rows] == {"optimizer": [0.4, 0.4], "pair": [0.4, 0.2],
                                       "dict": [0.4, 0.4 * 0.5 ** 3]}[shape]


# ----- the step's keys

def test_bf16_on_the_cpu_trains_close_to_fp32():
    """precision bf16 autocasts the forward pass on the CPU: the loss falls as in fp32, not
    identically."""
    task, (x, y) = make_task()
    config = {"optimizer": "adam", "lr": 0.05, "batch_size": 16, "epochs": 3}
    _, fp32 = fit(task, config, ((x, y), (x, y)))
    _, bf16 = fit(task, {**config, "precision": "bf16"}, ((x, y), (x, y)))
    assert bf16[-1]["train_loss"] < bf16[0]["train_loss"]
    assert bf16[-1]["train_loss"] != fp32[-1]["train_loss"]
    assert bf16[-1]["val_accuracy"] == pytest.approx(fp32[-1]["val_accuracy"], abs=0.1)


def test_fp16_needs_a_cuda_device():
    task, _ = make_task()
    from trainables.cli import ConfigError

    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
        Trainer(parse_config({"optimizer": "sgd", "lr": 0.1, "precision": "fp16"}), task)


def test_a_step_the_gradient_scaler_skips_does_not_step_the_schedule():
    """fp16's gradient scaler skips a step whose gradients overflowed (and lowers its scale); the
    schedule stepped once a batch waits for a step that was taken (CPU scaler: the logic is the
    device's own)."""
    from trainables.loop import Stepping

    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for init_scale, lr in ((2.0 ** 127, 1.0), (1.0, 0.5)):  # overflowing gradients, then finite
        stepping = Stepping(scaler=torch.amp.GradScaler("cpu", init_scale=init_scale),
                            scheduler=schedule)
        before = model.weight.detach().clone()
        loss = 100 * F.cross_entropy(model(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long))
        stepping.scaler.scale(loss).backward()
        stepping.step(model, optimizer)
        assert optimizer.param_groups[0]["lr"] == lr
        assert torch.equal(model.weight, before) == (lr == 1.0)


def test_max_grad_norm_clips_each_step():
    """With max_grad_norm 0.01 one SGD step of lr 1 moves the weights by at most 0.01."""
    task, (x, y) = make_task()
    for norm, small in ((0.01, True), (0.0, False)):
        trainer = Trainer(parse_config({"optimizer": "sgd", "lr": 1.0, "batch_size": 96,
                                        "max_grad_norm": norm, "shuffle": False}), task)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.fit_epoch(trainer.feed((x, y), True), None)
        moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in
                                zip(trainer.model.parameters(), before)))
        assert (moved <= 0.01 + 1e-6) == small, (norm, moved)


def test_accumulated_batches_make_the_step_of_their_union():
    """accumulate_grad_batches 2 at batch 16 takes the step one batch of 32 takes."""
    task, (x, y) = make_task()
    config = {"optimizer": "sgd", "lr": 0.5, "shuffle": False, "epochs": 1}
    big, _ = fit(task, {**config, "batch_size": 32}, ((x, y), (x, y)))
    small, _ = fit(task, {**config, "batch_size": 16, "accumulate_grad_batches": 2},
                   ((x, y), (x, y)))
    torch.testing.assert_close(big.model.weight, small.model.weight)


def test_a_schedule_stepped_once_a_batch():
    """schedule_interval batch: the cosine anneals over every batch of the run, the warm-up
    climbs batch by batch; a torch schedule by its class name takes its own arguments."""
    task, (x, y) = make_task()
    trainer, rows = fit(task, {"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "epochs": 2,
                               "schedule": "cosine", "schedule_interval": "batch"},
                        ((x, y), (x, y)))
    assert rows[1]["lr"] == pytest.approx(0.5)  # 3 of 6 batches: half way down the cosine
    assert trainer.lr == pytest.approx(0.0, abs=1e-12)
    _, rows = fit(task, {"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "epochs": 3,
                         "schedule": "none", "warmup_epochs": 1, "schedule_interval": "batch"},
                  ((x, y), (x, y)))
    assert [r["lr"] for r in rows] == pytest.approx([0.25, 1.0, 1.0])
    trainer, rows = fit(task, {"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "epochs": 2,
                               "schedule": "PolynomialLR", "total_iters": 4, "power": 1.0},
                        ((x, y), (x, y)))
    assert [r["lr"] for r in rows] == pytest.approx([1.0, 0.75])


def test_reduce_on_plateau_steps_on_the_validation_loss():
    """ReduceLROnPlateau by name lowers the lr once the validation loss stops falling."""
    task, (x, y) = make_task()
    _, rows = fit(task, {"optimizer": "sgd", "lr": 1e-6, "batch_size": 32, "epochs": 4,
                         "schedule": "ReduceLROnPlateau", "patience": 0, "factor": 0.5,
                         "threshold": 0.5}, ((x, y), (x, y)))
    assert [r["lr"] for r in rows] == pytest.approx([1e-6, 1e-6, 5e-7, 2.5e-7])


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.linear = nn.BatchNorm1d(4), nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(self.norm(x))


def test_swa_averages_the_weights_from_swa_start_and_keeps_the_average():
    """swa_start 2 of 4 epochs with swa_lr: from epoch 2 on the model scored is the average of the
    weights after epochs 2, 3 and 4, its batch-norm statistics computed again; SWALR anneals the
    lr to swa_lr; a resume from the checkpoint of epoch 3 ends where the run ends."""
    task, (x, y) = make_task(build_model=lambda p: Normed())
    config = {"optimizer": "sgd", "lr": 0.2, "batch_size": 32, "epochs": 4, "swa_start": 2,
              "swa_lr": 0.05}
    trainer = Trainer(parse_config(config), task)
    train, val = trainer.feed((x, y), True), trainer.feed((x, y), False)
    weights, rows, states = [], [], []
    for _ in range(4):
        rows.append(trainer.fit_epoch(train, val))
        weights.append(trainer.model.linear.weight.detach().clone())
        states.append(copy.deepcopy(trainer.state_dict()))
    assert trainer.scored_model is trainer.swa.module
    torch.testing.assert_close(trainer.swa.module.linear.weight, torch.stack(weights[1:]).mean(0))
    assert [r["lr"] for r in rows] == pytest.approx([0.2, 0.2, 0.05, 0.05])
    assert trainer.swa.module.norm.num_batches_tracked.item() == 3  # recomputed over one epoch
    # scored: the average
    own = evaluate(trainer.swa.module, F.cross_entropy, (x, y))["accuracy"]
    assert rows[-1]["val_accuracy"] == own
    resumed = Trainer(parse_config(config), task)
    resumed.load_state_dict(states[2])
    last = resumed.fit_epoch(resumed.feed((x, y), True), resumed.feed((x, y), False))
    torch.testing.assert_close(resumed.swa.module.linear.weight, trainer.swa.module.linear.weight)
    assert last["val_loss"] == pytest.approx(rows[-1]["val_loss"])


def test_a_schedule_stepped_once_a_batch_resumes_where_it_was():
    """A trainer restored from a checkpoint of a per-batch schedule (built at the first epoch)
    trains on as the one never stopped."""
    task, (x, y) = make_task()
    config = parse_config({"optimizer": "sgd", "lr": 1.0, "batch_size": 32, "epochs": 3,
                           "schedule": "onecycle", "schedule_interval": "batch"})
    first = Trainer(config, task)
    train = first.feed((x, y), True)
    first.fit_epoch(train, None)
    state = copy.deepcopy(first.state_dict())
    first.fit_epoch(train, None)
    second = Trainer(dataclasses.replace(config), task)
    second.load_state_dict(state)
    second.fit_epoch(second.feed((x, y), True), None)
    assert second.lr == pytest.approx(first.lr)
    torch.testing.assert_close(second.model.weight, first.model.weight)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_a_gpu_and_its_memory_handed_back(precision):
    """fp16 (with its gradient scaler, in the checkpoint) and bf16 train on a GPU; each epoch's
    report holds the trial's peak GPU memory, and release_memory hands the trial's memory back
    before the next trial in the same process."""
    from trainables.memory import memory_mb, release_memory

    task, (x, y) = make_task(build_model=lambda p: nn.Sequential(nn.Linear(4, 512), nn.ReLU(),
                                                                  nn.Linear(512, 2)))
    config = parse_config({"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 2,
                           "precision": precision, "max_grad_norm": 1.0})
    release_memory()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    trainer = Trainer(config, task, "cuda")
    train, val = trainer.feed((x, y), True), trainer.feed((x, y), False)
    rows = [trainer.fit_epoch(train, val) for _ in range(2)]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert (trainer.state_dict()["scaler"] is not None) == (precision == "fp16")
    assert memory_mb()["cuda_peak_mb"] > 0
    del trainer, train, val
    release_memory()
    assert torch.cuda.memory_allocated() <= allocated
    assert torch.cuda.memory_reserved() <= reserved
