"""Images of digits, with no text and no plotting library: a PNG writer (stdlib zlib), digit grids,
and the latent manifold.

Images are uint8 arrays, (height, width) for grayscale or (height, width, 3) for RGB; digits are
float rows of 784 intensities in [0, 1].
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..files import write_bytes

DIGIT_SHAPE = (28, 28)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------- PNG
def encode_png(image: np.ndarray) -> bytes:
    """The PNG file of a uint8 image: 8-bit grayscale (h, w) or RGB (h, w, 3), no interlacing.

    Each row is stored with filter type 0 (none) and the rows are zlib-compressed into one IDAT
    chunk; every chunk is length, type, data, and the CRC-32 of type and data.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) \
            or 0 in image.shape:
        raise ValueError(f"encode_png: needs a non-empty uint8 image of shape (h, w) or (h, w, 3), "
                         f"got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    colour_type = 0 if image.ndim == 2 else 2
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + chunk(b"IEND", b""))


def write_png(path, image: np.ndarray) -> Path:
    """Write ``image`` (see ``encode_png``) to ``path`` atomically and return the path.

    The file appears complete or not at all: a failed write (a full disk) leaves the previous file.
    """
    return write_bytes(path, encode_png(image))


def png_problem(path) -> str | None:
    """Why ``path`` is not a complete PNG file (missing, truncated, a bad CRC or stream), or None.

    It walks the chunks, checks each CRC-32, needs IHDR first and IEND last, and decompresses the
    image data.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if not content.startswith(PNG_SIGNATURE):
        return "does not start with the PNG signature"
    position, kinds, data = len(PNG_SIGNATURE), [], []
    while position < len(content):
        if position + 12 > len(content):
            return "is truncated inside a chunk header"
        (length,), kind = struct.unpack_from(">I", content, position), content[position + 4:position + 8]
        end = position + 12 + length
        if end > len(content):
            return f"is truncated: its {kind!r} chunk needs {end} bytes, the file holds {len(content)}"
        body = content[position + 8:end - 4]
        if struct.unpack_from(">I", content, end - 4)[0] != zlib.crc32(kind + body):
            return f"has a bad CRC in its {kind!r} chunk"
        kinds.append(kind)
        if kind == b"IDAT":
            data.append(body)
        position = end
    if not kinds or kinds[0] != b"IHDR" or kinds[-1] != b"IEND":
        return "lacks its IHDR or IEND chunk"
    try:
        zlib.decompress(b"".join(data))
    except zlib.error as err:
        return f"has a broken image stream ({err})"
    return None


def to_uint8(intensities: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] (clipped) as bytes 0..255."""
    return np.round(np.clip(intensities, 0.0, 1.0) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------- grids
DIGIT_SCALE = 3   # screen pixels per digit pixel in the grids a run writes, so 28-pixel digits can be seen
PAIR_GAP = 6      # white rows between one pair of rows of a reconstruction grid and the next


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel of ``image`` as a ``factor`` × ``factor`` block (nearest neighbour)."""
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"upscale: factor must be an int >= 1, got {factor!r}")
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def digit_grid(digits: np.ndarray, columns: int = 8, padding: int = 2, background: float = 0.5,
               shape: tuple = DIGIT_SHAPE, scale: int = 1) -> np.ndarray:
    """Digits (n, 784) tiled row by row into a grayscale uint8 image, ``padding`` pixels around each,
    then every pixel made ``scale`` × ``scale`` (``upscale``).

    Cells after the last digit of an incomplete row stay ``background``. Digits of another length
    than the ``shape``'s, no digits or ``columns < 1`` raise ``ValueError``.
    """
    digits = np.asarray(digits, dtype=np.float64)
    if digits.ndim != 2 or digits.shape[1] != shape[0] * shape[1] or len(digits) == 0 or columns < 1:
        raise ValueError(f"digit_grid: needs digits of shape (n >= 1, {shape[0] * shape[1]}) and columns >= 1, "
                         f"got {digits.shape} and columns={columns}")
    rows = -(-len(digits) // columns)
    h, w = shape
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding), background)
    for i, digit in enumerate(digits):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[top:top + h, left:left + w] = digit.reshape(shape)
    return upscale(to_uint8(grid), scale)


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, columns: int = 8,
                        scale: int = 1) -> np.ndarray:
    """Pairs of rows, each a row of ``columns`` originals directly above their reconstructions, the
    pairs ``PAIR_GAP`` white rows apart (so the pairing shows without a word), upscaled ``scale`` times.

    Originals and reconstructions of different shapes, or a count that is not a multiple of
    ``columns``, raise ``ValueError``.
    """
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if not (isinstance(columns, int) and columns >= 1) or originals.ndim != 2 \
            or originals.shape != reconstructions.shape or len(originals) == 0 or len(originals) % columns:
        raise ValueError(f"reconstruction_grid: needs originals and reconstructions of one shape (n >= 1, 784) "
                         f"with n a multiple of columns={columns!r}, got {originals.shape} and {reconstructions.shape}")
    pairs = [digit_grid(np.concatenate([above, below]), columns)
             for above, below in zip(np.split(originals, len(originals) // columns),
                                     np.split(reconstructions, len(originals) // columns))]
    gap = np.full((PAIR_GAP, pairs[0].shape[1]), 255, np.uint8)
    return upscale(np.concatenate([part for pair in pairs for part in (gap, pair)][1:]), scale)


# --------------------------------------------------------------------------------------- latent manifold
def normal_quantile(p: float) -> float:
    """Φ⁻¹(p), the standard normal quantile, by Newton's method.

    By symmetry it solves S(x) = q for x >= 0, with q = min(p, 1 - p) and the upper tail
    S(x) = 1 - Φ(x) = erfc(x / √2) / 2, S'(x) = -φ(x); erfc keeps the tail accurate. The start is
    the root of the tail's asymptote S(x) ≈ φ(x) / x, x² = t - log t - log 2π with t = -2 log q
    (0 when negative). S is convex and decreasing for x >= 0, so Newton's steps
    x += (S(x) - q) / φ(x) land below the root after at most one step and then rise to it.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal_quantile: p must lie strictly between 0 and 1, got {p}")
    tail = min(p, 1.0 - p)
    t = -2.0 * math.log(tail)
    x = math.sqrt(max(t - math.log(t) - math.log(2.0 * math.pi), 0.0))
    for _ in range(100):
        survival = 0.5 * math.erfc(x / math.sqrt(2.0))
        density = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        step = (survival - tail) / density
        x += step
        if abs(step) <= 1e-13 * max(1.0, x):
            break
    return x if p >= 0.5 else -x


def manifold_grid(decode, steps: int = 20) -> np.ndarray:
    """Decoded digits over a 2-D latent grid (Kingma & Welling, fig. 4), as a uint8 image.

    The grid is z = (Φ⁻¹(u), Φ⁻¹(v)) for u, v at the centres of ``steps`` equal cells of the unit
    square, so equal areas of the grid hold equal prior mass; ``decode`` maps an array z of shape
    (m, 2) to intensities (m, 784). Rows go down in z₁, columns right in z₂.
    """
    quantiles = [normal_quantile((i + 0.5) / steps) for i in range(steps)]
    z = np.array([(a, b) for a in reversed(quantiles) for b in quantiles], dtype=np.float32)
    return digit_grid(decode(z), columns=steps, padding=0)


