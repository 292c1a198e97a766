"""A task's data made ready to tune on: its splits checked, the validation split carved out of the
training split where the task has none, the smoke test's subset, the whole training set for final
training, and a fingerprint that tells a resume whether the data are the same.

A split ("part") is either a pair of tensors (inputs, targets), held in memory and shared with the
trials once through Ray's object store, or a map-style `torch.utils.data.Dataset` of (input, target)
items, built again in each trial process and read through a DataLoader.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Union

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

Pair = tuple[torch.Tensor, torch.Tensor]
Part = Union[Pair, Dataset]
SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
    """The data cannot be found, read or used; the message says where and how to fix it."""


def default_data_dir() -> Path:
    # never the working directory: Ray Tune moves each trial into a directory of its own
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "raytune-torch" / "data"


def is_pair(part: Part) -> bool:
    return isinstance(part, tuple)


def as_part(name: str, value: Any) -> Part:
    """One split as a task returned it: (inputs, targets) tensors of equal length (a TensorDataset
    of two tensors counts as such a pair), or a map-style Dataset; a DataError saying what is wrong
    otherwise."""
    if isinstance(value, TensorDataset) and len(value.tensors) == 2:
        value = tuple(value.tensors)
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(isinstance(v, torch.Tensor) for v in value):
            kinds = ", ".join(type(v).__name__ for v in value)
            raise DataError(f"split {name!r} is a {type(value).__name__} of ({kinds}); expected "
                            "(inputs, targets) tensors or a torch.utils.data.Dataset")
        inputs, targets = value
        if inputs.dim() == 0 or targets.dim() == 0 or len(inputs) != len(targets):
            raise DataError(f"split {name!r} has inputs of shape {tuple(inputs.shape)} and targets "
                            f"of shape {tuple(targets.shape)}; they need one row per sample")
        if len(inputs) == 0:
            raise DataError(f"split {name!r} is empty")
        return inputs, targets
    if isinstance(value, Dataset) and hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        if len(value) == 0:
            raise DataError(f"split {name!r} is empty")
        return value
    raise DataError(f"split {name!r} is a {type(value).__name__}; expected (inputs, targets) "
                    "tensors or a map-style torch.utils.data.Dataset")


def size(part: Part) -> int:
    return len(part[1]) if is_pair(part) else len(part)


def subset(part: Part, indices: torch.Tensor) -> Part:
    if is_pair(part):
        return part[0][indices], part[1][indices]
    return Subset(part, indices.tolist())


def head(part: Part, n: int) -> Part:
    """The first n samples (the smoke test's share)."""
    return subset(part, torch.arange(min(n, size(part))))


def default_val_size(train_size: int) -> int:
    """A sixth of the training split: 10,000 of FashionMNIST's 60,000 images."""
    return max(1, train_size // 6)


def carve_validation(train: Part, val_size: int, seed: int = 0) -> tuple[Part, Part]:
    """A seeded, deterministic (train, validation) split of the training split."""
    n = size(train)
    if not 0 < val_size < n:
        raise DataError(f"validation size must be between 1 and {n - 1}, got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return subset(train, order[val_size:].sort().values), subset(train, order[:val_size])


def concat(first: Part, second: Part) -> Part:
    """Two splits as one (final training's whole training set: train and validation)."""
    if is_pair(first) and is_pair(second):
        return torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])
    return ConcatDataset([pair_dataset(first), pair_dataset(second)])


def pair_dataset(part: Part) -> Dataset:
    return TensorDataset(*part) if is_pair(part) else part


def for_tuning(splits: dict[str, Part], val_size: int | None, limit: int | None = None
               ) -> dict[str, Part]:
    """The training and validation splits a search tunes on: the task's validation split, or one
    carved out of the training split (`val_size` samples, default a sixth); `limit` keeps the first
    samples of each (the smoke test)."""
    train, val = splits["train"], splits.get("val")
    if limit is not None:
        train = head(train, limit)
        val = head(val, limit) if val is not None else None
    if val is None:
        train, val = carve_validation(train, val_size or default_val_size(size(train)))
    return {"train": train, "val": val}


def _digest_dataset(digest: Any, dataset: Dataset) -> None:
    """What identifies a map-style dataset without reading every sample: its class and length, the
    files and classes of a torchvision folder dataset, the indices of a subset."""
    digest.update(f"{type(dataset).__qualname__}:{len(dataset)}".encode())
    if isinstance(dataset, Subset):
        digest.update(repr(list(dataset.indices)).encode())
        _digest_dataset(digest, dataset.dataset)
    elif isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            _digest_dataset(digest, part)
    elif hasattr(dataset, "samples"):
        digest.update(repr(list(dataset.samples)).encode())


def fingerprint(parts: dict[str, Part]) -> dict[str, Any]:
    """The samples a run trains and validates on, hashed: a resume on other data (the files
    changed, another split) would mix two experiments in one study."""
    digest = hashlib.sha256()
    sizes = {}
    for name, part in parts.items():
        if is_pair(part):
            for tensor in part:
                digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        else:
            _digest_dataset(digest, part)
        sizes[name] = size(part)
    return {**sizes, "sha256": digest.hexdigest()}
