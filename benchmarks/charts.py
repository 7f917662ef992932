"""The benchmark's PNG charts, drawn with minivae's own PNG writer (``minivae.figures``).

``scaling_chart``: ms per step against batch size, one line per contender (log-log axes).
``parts_chart``: a step's time split into its parts, one stacked bar per backend.
The text uses the 3×5 font of ``minivae.figures`` with the letters it lacks added here.
"""
from __future__ import annotations

import math

import numpy as np

from minivae import figures as images

# The letters and signs minivae.figures' font lacks, in its format: five rows of three bits.
GLYPHS = {**images._GLYPHS,
          "b": "100 110 101 101 110", "c": "000 011 100 100 011", "d": "001 011 101 101 011",
          "f": "011 100 110 100 100", "g": "011 101 011 001 110", "h": "100 110 101 101 101",
          "j": "001 000 001 001 110", "k": "100 101 110 101 101", "l": "110 010 010 010 011",
          "m": "000 111 111 101 101", "o": "000 010 101 101 010", "p": "000 110 101 110 100",
          "q": "000 011 101 011 001", "u": "000 101 101 101 011", "v": "000 101 101 101 010",
          "w": "000 101 101 111 111", "x": "000 101 010 010 101", "y": "000 101 011 001 110",
          "z": "000 111 001 010 111", "(": "010 100 100 100 010", ")": "010 001 001 001 010",
          "/": "001 001 010 100 100", ",": "000 000 000 010 100", ":": "000 010 000 010 000",
          "=": "000 111 000 111 000", "+": "000 010 111 010 000", "×": "000 101 010 101 000",
          "_": "000 000 000 000 111"}
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0))
BLACK, GREY = (0, 0, 0), (200, 200, 200)
SCALE = 2  # font pixels per glyph bit
CHAR_W = 4 * SCALE


def text(canvas: np.ndarray, value: str, top: int, left: int, colour=BLACK) -> None:
    """Draw ``value`` (lower-cased) with the 3×5 font at twice its size, its top-left corner at (top, left)."""
    for k, character in enumerate(value.lower()):
        bits = np.array([[c == "1" for c in row] for row in GLYPHS.get(character, GLYPHS[" "]).split()])
        mask = np.kron(bits, np.ones((SCALE, SCALE), bool))
        x = left + k * CHAR_W
        if x < 0 or top < 0:
            continue
        region = canvas[top:top + mask.shape[0], x:x + mask.shape[1]]
        region[mask[:region.shape[0], :region.shape[1]]] = colour


def _ticks(low: float, high: float) -> list[float]:
    """1, 2, 5 × powers of ten within [low, high]."""
    ticks = []
    for power in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10.0 ** power
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _label(value: float) -> str:
    return f"{value:g}"


def scaling_chart(series: dict, title: str, x_label: str = "batch size", y_label: str = "ms per step",
                  width: int = 900, height: int = 560) -> np.ndarray:
    """An RGB log-log line chart of ``{name: (xs, ys)}`` as a uint8 image, with a legend on the right."""
    points = {name: [(x, y) for x, y in zip(xs, ys) if x > 0 and y > 0 and math.isfinite(y)]
              for name, (xs, ys) in series.items()}
    points = {name: p for name, p in points.items() if p}
    if not points:
        raise ValueError("scaling_chart: there is no positive point to draw")
    xs = [x for p in points.values() for x, _ in p]
    ys = [y for p in points.values() for _, y in p]
    x_low, x_high = math.log(min(xs)), math.log(max(xs))
    y_low, y_high = math.log(min(ys) / 1.15), math.log(max(ys) * 1.15)
    x_high, y_high = max(x_high, x_low + 1e-9), max(y_high, y_low + 1e-9)
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 80, width - 280, 50, height - 60

    def pixel(x, y):
        return (bottom - (math.log(y) - y_low) / (y_high - y_low) * (bottom - top),
                left + (math.log(x) - x_low) / (x_high - x_low) * (right - left))

    text(canvas, title, 12, left)
    for y in _ticks(math.exp(y_low), math.exp(y_high)):
        r = round(pixel(min(xs), y)[0])
        images._draw_line(canvas, (r, left), (r, right), GREY, width=1)
        text(canvas, _label(y), r - 5, left - 10 - CHAR_W * len(_label(y)))
    for x in sorted(set(xs)):
        c = round(pixel(x, math.exp(y_low))[1])
        images._draw_line(canvas, (top, c), (bottom, c), GREY, width=1)
        text(canvas, _label(x), bottom + 10, c - CHAR_W * len(_label(x)) // 2)
    images._draw_line(canvas, (top, left), (bottom, left), BLACK, width=1)
    images._draw_line(canvas, (bottom, left), (bottom, right), BLACK, width=1)
    text(canvas, x_label, bottom + 32, (left + right) // 2 - CHAR_W * len(x_label) // 2)
    text(canvas, y_label, top - 20, 8)
    for k, (name, p) in enumerate(points.items()):
        colour = COLOURS[k % len(COLOURS)]
        pixels = [pixel(x, y) for x, y in sorted(p)]
        for a, b in zip(pixels, pixels[1:]):
            images._draw_line(canvas, a, b, colour)
        for r, c in pixels:
            canvas[max(round(r) - 3, 0):round(r) + 4, max(round(c) - 3, 0):round(c) + 4] = colour
        row = top + 10 + 24 * k
        images._draw_line(canvas, (row + 4, right + 20), (row + 4, right + 44), colour, width=3)
        text(canvas, name, row, right + 52)
    return canvas


def parts_chart(bars: dict, title: str, unit: str = "ms", width: int = 900, height: int = 0) -> np.ndarray:
    """An RGB chart of horizontal stacked bars ``{bar: {part: value}}`` as a uint8 image.

    Every bar stacks its parts in the order of the first bar's parts (parts a bar lacks count 0),
    with a legend of the parts below and each bar's total at its end.
    """
    if not bars:
        raise ValueError("parts_chart: there is no bar to draw")
    parts = list(dict.fromkeys(part for values in bars.values() for part in values))
    total = max(sum(max(v, 0.0) for v in values.values()) for values in bars.values()) or 1.0
    bar_h, gap = 28, 16
    label_w = 10 + CHAR_W * max(len(name) for name in bars)
    legend_rows = len(parts)
    height = height or 60 + len(bars) * (bar_h + gap) + 40 + 22 * legend_rows + 20
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top = label_w + 10, width - 110, 50
    text(canvas, title, 12, 10)
    scale = (right - left) / total
    for k, (name, values) in enumerate(bars.items()):
        row = top + k * (bar_h + gap)
        text(canvas, name, row + bar_h // 2 - 5, 10)
        x = float(left)
        for j, part in enumerate(parts):
            width_px = max(values.get(part, 0.0), 0.0) * scale
            canvas[row:row + bar_h, round(x):round(x + width_px)] = COLOURS[j % len(COLOURS)]
            x += width_px
        label = f"{sum(values.values()):.2f} {unit}"
        text(canvas, label, row + bar_h // 2 - 5, round(x) + 8)
    legend_top = top + len(bars) * (bar_h + gap) + 20
    for j, part in enumerate(parts):
        row = legend_top + 22 * j
        canvas[row:row + 12, 10:34] = COLOURS[j % len(COLOURS)]
        text(canvas, part, row + 1, 44)
    return canvas


def write(path, canvas: np.ndarray):
    """Write ``canvas`` as a PNG with minivae's writer; the path written."""
    return images.write_png(path, canvas)
