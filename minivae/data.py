"""MNIST: reading IDX files, the embedded 10,000-digit test set, and downloading the full set.

IDX layout: a big-endian header of 32-bit unsigned integers (the magic number 2051 for images or
2049 for labels, then the count, and for images the rows and the columns) followed by one unsigned
byte per pixel or label. Files may be gzip-compressed or raw.

Without a directory, the data is the MNIST test set shipped with the package: the first 9,000
digits train, the last 1,000 are held out. A directory holding the four canonical files gives the
standard split, 60,000 training and 10,000 held-out digits.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_write, write_bytes

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
TEST_SET_HELD_OUT = 1000  # held out of a test set used alone, as the embedded one: its last 1,000
EMBEDDED_DIR = "_mnist"  # package data folder of the shipped files
DEFAULT_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
URL_ENV_VAR = "MINIVAE_MNIST_URL"
URL_SCHEMES = ("http", "https", "file")
DOWNLOAD_TIMEOUT = 10.0     # seconds: to connect, for an answer, and the window of the stall check
STALL_BYTES = 16 * 1024     # fewer bytes than this in a whole timeout window is a stalled transfer
READ_CHUNK = 64 * 1024


class DataError(ValueError):
    """A data file is missing, unreadable, or not what its name says."""


class DownloadError(OSError):
    """A file could not be fetched, or what was fetched does not match its published checksum."""


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


# --------------------------------------------------------------------------------------- IDX files
def read_idx(path, magic: int) -> np.ndarray:
    """The uint8 array stored in the IDX file ``path`` (gzip or raw), checking its header.

    ``magic`` is the expected magic number: 2051 for images (n, rows, cols), 2049 for labels (n,).
    The array is a read-only view of the file's bytes.
    """
    path = Path(path)
    ndim = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}[magic]
    try:
        raw = path.read_bytes()
        content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except FileNotFoundError:
        raise DataError(f"read_idx: {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"read_idx: {path} is not a readable gzip file ({err})") from None
    header = 4 * (1 + ndim)
    if len(content) >= 4 and (found := struct.unpack_from(">I", content)[0]) != magic:
        raise DataError(f"read_idx: {path} has magic number {found}, expected {magic} "
                        f"({'images' if magic == IMAGES_MAGIC else 'labels'})")
    if len(content) < header:
        raise DataError(f"read_idx: {path} is truncated: {len(content)} bytes, shorter than the "
                        f"{header}-byte IDX header")
    dims = struct.unpack(f">{ndim}I", content[4:header])
    expected = header + math.prod(dims)  # Python ints: sizes of up to 2**96 bytes do not wrap around
    if len(content) != expected:
        kind = "truncated" if len(content) < expected else "longer than its header says"
        raise DataError(f"read_idx: {path} is {kind}: the header {tuple(dims)} needs {expected} bytes, "
                        f"the file holds {len(content)}")
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims)


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array of shape (n,) or (n, rows, cols) as an IDX file, gzipped if ``path`` ends in .gz."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"write_idx: needs a uint8 array of 1 or 3 dimensions, got {array.dtype} {array.shape}")
    magic = LABELS_MAGIC if array.ndim == 1 else IMAGES_MAGIC
    content = struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()
    write_bytes(path, gzip.compress(content, mtime=0) if str(path).endswith(".gz") else content)


def read_idx_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 in [0, 1] flattened to (n, 784), and their uint8 labels (n,); n >= 1."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    for path, array in ((images_path, images), (labels_path, labels)):
        if len(array) == 0:
            raise DataError(f"read_idx_pair: {path} holds no digits (its IDX header gives a count of 0); "
                            f"replace it with a complete MNIST file, e.g. with: minivae download mnist --dir DIR")
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"read_idx_pair: {images_path} holds images of {images.shape[1]}x{images.shape[2]} "
                        f"pixels, expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}")
    if len(images) != len(labels):
        raise DataError(f"read_idx_pair: {images_path} holds {len(images)} images but {labels_path} "
                        f"holds {len(labels)} labels")
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255), labels


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


# --------------------------------------------------------------------------------------- files
def checksum_problem(content: bytes, file: MnistFile) -> str | None:
    """Why ``content`` is not the canonical ``file`` (size, MD5 or SHA-256), or None if it is."""
    if len(content) != file.size:
        return f"{len(content)} bytes, expected {file.size}"
    for algorithm, expected in (("md5", file.md5), ("sha256", file.sha256)):
        found = hashlib.new(algorithm, content).hexdigest()
        if expected is not None and found != expected:
            return f"{algorithm.upper()} {found}, expected {expected}"
    return None


def download_mnist(dest, base_url: str | None = None, files=MNIST_FILES, timeout: float = DOWNLOAD_TIMEOUT,
                   report=None, progress=None) -> dict[str, str]:
    """Fetch the MNIST files into ``dest``, verify their checksums, and return each name's status.

    ``base_url`` defaults to ``$MINIVAE_MNIST_URL`` or the canonical mirror; each file is fetched
    from ``base_url/name`` (http, https or file URLs) and replaces its target atomically only once
    its size and checksums match, so a broken download never leaves a valid-looking file. Files
    already present and valid are skipped. ``report``, if given, is called with a line per file;
    ``progress``, if given, is called with a function giving a line of the bytes fetched so far and
    the rate (e.g. ``Progress.update``).

    ``timeout`` (seconds) bounds the wait to connect and for each answer, and a transfer that
    brings fewer than 16 KiB in ``timeout`` seconds (a stalled or trickling server) fails with a
    ``DownloadError``. An empty ``base_url`` is a ``ValueError``, not the default mirror.
    """
    if base_url is not None and not base_url.strip():
        raise ValueError(f"download_mnist: the mirror URL is empty; give one (e.g. {DEFAULT_URL}) or leave "
                         f"--url out for ${URL_ENV_VAR} or the canonical mirror")
    base_url = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_URL
    if urllib.parse.urlsplit(base_url).scheme not in URL_SCHEMES:
        raise ValueError(f"download_mnist: the mirror URL {base_url!r} is not an http, https or file URL, "
                         f"e.g. {DEFAULT_URL}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    status = {}
    for file in files:
        target = dest / file.name
        if target.is_file() and checksum_problem(target.read_bytes(), file) is None:
            status[file.name] = "already present"
        else:
            _fetch(base_url.rstrip("/") + "/" + file.name, target, file, timeout, progress)
            status[file.name] = "downloaded"
        if report is not None:
            report(f"{target}: {status[file.name]}, checksums verified")
    return status


class StalledTransfer(OSError):
    """A transfer brought too few bytes in a whole timeout window."""


def _fetch(url: str, target: Path, file: MnistFile, timeout: float, progress=None) -> None:
    """Download ``url`` into memory, check it against ``file``, and only then write ``target``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            content = _read(response, file, timeout, progress)
    except StalledTransfer as err:
        raise DownloadError(f"download_mnist: {url} stalled: {err}; nothing was kept. Try again, or use "
                            f"another mirror with --url") from None
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, refused or cut connections
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"download_mnist: cannot fetch {url} ({reason}). Without network access, copy the files "
            f"{', '.join(f.name for f in MNIST_FILES)} by hand from any MNIST mirror into a directory "
            f"and pass --data-dir DIR to minivae train, or point --url (or ${URL_ENV_VAR}) at a "
            f"reachable mirror; minivae train without --data-dir needs no download") from None
    problem = checksum_problem(content, file)
    if problem is not None:
        raise DownloadError(f"download_mnist: {url} gave {problem}; nothing was kept. "
                            f"Try again, or use another mirror with --url")
    with atomic_write(target) as out:
        out.write(content)


def _read(response, file: MnistFile, timeout: float, progress=None) -> bytes:
    """The body of ``response`` (at most ``file.size + 1`` bytes: a longer one fails the size
    check), raising ``StalledTransfer`` when a ``timeout``-second window brings under STALL_BYTES."""
    parts, received, limit = [], 0, file.size + 1
    started = window_start = time.monotonic()
    window_bytes = 0
    read = getattr(response, "read1", None) or response.read
    while received < limit:
        part = read(min(READ_CHUNK, limit - received))
        if not part:
            break
        parts.append(part)
        received += len(part)
        window_bytes += len(part)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < STALL_BYTES:
                raise StalledTransfer(f"{window_bytes} bytes in the last {now - window_start:.0f} s "
                                      f"({received} of {file.size} in all)")
            window_start, window_bytes = now, 0
        if progress is not None:
            rate = received / max(now - started, 1e-9)
            progress(lambda: f"{file.name}: {received:,} of {file.size:,} bytes, {rate / 1e6:.2f} MB/s")
    return b"".join(parts)
