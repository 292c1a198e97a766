"""Shared fixtures: small learnable images, and IDX files of them, gzipped or plain."""

import gzip
import os
import struct
from pathlib import Path

import pytest
import torch

# Ray servers the tests start listen on 127.0.0.1 only; read when ray is first imported
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from trainables.data import FILES, Split


def make_split(n, seed=0):
    """n uint8 28x28 images on dim noise; class k has a bright 7x7 patch in cell k of a 4x4 grid."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    bright = torch.randint(180, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    for k in range(10):
        row, col = divmod(k, 4)
        cell = (labels == k, slice(7 * row, 7 * row + 7), slice(7 * col, 7 * col + 7))
        images[cell] = bright[cell]
    return Split(images, labels)


def idx_bytes(tensor):
    """The IDX encoding of a uint8 tensor: magic 0x0000 0x08 ndim, big-endian sizes, the bytes."""
    ndim = tensor.dim()
    header = b"\x00\x00\x08" + bytes([ndim]) + struct.pack(f">{ndim}I", *tensor.shape)
    return header + tensor.to(torch.uint8).contiguous().numpy().tobytes()


def idx_files(train, test):
    """The four files' plain bytes, keyed by their standard names (without .gz)."""
    names = FILES["train"] + FILES["test"]
    tensors = (train.images, train.labels, test.images, test.labels)
    return {name: idx_bytes(t) for name, t in zip(names, tensors)}


def write_idx_files(directory, train, test, gz=False):
    """Write the four IDX files into directory, as NAME.gz when gz; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in idx_files(train, test).items():
        path = directory / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        paths.append(path)
    return paths


@pytest.fixture
def splits():
    """A small learnable (train, test) pair: 200 and 50 images."""
    return make_split(200, seed=1), make_split(50, seed=2)


@pytest.fixture
def generate():
    """generate(n, seed=0) -> a Split of n learnable images."""
    return make_split


@pytest.fixture
def encode_idx():
    """encode_idx(tensor) -> the tensor's IDX bytes."""
    return idx_bytes


@pytest.fixture
def write_dataset():
    """write_dataset(directory, train, test, gz=False) -> the four paths written."""
    return write_idx_files
