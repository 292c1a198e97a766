"""Finding and reading the built-in tasks' IDX files (trainables.idx), on generated files in temp dirs."""

import gzip
import hashlib
import io
import re
import urllib.error
import urllib.request

import pytest
import torch
from torchvision import datasets

from trainables.data import DataError
from trainables.idx import load_dataset, read_idx


def assert_same_split(loaded, expected):
    assert loaded.images.dtype == torch.uint8
    assert loaded.labels.dtype == torch.int64
    assert torch.equal(loaded.images, expected.images)
    assert torch.equal(loaded.labels, expected.labels)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, splits, encode_idx, gz):
    """read_idx returns exactly the tensor that was written, plain or gzipped."""
    images = splits[0].images
    data = encode_idx(images)
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(data) if gz else data)
    assert torch.equal(read_idx(path), images)


def test_read_idx_of_no_items(tmp_path, encode_idx):
    """A well-formed IDX file of 0 items reads as an empty tensor of its shape, not an error."""
    path = tmp_path / "empty"
    path.write_bytes(encode_idx(torch.zeros(0, 28, 28, dtype=torch.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


@pytest.mark.parametrize("layout", ["torchvision", "flat"])
@pytest.mark.parametrize("gz", [False, True])
def test_found_in_data_dir(tmp_path, splits, write_dataset, layout, gz):
    """Files in DIR/FashionMNIST/raw/ or straight in DIR are loaded before the system copy."""
    data_dir = tmp_path / "data"
    folder = data_dir / "FashionMNIST" / "raw" if layout == "torchvision" else data_dir
    write_dataset(folder, *splits, gz=gz)
    # a system copy of other images that must not be the one read
    other = (splits[1], splits[0])
    write_dataset(tmp_path / "system", *other)
    train, test = load_dataset("fashion_mnist", data_dir, download=False,
                               system_dirs=(tmp_path / "system",))
    assert_same_split(train, splits[0])
    assert_same_split(test, splits[1])


@pytest.fixture
def default_dir(tmp_path, monkeypatch):
    """The default data directory (no --data-dir given), made empty under tmp_path."""
    from trainables.data import default_data_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data_dir = default_data_dir()
    data_dir.mkdir(parents=True)
    return data_dir


def test_found_in_system_copy(tmp_path, splits, write_dataset, default_dir):
    """With the default data dir empty, the files of the system copy are loaded and nothing is
    written."""
    data_dir = default_dir
    write_dataset(tmp_path / "system", *splits, gz=True)
    train, test = load_dataset("fashion_mnist", data_dir, system_dirs=(tmp_path / "missing",
                                                                      tmp_path / "system"))
    assert_same_split(train, splits[0])
    assert_same_split(test, splits[1])
    assert list(data_dir.iterdir()) == []


def test_a_folder_the_user_gave_is_never_replaced_by_the_system_copy(tmp_path, splits,
                                                                   write_dataset):
    """--data-dir given as an empty folder: a DataError naming it, not the system's files."""
    from trainables.idx import folder_of

    write_dataset(tmp_path / "system", *splits, gz=True)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "mine"))) as caught:
        load_dataset("fashion_mnist", tmp_path / "mine", download=False,
                     system_dirs=(tmp_path / "system",))
    assert str(tmp_path / "system") not in str(caught.value)
    assert folder_of("fashion_mnist", tmp_path / "mine") is None


def test_incomplete_data_dir_falls_through(tmp_path, splits, write_dataset, default_dir):
    """A data dir holding only some of the four files is skipped for the next candidate."""
    data_dir = default_dir
    paths = write_dataset(data_dir, *splits)
    paths[-1].unlink()  # no test labels
    write_dataset(tmp_path / "system", *splits)
    train, _ = load_dataset("fashion_mnist", data_dir, download=False,
                            system_dirs=(tmp_path / "system",))
    assert_same_split(train, splits[0])


class FakeResponse(io.BytesIO):
    """What torchvision reads from urlopen: read(n), .length, .url (no redirect), `with`."""

    def __init__(self, data, url):
        super().__init__(data)
        self.length = len(data)
        self.url = url


def serve(monkeypatch, files):
    """Replace the network call with one serving `files` ({name: bytes}); return the URLs asked."""
    asked = []

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        asked.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return FakeResponse(files[name], url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def gz_files(tmp_path, splits, write_dataset):
    paths = write_dataset(tmp_path / "served", *splits, gz=True)
    return {p.name: p.read_bytes() for p in paths}


def test_downloaded_by_torchvision(tmp_path, monkeypatch, splits, write_dataset):
    """With nothing on disk, torchvision downloads the four files into DIR/FashionMNIST/raw/."""
    served = gz_files(tmp_path, splits, write_dataset)
    # torchvision checks each download's md5: make it expect the generated files
    resources = [(name, hashlib.md5(served[name]).hexdigest()) for name, _ in
                 datasets.FashionMNIST.resources]
    monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
    asked = serve(monkeypatch, served)
    data_dir = tmp_path / "data"
    train, test = load_dataset("fashion_mnist", data_dir, system_dirs=(tmp_path / "missing",))
    assert_same_split(train, splits[0])
    assert_same_split(test, splits[1])
    assert {url.rsplit("/", 1)[-1] for url in asked} == set(served)
    # the files were moved in whole; the temporary download dir is gone
    assert sorted(p.name for p in data_dir.iterdir()) == ["FashionMNIST"]
    raw = data_dir / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(name[:-3] for name in served)
    # a second load finds them on disk and asks the network nothing
    asked.clear()
    train, _ = load_dataset("fashion_mnist", data_dir, system_dirs=())
    assert asked == []
    assert_same_split(train, splits[0])


@pytest.mark.parametrize("partial", [False, True])
def test_not_found_and_download_fails(tmp_path, monkeypatch, splits, write_dataset, partial,
                                      default_dir):
    """Nothing found in the default data dir or the system copy, download failed: one-line
    DataError naming dirs and fixes; no leftovers."""
    served = gz_files(tmp_path, splits, write_dataset) if partial else {}
    if partial:  # the first file arrives, the second fails
        first = datasets.FashionMNIST.resources[0][0]
        monkeypatch.setattr(datasets.FashionMNIST, "resources",
                            [(first, hashlib.md5(served[first]).hexdigest()),
                             *datasets.FashionMNIST.resources[1:]])
        served = {first: served[first]}
    asked = serve(monkeypatch, served)
    data_dir = default_dir
    system = tmp_path / "system"
    with pytest.raises(DataError) as caught:
        load_dataset("fashion_mnist", data_dir, system_dirs=(system,))
    message = str(caught.value)
    names = [url.rsplit("/", 1)[-1] for url in asked]
    assert names[0] == "train-images-idx3-ubyte.gz"  # the download was attempted
    if partial:
        assert "train-labels-idx1-ubyte.gz" in names  # and failed after one file had arrived
    assert "\n" not in message
    for searched in (data_dir / "FashionMNIST" / "raw", data_dir, system):
        assert str(searched) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message
    assert "download failed" in message and "name resolution" in message
    assert list(data_dir.iterdir()) == []


def test_no_download_when_disabled(tmp_path, monkeypatch):
    """download=False never touches the network and says the download was not attempted."""
    asked = serve(monkeypatch, {})
    with pytest.raises(DataError, match="download not attempted"):
        load_dataset("fashion_mnist", tmp_path, download=False, system_dirs=())
    assert asked == []


def test_unknown_dataset(tmp_path):
    """An unknown dataset name is a DataError listing the known ones."""
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known: fashion_mnist, mnist"):
        load_dataset("cifar", tmp_path)


def corrupt_files(tmp_path, images, encode_idx):
    """(description, path) of broken IDX files built from the same images."""
    data = encode_idx(images)
    packed = gzip.compress(data)
    cases = {
        "truncated.gz": packed[: len(packed) // 2],
        "bad-magic": b"\x00\x00\x09\x03" + data[4:],
        "not-idx.gz": gzip.compress(b"<html>not found</html>"),
        "short-body": data[:-1],
        "short-body.gz": gzip.compress(data[: len(data) // 3]),
        "header-cut": data[:9],
        "empty": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    return cases


@pytest.mark.parametrize("name", ["truncated.gz", "bad-magic", "not-idx.gz", "short-body",
                                  "short-body.gz", "header-cut", "empty"])
def test_corrupt_idx_is_data_error(tmp_path, splits, encode_idx, name):
    """Truncated gzip, bad magic, a header promising absent bytes: a DataError naming the file."""
    corrupt_files(tmp_path, splits[0].images, encode_idx)
    path = tmp_path / name
    with pytest.raises(DataError) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_header_size_mismatch_is_reported(tmp_path, encode_idx):
    """A header claiming more images than stored: the error says the bytes held and needed."""
    data = bytearray(encode_idx(torch.zeros(3, 28, 28, dtype=torch.uint8)))
    data[4:8] = (4).to_bytes(4, "big")  # claims 4 images, holds 3
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes(data))
    expected = "holds 2368 bytes but its header (4, 28, 28) needs 3152"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_idx(path)


def test_corrupt_file_in_data_dir_is_not_skipped(tmp_path, splits, write_dataset):
    """A corrupt file where the data is found is a DataError naming it, not a fall-through."""
    paths = write_dataset(tmp_path / "data", *splits, gz=True)
    paths[0].write_bytes(paths[0].read_bytes()[:100])
    write_dataset(tmp_path / "system", *splits)
    with pytest.raises(DataError, match=re.escape(str(paths[0]))):
        load_dataset("fashion_mnist", tmp_path / "data", system_dirs=(tmp_path / "system",))


def test_images_and_labels_must_match(tmp_path, splits, write_dataset, encode_idx):
    """Labels that disagree with their images (count, range) are DataErrors naming the file."""
    paths = write_dataset(tmp_path, *splits)
    labels = paths[1]
    labels.write_bytes(encode_idx(splits[0].labels[:-1]))
    with pytest.raises(DataError, match=re.escape(f"{labels} holds (199,) labels for 200 images")):
        load_dataset("fashion_mnist", tmp_path, download=False, system_dirs=())
    labels.write_bytes(encode_idx(torch.full((200,), 10)))
    with pytest.raises(DataError, match=re.escape(f"{labels} holds a label above 9")):
        load_dataset("fashion_mnist", tmp_path, download=False, system_dirs=())


def test_label_file_with_an_image_magic_number_names_it(tmp_path, splits, write_dataset,
                                                         encode_idx):
    """A labels file holding images (magic 0x00000803) says so, not a size it cannot have."""
    paths = write_dataset(tmp_path, *splits)
    paths[1].write_bytes(encode_idx(splits[0].images))
    with pytest.raises(DataError, match=re.escape(
            f"{paths[1]} has the magic number 0x00000803 (an IDX file of 3 dimensions), expected "
            "0x00000801 for labels: is it the right file?")):
        load_dataset("fashion_mnist", tmp_path, download=False, system_dirs=())
