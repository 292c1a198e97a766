"""The epoch loop against the tutorial's DataLoader loop; the Trainer learning and resuming."""

import copy
import io

import pytest
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision.transforms import ToTensor

from trainables.config import parse_config
from trainables.data import DataError, carve_validation
from trainables.idx import load_dataset
from trainables.loop import Feed, Trainer, evaluate, inputs, is_diverged, train_epoch
from trainables.models import MLP
from trainables.task import load_task

TASK = load_task("fashion_mnist")


def to_device(split, device="cpu"):
    """A split of images as the built-in task gives it: uint8 (N, 1, 28, 28) and labels."""
    return split.images.unsqueeze(1).to(device), split.labels.to(device)


def fit(trainer, train, holdout, **kwargs):
    """One epoch of the trainer on tensor splits."""
    return trainer.fit_epoch(trainer.feed(train, train=True), trainer.feed(holdout, train=False),
                             **kwargs)


def tutorial_samples(split):
    """The split as the tutorial's dataset yields it: ToTensor of a PIL image, and an int label."""
    return [(ToTensor()(Image.fromarray(img.numpy())), int(label))
            for img, label in zip(split.images, split.labels)]


def test_batches_are_scaled_as_to_tensor(splits):
    """Images stay uint8 (N, 1, 28, 28); inputs() makes float32 in [0, 1] equal to ToTensor."""
    split = splits[1]
    split.images[0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)  # both ends of the range
    stored = split.images.clone()
    images, y = to_device(split, "cpu")
    assert images.dtype == torch.uint8 and images.shape == (50, 1, 28, 28)
    x = inputs(images)
    assert x.dtype == torch.float32 and x.shape == (50, 1, 28, 28)
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    expected = torch.stack([img for img, _ in tutorial_samples(split)])
    assert torch.equal(x, expected)
    assert torch.equal(y, split.labels)
    assert torch.equal(split.images, stored)  # the stored uint8 images are left as they were


def tutorial_train_loop(dataloader, model, loss_fn, optimizer):
    """The tutorial's train_loop, keeping the batch losses it would print."""
    model.train()
    losses = []
    for X, y in dataloader:
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_train_epoch_matches_tutorial_loop(generate):
    """Unshuffled, train_epoch gives the tutorial loop's weights exactly and its mean batch loss."""
    split = generate(150)  # 150 = 4 full batches of 32 and a last one of 22
    torch.manual_seed(0)
    model = MLP()
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(tutorial_samples(split), batch_size=32, shuffle=False)
    data = to_device(split, "cpu")
    for _ in range(2):
        metrics = train_epoch(model, optimizer, F.cross_entropy, data, batch_size=32)
        losses = tutorial_train_loop(loader, reference, F.cross_entropy, ref_optimizer)
        assert len(losses) == 5
        # train_epoch sums the batch losses in float32 on the device; the reference in Python floats
        assert metrics["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
        for name, param in model.state_dict().items():
            assert torch.equal(param, reference.state_dict()[name]), name
    assert losses[-1] < losses[0]  # it learned: the comparison was not of untouched weights


def test_evaluate_is_per_sample_mean_and_accuracy(generate):
    """evaluate's loss is the mean over samples, not batches; its accuracy is correct / size."""
    split = generate(50)
    torch.manual_seed(0)
    model = MLP()
    x, y = to_device(split, "cpu")
    with torch.no_grad():
        logits = model(inputs(x))
    expected_loss = F.cross_entropy(logits, y, reduction="sum").item() / 50
    correct = (logits.argmax(1) == y).sum().item()
    batch_means = [F.cross_entropy(logits[i:i + 7], y[i:i + 7]).item() for i in range(0, 50, 7)]
    # the last batch holds 1 sample: the tutorial's mean of batch means lands elsewhere
    assert abs(sum(batch_means) / len(batch_means) - expected_loss) > 1e-4
    metrics = evaluate(model, F.cross_entropy, (x, y), batch_size=7)
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert metrics["accuracy"] == correct / 50
    assert evaluate(model, F.cross_entropy, (x, y))["accuracy"] == correct / 50  # one batch


def train_copy(model, data, generator):
    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_epoch(model, optimizer, F.cross_entropy,
                Feed(data, "cpu", 16, generator, shuffle=generator is not None))
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_shuffle_is_reproducible_for_a_seed(generate):
    """Shuffled by equally seeded generators, two runs give equal weights; other seeds differ."""
    data = to_device(generate(64), "cpu")
    torch.manual_seed(0)
    model = MLP()
    first = train_copy(model, data, torch.Generator().manual_seed(3))
    second = train_copy(model, data, torch.Generator().manual_seed(3))
    other = train_copy(model, data, torch.Generator().manual_seed(4))
    unshuffled = train_copy(model, data, None)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first, unshuffled)


def tiny_config(**settings):
    return parse_config({"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "epochs": 4,
                         **settings})


def test_loss_falls_on_a_learnable_problem(splits):
    """A few Trainer epochs on generated patches: the losses fall and the test set is learned."""
    train, test = to_device(splits[0], "cpu"), to_device(splits[1], "cpu")
    trainer = Trainer(tiny_config(), TASK)
    history = [fit(trainer, train, test) for _ in range(4)]
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < 0.5 * history[0]["val_loss"]
    assert history[-1]["val_accuracy"] >= 0.9
    assert all(m["seconds"] > 0 and not is_diverged(m) for m in history)


def test_trainer_reports_the_epochs_lr():
    """fit_epoch reports the lr it trained with, then steps the schedule."""
    data = (torch.rand(4, 1, 28, 28), torch.arange(4))
    trainer = Trainer(tiny_config(schedule="step", step_size=1, gamma=0.5), TASK)
    lrs = [fit(trainer, data, data)["lr"] for _ in range(3)]
    assert lrs == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert trainer.lr == pytest.approx(1.25e-4)


def test_a_trainer_flushes_denormal_floats_on_the_cpu():
    """Floats below float32's smallest normal are 0 once a Trainer exists: left denormal, decayed
    weights and optimizer moments slowed epochs sevenfold on the CPU."""
    torch.set_flush_denormal(False)
    try:
        assert torch.tensor([1e-39]).item() != 0  # denormal, as torch starts
        Trainer(tiny_config(), TASK)
        assert torch.tensor([1e-39]).item() == 0 and torch.tensor([2e-38]).item() != 0
    finally:
        torch.set_flush_denormal(False)


def test_same_config_same_start():
    """Two Trainers of one config start from identical weights; another seed starts elsewhere."""
    a, b = Trainer(tiny_config(), TASK), Trainer(tiny_config(), TASK)
    c = Trainer(tiny_config(seed=1), TASK)
    for name, param in a.model.state_dict().items():
        assert torch.equal(param, b.model.state_dict()[name])
    assert not torch.equal(a.model.linear_relu_stack[0].weight, c.model.linear_relu_stack[0].weight)


def test_resume_from_state_dict_is_identical(splits):
    """Two epochs straight equal one epoch, save, load into a fresh Trainer, and one more epoch."""
    train, test = to_device(splits[0], "cpu"), to_device(splits[1], "cpu")
    # shuffling, momentum, and a schedule whose next lr depends on its epoch count: all restored
    config = tiny_config(optimizer="sgd", lr=0.05, momentum=0.9, schedule="cosine")
    straight = Trainer(config, TASK)
    expected = [fit(straight, train, test) for _ in range(2)]

    first = Trainer(config, TASK)
    fit(first, train, test)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as a checkpoint would be written
    buffer.seek(0)
    resumed = Trainer(config, TASK)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    metrics = fit(resumed, train, test)

    assert resumed.epoch == 2
    for key in ("epoch", "lr", "train_loss", "val_loss", "val_accuracy"):
        assert metrics[key] == expected[1][key], key
    for name, param in straight.model.state_dict().items():
        assert torch.equal(param, resumed.model.state_dict()[name]), name
    assert resumed.lr == straight.lr


def test_resume_needs_the_shuffle_state(splits):
    """Without the generator's state the resumed epoch differs: the resume test above can fail."""
    train, test = to_device(splits[0], "cpu"), to_device(splits[1], "cpu")
    config = tiny_config()
    straight = Trainer(config, TASK)
    for _ in range(2):
        fit(straight, train, test)
    first = Trainer(config, TASK)
    fit(first, train, test)
    state = first.state_dict()
    resumed = Trainer(config, TASK)
    fresh = torch.Generator().manual_seed(config.seed).get_state()
    resumed.load_state_dict({**state, "generator": fresh})
    fit(resumed, train, test)
    first_layer = [t.model.linear_relu_stack[0].weight for t in (straight, resumed)]
    assert not torch.equal(*first_layer)


@pytest.mark.slow
def test_tutorial_learning_curve_on_real_data():
    """On real FashionMNIST the tutorial's run (SGD, lr 1e-3) follows its published curve over
    its first two epochs, where the tutorial's bands are narrow; the loop itself is checked
    against the tutorial's step by step (test_train_epoch_matches_tutorial_loop)."""
    try:
        train, test = load_dataset("fashion_mnist", download=False)
    except DataError as err:
        pytest.skip(f"FashionMNIST is not installed (apt-get install dataset-fashion-mnist): {err}")
    train, test = to_device(train, "cpu"), to_device(test, "cpu")
    config = parse_config({"optimizer": "sgd", "lr": 0.001, "batch_size": 64, "epochs": 2,
                           "shuffle": False})
    trainer = Trainer(config, TASK)
    history = [fit(trainer, train, test, holdout_name="test") for _ in range(config.epochs)]
    accuracy = [m["test_accuracy"] for m in history]
    loss = [m["test_loss"] for m in history]
    # The published bands, widened by about a point: the tutorial prints 45-50% / 2.15-2.18 after
    # epoch 1 and 55-59% / 1.88-1.94 after epoch 2 (then mid-60s to about 70% by epoch 10). With
    # seed 0 we measured 49.48% / 2.1624 and 59.23% / 1.8993 (71.18% / 0.7791 after 10 epochs);
    # the tutorial's own runs vary with their random start, and its loss is a mean of batch means
    # where ours is per sample.
    assert 0.44 <= accuracy[0] <= 0.51 and 2.14 <= loss[0] <= 2.19
    assert 0.54 <= accuracy[1] <= 0.61 and 1.87 <= loss[1] <= 1.95


@pytest.mark.parametrize("train_loss, loss, diverged", [
    (0.5, 0.4, False), (float("nan"), 0.4, True), (0.5, float("inf"), True),
])
def test_is_diverged(train_loss, loss, diverged):
    """A run has diverged when its training or held-out loss is not finite."""
    assert is_diverged({"train_loss": train_loss, "val_loss": loss, "val_accuracy": 0.5}) is diverged


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")]),
])
def test_checkpoint_saved_on_the_device_restores_there(tmp_path, generate, device):
    """A shuffled, scheduled trial's checkpoint saved on its device loads back (onto the CPU,
    weights only) into a Trainer on that device and trains on exactly as one never stopped."""
    from trainables.trainable import STATE_FILE, load_state

    torch.set_num_threads(1)
    train, val = carve_validation(to_device(generate(400, seed=5), device), 100)
    config = parse_config({"optimizer": "adam", "lr": 0.002, "batch_size": 32, "epochs": 3,
                           "schedule": "cosine", "shuffle": True})
    first = Trainer(config, TASK, device)
    fit(first, train, val)
    torch.save(first.state_dict(), tmp_path / STATE_FILE)
    resumed = Trainer(config, TASK, device)
    resumed.load_state_dict(load_state(tmp_path))
    assert fit(resumed, train, val)["train_loss"] == pytest.approx(
        fit(first, train, val)["train_loss"])
    assert next(resumed.model.parameters()).device.type == device


class Augmented(torch.utils.data.Dataset):
    """A map-style dataset whose items draw random noise (an augmentation) from torch's RNG."""

    def __init__(self, split):
        self.images, self.labels = split.images, split.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i].unsqueeze(0).float() / 255
        return image + 0.05 * torch.randn_like(image), int(self.labels[i])


def trained_weights(config, part, workers=0, epochs=2):
    trainer = Trainer(config, TASK, workers=workers)
    feed = trainer.feed(part, train=True)
    for _ in range(epochs):
        trainer.fit_epoch(feed, None)
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_seed_reproduces_a_map_style_run_augmentation_included(generate, workers):
    """Through a DataLoader, in this process or in worker processes, a seed gives the same
    shuffling and the same random augmentation: equal weights; another seed differs."""
    torch.set_num_threads(1)
    part = Augmented(generate(96))
    config = tiny_config(batch_size=16, epochs=2)
    first = trained_weights(config, part, workers)
    assert torch.equal(first, trained_weights(config, part, workers))
    assert not torch.allclose(first, trained_weights(tiny_config(batch_size=16, seed=1), part,
                                                     workers))


def test_a_resumed_map_style_run_with_dropout_trains_on_as_one_never_stopped(generate):
    """The checkpoint keeps the shuffling generator and the random streams that dropout and
    in-process augmentation draw from: a resumed epoch equals the straight one."""
    part = Augmented(generate(96))
    config = parse_config({"optimizer": "sgd", "lr": 0.05, "batch_size": 16, "epochs": 2,
                           "dropout": 0.3}, hyperparameters=TASK.hyperparameters)
    straight = trained_weights(config, part)
    first = Trainer(config, TASK)
    first.fit_epoch(first.feed(part, train=True), None)
    state = first.state_dict()
    torch.manual_seed(1234)  # whatever ran in the process since
    resumed = Trainer(config, TASK)
    resumed.load_state_dict(state)
    resumed.fit_epoch(resumed.feed(part, train=True), None)
    assert torch.equal(torch.cat([p.detach().flatten() for p in resumed.model.parameters()]),
                       straight)


def test_tensors_and_a_dataset_of_them_train_alike(generate):
    """Unshuffled, the same samples as tensors or as a map-style Dataset give the same weights:
    one loop, two ways to feed it."""
    split = generate(80)
    x, y = to_device(split)
    config = tiny_config(batch_size=16, shuffle=False)
    dataset = torch.utils.data.TensorDataset(x.float() / 255, y)
    assert torch.allclose(trained_weights(config, (x, y)), trained_weights(config, dataset),
                          atol=1e-6)


def test_regression_metrics_are_over_every_output():
    """RMSE and MAE over a split in batches equal the whole split's, outputs (B, 1) against
    targets (B,); a task's own metric sees the whole split at once."""
    from trainables.metrics import Metric

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(50, 3), torch.randn(50)
    with torch.no_grad():
        error = model(x).squeeze(1) - y
    seen = []

    def own(outputs, targets):
        seen.append(len(targets))
        return (outputs.squeeze(1) - targets).abs().max()

    mse = lambda out, target: F.mse_loss(out.squeeze(1), target)  # noqa: E731
    for name, expected in [("rmse", error.pow(2).mean().sqrt()), ("mae", error.abs().mean()),
                           ("worst", error.abs().max())]:
        metric = Metric(name, "min", own if name == "worst" else None)
        scores = evaluate(model, mse, (x, y), metric, batch_size=7)
        assert scores[name] == pytest.approx(expected.item(), rel=1e-5), name
        assert scores["loss"] == pytest.approx(error.pow(2).mean().item(), rel=1e-5)
    assert seen == [50]
