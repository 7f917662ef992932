"""MNIST's files and splits: the canonical file table, the embedded 10,000-digit test set, and loading a split.

Without a directory, the data is the MNIST test set shipped with the package: the first 9,000
digits train, the last 1,000 are held out. A directory holding the four canonical files gives the
standard split, 60,000 training and 10,000 held-out digits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import IMAGE_SHAPE, DataError, read_idx_pair, write_idx

TEST_SET_HELD_OUT = 1000  # held out of a test set used alone, as the embedded one: its last 1,000
EMBEDDED_DIR = "_mnist"  # package data folder of the shipped files


@dataclass(frozen=True)
class MnistFile:
    """One canonical MNIST file and its published size and checksums."""

    name: str
    size: int
    md5: str
    sha256: str | None = None

    @property
    def stem(self) -> str:
        """The name without ``.gz`` (the raw IDX file's name)."""
        return self.name.removesuffix(".gz")


TRAIN_IMAGES = MnistFile("train-images-idx3-ubyte.gz", 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873")
TRAIN_LABELS = MnistFile("train-labels-idx1-ubyte.gz", 28881, "d53e105ee54ea40749a09fcbcd1e9432")
TEST_IMAGES = MnistFile("t10k-images-idx3-ubyte.gz", 1648877, "9fb629c4189551a2d022fa330f9573f3",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6")
TEST_LABELS = MnistFile("t10k-labels-idx1-ubyte.gz", 4542, "ec29112dd5afa0611ce80d1b7f02629c",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


@dataclass(frozen=True)
class MnistSplit:
    """Training and held-out digits: images float32 in [0, 1] of shape (n, 784), labels uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def __repr__(self) -> str:
        return f"MnistSplit({len(self.train_images)} train, {len(self.test_images)} held out; {self.source})"


# --------------------------------------------------------------------------------------- data sets
def load_mnist(data_dir=None) -> MnistSplit:
    """The training and held-out digits: from ``data_dir``, or the embedded test set if it is None.

    A directory with the train and t10k files gives the standard 60,000/10,000 split; one with only
    the t10k files (gzip or raw) is split like the embedded set, the last 1,000 digits held out.
    """
    if data_dir is None:
        return _split_test_set(Path(__file__).parent / EMBEDDED_DIR, "the embedded MNIST test set")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"load_mnist: data directory {data_dir} {path_problem(data_dir, 'directory')}")
    if any(_find(data_dir, f) for f in (TRAIN_IMAGES, TRAIN_LABELS)):
        train = read_idx_pair(_require(data_dir, TRAIN_IMAGES), _require(data_dir, TRAIN_LABELS))
        test = read_idx_pair(_require(data_dir, TEST_IMAGES), _require(data_dir, TEST_LABELS))
        return MnistSplit(*train, *test, source=f"the train and t10k files of {data_dir}")
    return _split_test_set(data_dir, f"the t10k files of {data_dir}")


def save_mnist(split: MnistSplit, directory, compress: bool = True) -> Path:
    """Write ``split`` as the four IDX files of an MNIST directory (train and t10k), gzipped if ``compress``.

    ``load_mnist(directory)`` then gives the same split back, e.g. a small subset to experiment on.
    """
    def as_bytes(images):
        return np.round(images * 255).astype(np.uint8).reshape(-1, *IMAGE_SHAPE)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for file, array in ((TRAIN_IMAGES, as_bytes(split.train_images)), (TRAIN_LABELS, split.train_labels),
                        (TEST_IMAGES, as_bytes(split.test_images)), (TEST_LABELS, split.test_labels)):
        write_idx(directory / (file.name if compress else file.stem), array)
    return directory


def _split_test_set(folder: Path, source: str) -> MnistSplit:
    images, labels = read_idx_pair(_require(folder, TEST_IMAGES), _require(folder, TEST_LABELS))
    if len(images) <= TEST_SET_HELD_OUT:
        raise DataError(f"load_mnist: {source} holds {len(images)} digits; splitting off the last "
                        f"{TEST_SET_HELD_OUT} needs more")
    cut = len(images) - TEST_SET_HELD_OUT
    return MnistSplit(images[:cut], labels[:cut], images[cut:], labels[cut:],
                      source=f"{source}, its last {TEST_SET_HELD_OUT} held out")


def path_problem(path: Path, kind: str) -> str:
    """Why ``path`` is not the ``kind`` ("file" or "directory") asked for: it is missing, or something else."""
    return f"is not a {kind}" if path.exists() else "does not exist"


def _find(folder: Path, file: MnistFile) -> Path | None:
    """The gzip or the raw version of ``file`` in ``folder``, if either is there."""
    return next((folder / n for n in (file.name, file.stem) if (folder / n).is_file()), None)


def _require(folder: Path, file: MnistFile) -> Path:
    found = _find(folder, file)
    if found is None:
        raise DataError(f"load_mnist: {folder} has no {file.name} (nor {file.stem}); "
                        f"fetch the files with: minivae download mnist --dir {folder}")
    return found
