"""MNIST data sources: the bundled digits, IDX folders written here, and the errors for bad folders
(Fashion-MNIST's, which share the reader, are in test_fashion.py)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from pplevelset.errors import UserInputError
from pplevelset.worlds.mnist.data import (
    FASHION,
    MNIST,
    _bundled_arrays,
    _bundled_split_indices,
    load_images,
    load_mnist,
)


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, n_train=6, n_test=3, gzipped=False, seed=0):
    """A tiny MNIST-format data set (random pixels, every class in turn, shuffled) in the real IDX
    layout; returns the arrays written. Also used by test_mnist.py and test_fashion.py."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        for stem, array, magic in (
            (f"{prefix}-images-idx3-ubyte", images, 2051),
            (f"{prefix}-labels-idx1-ubyte", labels, 2049),
        ):
            data = _idx_bytes(array, magic)
            if gzipped:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        written[split] = (images, labels)
    return written


def test_bundled_split_shapes_range_and_strata():
    train_x, train_y = load_mnist("train")
    test_x, test_y = load_mnist("test")
    assert train_x.shape == (4500, 1, 28, 28) and test_x.shape == (500, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert 0.0 <= train_x.min() and train_x.max() <= 1.0 and train_x.max() > 0.99
    assert torch.bincount(train_y, minlength=10).tolist() == [450] * 10
    assert torch.bincount(test_y, minlength=10).tolist() == [50] * 10
    assert torch.unique(test_y[:50]).numel() > 1  # shuffled, not sorted by class


def test_bundled_split_is_deterministic_disjoint_and_seeded():
    _, labels = _bundled_arrays()
    split = _bundled_split_indices(labels, seed=0)
    assert set(split["train"]).isdisjoint(split["test"])
    assert len(set(split["train"]) | set(split["test"])) == 5000
    test_x, test_y = load_mnist("test", seed=0)
    again_x, again_y = load_mnist("test", seed=0)
    assert torch.equal(again_x, test_x) and torch.equal(again_y, test_y)
    assert not torch.equal(load_mnist("test", seed=1)[0], test_x)


@pytest.mark.parametrize("dataset", [MNIST, FASHION], ids=lambda dataset: dataset.key)
@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_idx_folder_round_trip(tmp_path, dataset, gzipped, torchvision_layout):
    folder = tmp_path / dataset.torchvision_name / "raw" if torchvision_layout else tmp_path
    written = write_idx_folder(folder, gzipped=gzipped)
    for split in ("train", "test"):
        images, labels = load_images(dataset, split, data_root=tmp_path)
        expected_images, expected_labels = written[split]
        assert images.shape == (len(expected_labels), 1, 28, 28) and images.dtype == torch.float32
        assert torch.allclose(images[:, 0] * 255, torch.from_numpy(expected_images).float())
        assert labels.dtype == torch.int64 and labels.tolist() == expected_labels.tolist()


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_mnist("train", data_root=tmp_path / "nowhere")
    with pytest.raises(UserInputError, match="train-images-idx3-ubyte.*not found"):
        load_mnist("train", data_root=tmp_path)
    with pytest.raises(UserInputError, match="unknown MNIST split"):
        load_mnist("validation")


def test_wrong_magic_number(tmp_path):
    write_idx_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">I", 2049) + path.read_bytes()[4:])
    with pytest.raises(UserInputError, match="magic number 2049, expected 2051"):
        load_mnist("train", data_root=tmp_path)


def test_truncated_files(tmp_path):
    write_idx_folder(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(UserInputError, match="header .* implies"):
        load_mnist("train", data_root=tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:6])
    with pytest.raises(UserInputError, match="truncated"):
        load_mnist("test", data_root=tmp_path)


def test_corrupt_gzip(tmp_path):
    write_idx_folder(tmp_path, gzipped=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(UserInputError, match="cannot read"):
        load_mnist("train", data_root=tmp_path)


def test_label_and_image_counts_must_match(tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, np.uint8), 2049))
    with pytest.raises(UserInputError, match="6 images but 5 labels"):
        load_mnist("train", data_root=tmp_path)
