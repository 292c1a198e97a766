"""FashionMNIST and MNIST IDX files read into uint8 tensors, found on disk, in the system copy, or
downloaded: what the built-in tasks (trainables/tasks/) load their data with.

Where the files are looked for, in order:
1. the data directory (`--data-dir`, default a per-user cache directory);
2. the copy installed by the Debian/Ubuntu package `dataset-fashion-mnist` (FashionMNIST only),
   unless the data directory is one the user gave: a folder of theirs is never silently replaced;
3. torchvision's own download, into the data directory.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from trainables.data import DataError, default_data_dir

# torchvision's dataset classes, by their names there (imported only to download: a trial
# process never needs torchvision, which costs it ~190 MB)
DATASETS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}
SYSTEM_DIRS = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),), "mnist": ()}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = 10


@dataclass
class Split:
    """One split held in memory: images uint8 (N, 28, 28) exactly as on disk, labels int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


KINDS = {3: "images", 1: "labels"}  # what an IDX file of that many dimensions holds here


def read_idx(path: Path, ndim: int | None = None) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (optionally gzipped), checking its header against its
    size, and its number of dimensions against `ndim` where given."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {path}: {err} (the file is corrupt or truncated; delete it)") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 3:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad header); delete it")
    if ndim is not None and raw[3] != ndim:
        raise DataError(f"{path} has the magic number 0x{int.from_bytes(raw[:4], 'big'):08x} (an "
                        f"IDX file of {raw[3]} dimensions), expected 0x{0x800 + ndim:08x} for "
                        f"{KINDS.get(ndim, f'{ndim} dimensions')}: is it the right file?")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header; delete it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header {tuple(shape)} needs {expected}; "
            "the file is truncated or corrupt, delete it"
        )
    # slice after frombuffer: its offset must leave at least one byte, which a file of 0 items does not
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)[header:].view(*shape)


def _find(name: str, directory: Path) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _split_files(directory: Path, split: str) -> tuple[Path, Path] | None:
    found = [_find(name, directory) for name in FILES[split]]
    return None if None in found else (found[0], found[1])


def _load_split(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{images_path} holds shape {tuple(images.shape)}, expected (N, 28, 28)")
    if labels.dim() != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} holds {tuple(labels.shape)} labels for {len(images)} images")
    if len(labels) and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{labels_path} holds a label above {NUM_CLASSES - 1}")
    return Split(images, labels.long())


def _download(dataset: str, data_dir: Path) -> None:
    """Download with torchvision into a temporary directory, then move the files in whole."""
    from torchvision import datasets

    data_dir.mkdir(parents=True, exist_ok=True)
    name = DATASETS[dataset]
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download-") as tmp:
        getattr(datasets, name)(tmp, train=True, download=True)  # downloads both splits' files
        raw = Path(tmp) / name / "raw"
        target = data_dir / name / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for file in FILES["train"] + FILES["test"]:
            os.replace(raw / file, target / file)


def candidate_dirs(dataset: str, data_dir: Path, system_dirs: tuple[Path, ...]) -> list[Path]:
    """The directories searched, in order: torchvision's layout under the data directory, the
    data directory itself (so --data-dir can point straight at a folder of IDX files), then the
    system copy where the data directory is the default one."""
    own = [data_dir / DATASETS[dataset] / "raw", data_dir]
    return own if data_dir != default_data_dir() else [*own, *system_dirs]


def folder_of(dataset: str, data_dir: Path | str | None) -> Path | None:
    """The folder the dataset's files are read from (None: not there yet, to be downloaded)."""
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    found = find_files(candidate_dirs(dataset, data_dir, SYSTEM_DIRS[dataset]))
    return found[0][0].parent if found else None


def find_files(directories: list[Path]) -> tuple[tuple[Path, Path], tuple[Path, Path]] | None:
    """The first directory's ((train images, train labels), (test images, test labels)) files,
    plain or gzipped, among those holding all four; None when none does."""
    for directory in directories:
        train, test = _split_files(directory, "train"), _split_files(directory, "test")
        if train and test:
            return train, test
    return None


def find_dataset(
    dataset: str = "fashion_mnist",
    data_dir: Path | str | None = None,
    download: bool = True,
    system_dirs: tuple[Path, ...] | None = None,
) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
    """The ((train images, labels), (test images, labels)) files: in the data directory, the
    system copy, else downloaded; a DataError saying where it looked when there are none."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    system_dirs = SYSTEM_DIRS[dataset] if system_dirs is None else system_dirs
    searched = candidate_dirs(dataset, data_dir, system_dirs)
    paths = find_files(searched)
    download_error = "download not attempted"
    if paths is None and download:
        try:
            _download(dataset, data_dir)
            paths = find_files(searched)
        except (OSError, RuntimeError) as err:  # torchvision wraps network errors in RuntimeError
            download_error = f"download failed: {str(err).strip().splitlines()[-1]}"
    if paths is None:
        package = " install the package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or" \
            if dataset == "fashion_mnist" else ""
        raise DataError(
            f"{dataset} not found in {', '.join(str(d) for d in searched)} ({download_error}); "
            f"to fix:{package} pass --data-dir DIR pointing at a folder with the four IDX files"
        )
    return paths


def load_dataset(
    dataset: str = "fashion_mnist",
    data_dir: Path | str | None = None,
    download: bool = True,
    system_dirs: tuple[Path, ...] | None = None,
) -> tuple[Split, Split]:
    """Return the (train, test) splits, looking in the data directory, the system copy, then downloading."""
    train, test = find_dataset(dataset, data_dir, download, system_dirs)
    return _load_split(*train), _load_split(*test)
