"""A task's splits made ready to tune on (trainables.data): checked, the validation split carved
out, the smoke test's share, final training's whole set, the fingerprint."""

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from trainables.data import (DataError, as_part, carve_validation, concat, fingerprint, for_tuning,
                             size)


class Numbers(Dataset):
    """A map-style dataset of n (input, target) items: the input is the item's index."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i % 3


def ids(part):
    """Each sample's index in the set it was carved from, for tensors and datasets alike."""
    if isinstance(part, tuple):
        return part[0][:, 0].long().tolist()
    return [int(part[i][0].item()) for i in range(len(part))]


@pytest.mark.parametrize("kind", ["tensors", "dataset"])
def test_carved_validation_is_disjoint_complete_and_seeded(kind):
    """The validation split has val_size samples, the rest train in their stored order, nothing
    lost or shared; the same seed carves the same split, another seed another."""
    full = (torch.arange(100.0).unsqueeze(1), torch.arange(100) % 3) if kind == "tensors" \
        else Numbers(100)
    train, val = carve_validation(full, 30, seed=5)
    assert (size(train), size(val)) == (70, 30)
    assert sorted(ids(train) + ids(val)) == list(range(100))
    assert ids(train) == sorted(ids(train))
    assert ids(carve_validation(full, 30, seed=5)[1]) == ids(val)
    assert ids(carve_validation(full, 30, seed=6)[1]) != ids(val)
    if kind == "dataset":
        assert isinstance(val, Subset)
    else:
        assert torch.equal(val[1], val[0][:, 0].long() % 3)  # targets travel with their inputs


def test_tensors_and_datasets_carve_the_same_samples():
    """A task that switches from tensors to a Dataset keeps its validation split."""
    tensors = (torch.arange(50.0).unsqueeze(1), torch.arange(50) % 3)
    assert ids(carve_validation(tensors, 10)[1]) == ids(carve_validation(Numbers(50), 10)[1])


@pytest.mark.parametrize("val_size", [0, 100, 101])
def test_a_validation_size_that_leaves_a_part_empty_is_refused(val_size):
    with pytest.raises(DataError, match="validation size must be between 1 and 99"):
        carve_validation(Numbers(100), val_size)


def test_for_tuning_carves_a_sixth_or_keeps_the_tasks_own_validation_split():
    """Without a validation split, a sixth of the training split is carved out (10,000 of
    60,000); the task's own is kept; the smoke test's limit cuts both."""
    parts = for_tuning({"train": Numbers(600)}, None)
    assert (size(parts["train"]), size(parts["val"])) == (500, 100)
    assert size(for_tuning({"train": Numbers(600)}, 50)["val"]) == 50
    own = for_tuning({"train": Numbers(600), "val": Numbers(70)}, None)
    assert own["train"].n == 600 and own["val"].n == 70
    smoke = for_tuning({"train": Numbers(6000), "val": Numbers(3000)}, None, limit=2000)
    assert (size(smoke["train"]), size(smoke["val"])) == (2000, 2000)


@pytest.mark.parametrize("value, message", [
    ([torch.zeros(3)], "split 'train' is a list of (Tensor); expected (inputs, targets) tensors"),
    ((torch.zeros(3, 2), torch.zeros(4)), "split 'train' has inputs of shape (3, 2) and targets "
                                          "of shape (4,); they need one row per sample"),
    ((torch.zeros(0, 2), torch.zeros(0)), "split 'train' is empty"),
    ({"x": 1}, "split 'train' is a dict; expected (inputs, targets) tensors or a map-style"),
    (Numbers(0), "split 'train' is empty"),
])
def test_a_split_of_the_wrong_kind_or_shape_says_what_is_wrong(value, message):
    with pytest.raises(DataError) as err:
        as_part("train", value)
    assert str(err.value).startswith(message)


def test_a_tensor_dataset_is_taken_as_its_tensors():
    x, y = torch.zeros(4, 2), torch.ones(4)
    part = as_part("val", TensorDataset(x, y))
    assert isinstance(part, tuple) and part[0] is x and part[1] is y


def test_concat_joins_training_and_validation_for_final_training():
    a, b = (torch.zeros(3, 1), torch.zeros(3)), (torch.ones(2, 1), torch.ones(2))
    joined = concat(a, b)
    assert isinstance(joined, tuple) and size(joined) == 5
    mixed = concat(a, Numbers(4))
    assert len(mixed) == 7 and mixed[6][1] == 0


def test_fingerprint_tells_other_data_apart():
    """The fingerprint changes with any tensor value, and with a dataset's carved indices."""
    x, y = torch.arange(12.0).view(6, 2), torch.arange(6)
    first = fingerprint({"train": (x, y)})
    assert first == fingerprint({"train": (x.clone(), y.clone())}) and first["train"] == 6
    x[5, 1] = -1
    assert fingerprint({"train": (x, y)}) != first
    a = fingerprint({"val": carve_validation(Numbers(50), 10, seed=0)[1]})
    assert a != fingerprint({"val": carve_validation(Numbers(50), 10, seed=1)[1]})
