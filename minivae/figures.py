"""Figures without a plotting library: a PNG writer, digit grids, a loss plot, the latent manifold, and the
estimator variance plot (SVG).

Images are uint8 arrays, (height, width) for grayscale or (height, width, 3) for RGB; digits are
float rows of 784 intensities in [0, 1].
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .files import write_bytes

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
def digit_grid(digits: np.ndarray, columns: int = 8, padding: int = 2, background: float = 0.5,
               shape: tuple = DIGIT_SHAPE) -> np.ndarray:
    """Digits (n, 784) tiled row by row into a uint8 image, ``padding`` pixels around each.

    Cells after the last digit of an incomplete row stay ``background``.
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
    return to_uint8(grid)


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, columns: int = 8) -> np.ndarray:
    """Rows of ``columns`` originals, each directly above the row of their reconstructions."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if originals.shape != reconstructions.shape or len(originals) % columns:
        raise ValueError(f"reconstruction_grid: needs originals and reconstructions of one shape (n, 784) with n "
                         f"a multiple of columns={columns}, got {originals.shape} and {reconstructions.shape}")
    pairs = np.stack([originals.reshape(-1, columns, originals.shape[1]),
                      reconstructions.reshape(-1, columns, originals.shape[1])], axis=1)
    return digit_grid(pairs.reshape(len(originals) * 2, -1), columns)


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


# --------------------------------------------------------------------------------------- text
# A 3x5 pixel font: each glyph is five rows of three bits. Text is drawn in lower case.
GLYPHS = {
    "0": "111 101 101 101 111", "1": "010 110 010 010 111", "2": "111 001 111 100 111",
    "3": "111 001 111 001 111", "4": "101 101 111 001 001", "5": "111 100 111 001 111",
    "6": "111 100 111 101 111", "7": "111 001 010 010 010", "8": "111 101 111 101 111",
    "9": "111 101 111 001 111", ".": "000 000 000 000 010", "-": "000 000 111 000 000",
    " ": "000 000 000 000 000", "a": "000 011 101 101 011", "b": "100 110 101 101 110",
    "c": "000 011 100 100 011", "d": "001 011 101 101 011", "e": "000 111 111 100 111",
    "f": "011 100 110 100 100", "g": "011 101 011 001 110", "h": "100 110 101 101 101",
    "i": "010 000 010 010 010", "j": "001 000 001 001 110", "k": "100 101 110 101 101",
    "l": "110 010 010 010 011", "m": "000 111 111 101 101", "n": "000 110 101 101 101",
    "o": "000 010 101 101 010", "p": "000 110 101 110 100", "q": "000 011 101 011 001",
    "r": "000 101 110 100 100", "s": "000 011 110 001 110", "t": "010 111 010 010 011",
    "u": "000 101 101 101 011", "v": "000 101 101 101 010", "w": "000 101 101 111 111",
    "x": "000 101 010 010 101", "y": "000 101 011 001 110", "z": "000 111 001 010 111",
    "(": "010 100 100 100 010", ")": "010 001 001 001 010", "/": "001 001 010 100 100",
    ",": "000 000 000 010 100", ":": "000 010 000 010 000", "=": "000 111 000 111 000",
    "+": "000 010 111 010 000", "_": "000 000 000 000 111", "'": "010 010 000 000 000",
}
_GLYPHS = GLYPHS  # the name the benchmark charts extend
_FONT_SCALE = 2
CHAR_WIDTH, CHAR_HEIGHT = 4 * _FONT_SCALE, 5 * _FONT_SCALE   # pixels per character, spacing included
CURVE_COLOURS = ((31, 119, 180), (255, 127, 14))  # blue, orange


def text_width(text: str) -> int:
    """The width in pixels of ``text`` drawn by ``_draw_text``."""
    return len(text) * CHAR_WIDTH - _FONT_SCALE if text else 0


def _draw_text(canvas: np.ndarray, text: str, top: int, left: int, colour=(0, 0, 0)) -> None:
    """Draw ``text`` (in lower case) with the 3x5 font at twice its size, its top-left corner at
    (top, left), on a grayscale (colour a number) or RGB canvas. Parts outside the canvas are cut;
    characters the font lacks are left blank."""
    s = _FONT_SCALE
    for k, character in enumerate(text.lower()):
        bits = np.array([[c == "1" for c in row] for row in GLYPHS.get(character, GLYPHS[" "]).split()])
        mask = np.kron(bits, np.ones((s, s), bool))
        x = left + k * CHAR_WIDTH
        r0, c0 = max(top, 0), max(x, 0)
        region = canvas[r0:top + mask.shape[0], c0:x + mask.shape[1]]
        region[mask[r0 - top:r0 - top + region.shape[0], c0 - x:c0 - x + region.shape[1]]] = colour


def _draw_vertical_text(canvas: np.ndarray, text: str, bottom: int, left: int, colour=(0, 0, 0)) -> None:
    """Draw ``text`` turned a quarter left (read from bottom to top), its bottom-left corner at (bottom, left)."""
    strip = np.full((CHAR_HEIGHT, text_width(text)) + canvas.shape[2:], 255, np.uint8)
    _draw_text(strip, text, 0, 0, colour)
    turned = np.rot90(strip)
    top = bottom - turned.shape[0]
    region = canvas[max(top, 0):bottom, left:left + turned.shape[1]]
    ink = (turned != 255) if turned.ndim == 2 else (turned != 255).any(axis=2)
    ink = ink[turned.shape[0] - region.shape[0]:, :region.shape[1]]
    region[ink] = turned[turned.shape[0] - region.shape[0]:, :region.shape[1]][ink]


def _draw_line(canvas: np.ndarray, start, end, colour, width: int = 2) -> None:
    """A straight segment between two (row, column) points, ``width`` pixels thick."""
    (r0, c0), (r1, c1) = start, end
    n = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
    rows = np.round(np.linspace(r0, r1, n)).astype(int)
    cols = np.round(np.linspace(c0, c1, n)).astype(int)
    for dr in range(width):
        for dc in range(width):
            r, c = np.clip(rows + dr, 0, canvas.shape[0] - 1), np.clip(cols + dc, 0, canvas.shape[1] - 1)
            canvas[r, c] = colour


# --------------------------------------------------------------------------------------- labelled digit grids
DIGIT_SCALE = 3  # screen pixels per digit pixel in the figures a run writes


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel of ``image`` as a ``factor`` × ``factor`` block (nearest neighbour), so 28-pixel digits can be
    seen."""
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"upscale: factor must be an int >= 1, got {factor!r}")
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def labelled_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, columns: int = 8,
                             scale: int = DIGIT_SCALE) -> np.ndarray:
    """``reconstruction_grid`` upscaled ``scale`` times, with each row named on its left: "original"
    above "reconstruction", as a grayscale uint8 image on a white margin."""
    grid = upscale(reconstruction_grid(originals, reconstructions, columns), scale)
    cell = (DIGIT_SHAPE[0] + 2) * scale
    labels = ("original", "reconstruction")
    margin = max(text_width(label) for label in labels) + 16
    canvas = np.full((grid.shape[0], margin + grid.shape[1]), 255, np.uint8)
    canvas[:, margin:] = grid
    for row in range(len(originals) // columns * 2):
        _draw_text(canvas, labels[row % 2], 2 * scale + row * cell + cell // 2 - CHAR_HEIGHT // 2, 8, 0)
    return canvas


def labelled_samples(digits: np.ndarray, columns: int = 8, scale: int = DIGIT_SCALE,
                     title: str = "samples: x decoded from z ~ n(0, i)") -> np.ndarray:
    """``digit_grid`` upscaled ``scale`` times under a one-line ``title``, as a grayscale uint8 image."""
    grid = upscale(digit_grid(digits, columns), scale)
    band = CHAR_HEIGHT + 16
    canvas = np.full((band + grid.shape[0], max(grid.shape[1], text_width(title) + 16)), 255, np.uint8)
    canvas[band:, :grid.shape[1]] = grid
    _draw_text(canvas, title, 8, 8, 0)
    return canvas


# --------------------------------------------------------------------------------------- loss plot
def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (1, 2 or 5 × a power of ten apart) within [low, high], at most ``most`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    for step in (m * 10.0 ** p for p in range(math.floor(math.log10((high - low) / most)), 400) for m in (1, 2, 5)):
        if (high - low) / step <= most:
            first = math.ceil(low / step)
            ticks = [k * step for k in range(first, math.floor(high / step) + 1)]
            if ticks:
                return ticks
    return [low, high]


def _tick_label(value: float) -> str:
    """At most nine characters: 120, 117.5, 1.2e+30."""
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.2g}"


def loss_plot(curves: dict, width: int = 640, height: int = 400, title: str = "loss per epoch",
              x_label: str = "epoch", y_label: str = "nats per digit") -> np.ndarray:
    """An RGB line plot of ``{name: (x values, y values)}``, e.g. loss per epoch, as a uint8 image.

    A title, axes with round ticks and their labels, the axis labels ``x_label`` (below) and
    ``y_label`` (on the left, turned), one colour per curve (dots mark the points) and a legend.
    Non-finite points are left out; the tick labels are at most nine characters (1.2e+30), so
    huge values stay in the margin. Text is drawn in lower case with a 3x5 font.
    """
    if not 1 <= len(curves) <= len(CURVE_COLOURS):
        raise ValueError(f"loss_plot: draws 1 to {len(CURVE_COLOURS)} curves, got {len(curves)}")
    finite = {}
    for name, (xs, ys) in curves.items():
        xy = np.array([np.asarray(xs, np.float64), np.asarray(ys, np.float64)])
        finite[name] = xy[:, np.isfinite(xy).all(axis=0)]
    every = np.concatenate(list(finite.values()), axis=1)
    if every.size == 0:
        raise ValueError("loss_plot: there is no finite point to draw")
    (x_low, y_low), (x_high, y_high) = every.min(axis=1), every.max(axis=1)
    x_span, y_span = _padded_span(x_low, x_high), _padded_span(y_low, y_high)
    y_ticks = [y for y in nice_ticks(*y_span) if y_span[0] <= y <= y_span[1]]
    x_ticks = [x for x in nice_ticks(*x_span) if x_span[0] <= x <= x_span[1]]
    if x_high - x_low >= 1 and all(x == round(x) for x in every[0]):  # whole epochs: whole ticks
        x_ticks = [x for x in x_ticks if x == round(x)] or [x_low]
    canvas = np.full((height, width, 3), 255, np.uint8)
    label_width = max(text_width(_tick_label(y)) for y in y_ticks or [y_low])
    left = 8 + CHAR_HEIGHT + 12 + label_width + 10
    right, top, bottom = width - 20, 16 + 2 * (CHAR_HEIGHT + 10), height - (2 * CHAR_HEIGHT + 30)

    def pixel(x, y):
        return (bottom - (y - y_span[0]) / (y_span[1] - y_span[0]) * (bottom - top),
                left + (x - x_span[0]) / (x_span[1] - x_span[0]) * (right - left))

    black, grey = (0, 0, 0), (225, 225, 225)
    for y in y_ticks:
        r = round(pixel(x_low, y)[0])
        _draw_line(canvas, (r, left), (r, right), grey, width=1)
        _draw_line(canvas, (r, left - 6), (r, left), black, width=1)
        label = _tick_label(y)
        _draw_text(canvas, label, r - CHAR_HEIGHT // 2, left - 10 - text_width(label))
    for x in x_ticks:
        c = round(pixel(x, y_low)[1])
        _draw_line(canvas, (bottom, c), (bottom + 6, c), black, width=1)
        label = _tick_label(x)
        _draw_text(canvas, label, bottom + 10, c - text_width(label) // 2)
    _draw_line(canvas, (top, left), (bottom, left), black, width=1)
    _draw_line(canvas, (bottom, left), (bottom, right), black, width=1)
    _draw_text(canvas, title, 8, (width - text_width(title)) // 2)
    _draw_text(canvas, x_label, height - CHAR_HEIGHT - 8, (left + right - text_width(x_label)) // 2)
    _draw_vertical_text(canvas, y_label, (top + bottom + text_width(y_label)) // 2, 8)
    legend = right
    for colour, name in reversed(list(zip(CURVE_COLOURS, finite))):
        legend -= text_width(name) + 40
        _draw_line(canvas, (top - 14, legend), (top - 14, legend + 20), colour, width=3)
        _draw_text(canvas, name, top - 18, legend + 26)
    for colour, xy in zip(CURVE_COLOURS, finite.values()):
        pixels = [pixel(x, y) for x, y in xy.T]
        for a, b in zip(pixels, pixels[1:]):
            _draw_line(canvas, a, b, colour)
        for r, c in pixels:
            canvas[max(round(r) - 2, 0):round(r) + 3, max(round(c) - 2, 0):round(c) + 3] = colour
    return canvas


def _padded_span(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened by 5% on each side, or by 1 if it is a single value."""
    margin = 0.05 * (high - low) or 1.0
    return low - margin, high + margin


# --------------------------------------------------------------------------------------- estimator variance
VARIANCE_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c")  # one per estimator, in the order given


def _variance_axes(rows) -> tuple:
    """(the states in order, the log10 range of the sample counts, whole decades spanning the variances)."""
    states = list(dict.fromkeys(r.state for r in rows))
    log_s = np.log10([r.samples for r in rows])
    log_v = np.log10([r.variance for r in rows])
    s_range = (log_s.min() - 0.1, log_s.max() + 0.1)
    v_range = (math.floor(log_v.min()), math.ceil(log_v.max()))
    if v_range[0] == v_range[1]:
        v_range = (v_range[0] - 1, v_range[1] + 1)
    return states, s_range, v_range


def variance_plot(rows, estimators, width: int = 760, height: int = 360) -> str:
    """An SVG figure: log₁₀ variance against log₁₀ S, one panel per state, one line per estimator.

    ``rows`` are ``minivae.study.variance.VarianceRow``; ``estimators`` names the estimators in the
    legend's order (at most four, one colour each). No rows raises ``ValueError``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("variance_plot: no rows to draw")
    states, s_range, v_range = _variance_axes(rows)
    legend_height, margin_left, margin_bottom, gap = 28, 64, 40, 30
    panel_width = (width - margin_left - gap * len(states)) / len(states)
    panel_top, panel_height = legend_height + 20, height - legend_height - 20 - margin_bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>']
    x = margin_left
    for estimator, colour in zip(estimators, VARIANCE_COLOURS):
        parts.append(f'<line x1="{x}" y1="14" x2="{x + 24}" y2="14" stroke="{colour}" stroke-width="3"/>'
                     f'<text x="{x + 30}" y="18">{estimator}</text>')
        x += 30 + 7 * len(estimator) + 24
    for i, state in enumerate(states):
        left = margin_left + i * (panel_width + gap)

        def point(s, v):
            return (left + (s - s_range[0]) / (s_range[1] - s_range[0]) * panel_width,
                    panel_top + (v_range[1] - v) / (v_range[1] - v_range[0]) * panel_height)
        parts.append(f'<rect x="{left:.1f}" y="{panel_top}" width="{panel_width:.1f}" height="{panel_height}" '
                     f'fill="none" stroke="black"/>'
                     f'<text x="{left + panel_width / 2:.1f}" y="{panel_top - 6}" text-anchor="middle">{state}</text>')
        for decade in range(int(v_range[0]), int(v_range[1]) + 1):
            _, y = point(s_range[0], decade)
            parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + panel_width:.1f}" y2="{y:.1f}" '
                         f'stroke="#dddddd"/>')
            if i == 0:
                parts.append(f'<text x="{left - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">1e{decade}</text>')
        for samples in sorted({r.samples for r in rows}):
            x, _ = point(np.log10(samples), v_range[0])
            parts.append(f'<text x="{x:.1f}" y="{panel_top + panel_height + 16}" '
                         f'text-anchor="middle">S={samples}</text>')
        for estimator, colour in zip(estimators, VARIANCE_COLOURS):
            line = sorted((r.samples, r.variance) for r in rows if r.state == state and r.estimator == estimator)
            if not line:
                continue
            points = [point(np.log10(s), np.log10(v)) for s, v in line]
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
    parts.append(f'<text x="14" y="{panel_top + panel_height / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {panel_top + panel_height / 2:.1f})">variance per parameter</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def variance_plot_png(rows, estimators, width: int = 760, height: int = 400) -> np.ndarray:
    """``variance_plot`` as an RGB uint8 image (for ``write_png``): a title, one panel per state with
    log₁₀ variance against log₁₀ S, decade and S ticks, the axis labels and a legend.

    ``rows`` are ``minivae.study.variance.VarianceRow``; ``estimators`` gives the legend's order
    (at most four). No rows raises ``ValueError``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("variance_plot_png: no rows to draw")
    colours = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in VARIANCE_COLOURS]
    states, s_range, v_range = _variance_axes(rows)
    canvas = np.full((height, width, 3), 255, np.uint8)
    title = "gradient variance per parameter against samples s"
    _draw_text(canvas, title, 8, (width - text_width(title)) // 2)
    legend = 8 + CHAR_HEIGHT + 12
    x = 80
    for estimator, colour in zip(estimators, colours):
        _draw_line(canvas, (legend + 4, x), (legend + 4, x + 20), colour, width=3)
        _draw_text(canvas, estimator, legend, x + 26)
        x += 26 + text_width(estimator) + 24
    label_width = max(text_width(f"1e{d}") for d in range(v_range[0], v_range[1] + 1))
    margin_left = 8 + CHAR_HEIGHT + 12 + label_width + 10
    gap = 30
    top, bottom = legend + CHAR_HEIGHT + 2 * CHAR_HEIGHT + 8, height - (2 * CHAR_HEIGHT + 30)
    panel_width = (width - margin_left - gap * len(states)) / len(states)
    black, grey = (0, 0, 0), (225, 225, 225)
    for i, state in enumerate(states):
        left = margin_left + i * (panel_width + gap)
        right = left + panel_width

        def point(s, v):
            return (bottom - (v - v_range[0]) / (v_range[1] - v_range[0]) * (bottom - top),
                    left + (s - s_range[0]) / (s_range[1] - s_range[0]) * panel_width)
        for decade in range(v_range[0], v_range[1] + 1):
            r = round(point(s_range[0], decade)[0])
            _draw_line(canvas, (r, left), (r, right), grey, width=1)
            if i == 0:
                label = f"1e{decade}"
                _draw_text(canvas, label, r - CHAR_HEIGHT // 2, round(left) - 10 - text_width(label))
        for samples in sorted({r.samples for r in rows}):
            c = round(point(np.log10(samples), v_range[0])[1])
            _draw_line(canvas, (bottom, c), (bottom + 6, c), black, width=1)
            _draw_text(canvas, str(samples), bottom + 10, c - text_width(str(samples)) // 2)
        for a, b in (((top, left), (top, right)), ((bottom, left), (bottom, right)),
                     ((top, left), (bottom, left)), ((top, right), (bottom, right))):
            _draw_line(canvas, a, b, black, width=1)
        _draw_text(canvas, state, top - CHAR_HEIGHT - 6, round((left + right - text_width(state)) / 2))
        for estimator, colour in zip(estimators, colours):
            line = sorted((r.samples, r.variance) for r in rows if r.state == state and r.estimator == estimator)
            pixels = [point(np.log10(s), np.log10(v)) for s, v in line]
            for a, b in zip(pixels, pixels[1:]):
                _draw_line(canvas, a, b, colour)
            for r, c in pixels:
                canvas[max(round(r) - 2, 0):round(r) + 3, max(round(c) - 2, 0):round(c) + 3] = colour
    x_label = "samples s per digit (log scale)"
    _draw_text(canvas, x_label, height - CHAR_HEIGHT - 8, (margin_left + width - text_width(x_label)) // 2)
    y_label = "variance (log scale)"
    _draw_vertical_text(canvas, y_label, (top + bottom + text_width(y_label)) // 2, 8)
    return canvas
