"""Shared fixtures: small learnable images, IDX files of them, and the README's smoke-test run."""

import gzip
import os
import re
import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Ray servers the tests start listen on 127.0.0.1 only; read when ray is first imported
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from trainables.idx import FILES, Split


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


def write_image_folder(root, counts=None, classes=3, size=32, seed=0):
    """PNG images under root/<split>/<class>/ for torchvision's ImageFolder: class k is a bright
    square in corner k of a noisy image, so that a small CNN learns it (and a flip can move it to
    another class's corner only for the bottom ones, which augmentation must cope with)."""
    from PIL import Image

    counts = counts or {"train": 30, "val": 10, "test": 10}
    g = torch.Generator().manual_seed(seed)
    corners = [(0, 0), (0, size // 2), (size // 2, 0), (size // 2, size // 2)]
    for split, n in counts.items():
        for k in range(classes):
            folder = Path(root) / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = torch.randint(0, 80, (size, size, 3), generator=g, dtype=torch.uint8)
                row, col = corners[k]
                image[row:row + size // 2, col:col + size // 2] += 150
                Image.fromarray(image.numpy()).save(folder / f"{i}.png")
    return Path(root)


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


# The README's commands, run as written: the cheap ones by tests/test_readme.py, the smoke test
# once, its run also opened in TensorBoard and optuna-dashboard (tests/test_smoke_run.py)
ROOT = Path(__file__).resolve().parents[1]
SYSTEM_DATA = Path("/usr/share/datasets/fashion-mnist")
SCRIPTS = {"tune-run": "tuning.run", "tune-train": "tuning.train", "tune-report": "results.report"}


def readme_commands():
    """Every command line in README.md's fenced code blocks, split as a shell would, comments dropped."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:bash|sh)?\n(.*?)^```", text, re.M | re.S)
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def as_argv(command):
    """A README command with its python (or console script) replaced by this interpreter."""
    head, *rest = command
    if head in SCRIPTS:
        return [sys.executable, "-m", SCRIPTS[head], *rest]
    assert Path(head).name.startswith("python"), f"not a python command: {command}"
    return [sys.executable, *rest]


def run_readme_command(command, cwd, timeout=120):
    """Run a README command in cwd with this tree importable and a fresh per-user cache."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(Path(cwd) / ".cache")}
    return subprocess.run(as_argv(command), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(the finished process, its run directory) of the README's --smoke-test command, run once.

    It reads the installed FashionMNIST as the README says; where the Debian package is missing,
    generated IDX files passed with --data-dir stand in, so the test needs no download."""
    commands = [c for c in readme_commands() if "--smoke-test" in c]
    assert len(commands) == 1, f"the README shows {len(commands)} --smoke-test commands"
    cwd = tmp_path_factory.mktemp("readme")
    command = commands[0]
    if not (SYSTEM_DATA / "train-images-idx3-ubyte.gz").is_file():
        write_idx_files(cwd / "data", make_split(2_500, seed=1), make_split(200, seed=2))
        command = [*command, "--data-dir", str(cwd / "data")]
    done = run_readme_command(command, cwd, timeout=600)
    runs = sorted((cwd / "runs").glob("*/")) if (cwd / "runs").is_dir() else []
    return done, runs[0] if len(runs) == 1 else None
