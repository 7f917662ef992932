"""IDX files, the format MNIST is published in: reading and writing them, with every header checked.

IDX layout: a big-endian header of 32-bit unsigned integers (the magic number 2051 for images or
2049 for labels, then the count, and for images the rows and the columns) followed by one unsigned
byte per pixel or label. Files may be gzip-compressed or raw.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..files import write_bytes

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)


class DataError(ValueError):
    """A data file is missing, unreadable, or not what its name says."""


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
