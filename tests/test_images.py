"""Figures: the PNG writer (decoded here with zlib), digit grids, the quantile function, the loss plot,
the labelled digit grids and the variance plot."""
import struct
import zlib
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from minivae.figures import (CHAR_HEIGHT, CURVE_COLOURS, DIGIT_SCALE, PNG_SIGNATURE, digit_grid, encode_png,
                             labelled_reconstructions, labelled_samples, loss_plot, manifold_grid, normal_quantile,
                             reconstruction_grid, to_uint8, upscale, variance_plot_png, write_png)
from minivae.study.estimators import GRADIENT_ESTIMATORS
from minivae.study.variance import VarianceRow


def decode_png(content: bytes) -> np.ndarray:
    """The pixels of an 8-bit, non-interlaced grayscale or RGB PNG with unfiltered rows, checking every CRC."""
    assert content[:8] == PNG_SIGNATURE
    position, chunks = 8, []
    while position < len(content):
        length, kind = struct.unpack(">I4s", content[position:position + 8])
        body = content[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", content[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        position += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0) and colour_type in (0, 2)
    channels = 1 if colour_type == 0 else 3
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type 0 on every row
    pixels = rows[:, 1:]
    return pixels if channels == 1 else pixels.reshape(height, width, 3)


@given(image=st.one_of(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12)),
                       hnp.arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3)))))
def test_png_round_trip(image):
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)


def test_write_png_writes_the_encoding(tmp_path):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write_png(tmp_path / "a.png", image)
    assert path.read_bytes() == encode_png(image)


@pytest.mark.parametrize("image", [np.zeros((2, 2)), np.zeros((2, 2, 4), np.uint8), np.zeros((0, 3), np.uint8),
                                   np.zeros(5, np.uint8)])
def test_encode_png_rejects_what_it_cannot_write(image):
    with pytest.raises(ValueError, match="encode_png"):
        encode_png(image)


def test_to_uint8_clips_and_rounds():
    assert to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])).tolist() == [0, 0, 128, 255, 255]


def test_digit_grid_places_digits_row_by_row_with_padding():
    digits = np.stack([np.full(784, k / 10) for k in range(1, 6)])
    grid = digit_grid(digits, columns=3, padding=2, background=0.0)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    for k in range(5):
        top, left = 2 + (k // 3) * 30, 2 + (k % 3) * 30
        assert (grid[top:top + 28, left:left + 28] == to_uint8(np.array(digits[k, 0]))).all()
    assert grid[:2].max() == 0 and grid[32:, 62:].max() == 0  # padding, and the empty sixth cell


def test_reconstruction_grid_puts_each_row_of_originals_above_its_reconstructions():
    originals, reconstructions = np.full((16, 784), 1.0), np.full((16, 784), 0.25)
    grid = reconstruction_grid(originals, reconstructions, columns=8)
    cell_rows = [grid[2 + 30 * r + 14, 16] for r in range(4)]
    assert cell_rows == [255, 64, 255, 64]
    with pytest.raises(ValueError, match="multiple of columns"):
        reconstruction_grid(originals[:5], reconstructions[:5], columns=8)


@given(st.floats(1e-300, 1 - 1e-16, exclude_min=False))
def test_normal_quantile_inverts_the_normal_cdf(p):
    assert normal_quantile(p) == pytest.approx(NormalDist().inv_cdf(p), rel=1e-9, abs=1e-9)


def test_normal_quantile_is_odd_and_checks_its_domain():
    assert normal_quantile(0.5) == 0.0
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, rel=1e-14)
    assert normal_quantile(0.1) == pytest.approx(-normal_quantile(0.9), rel=1e-12)
    for p in (0.0, 1.0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="normal_quantile"):
            normal_quantile(p)


def test_manifold_grid_decodes_a_grid_of_normal_quantiles():
    seen = []

    def decode(z):
        seen.append(z)
        return np.repeat((z[:, :1] > 0).astype(np.float32), 784, axis=1)  # white where z1 > 0

    grid = manifold_grid(decode, steps=4)
    (z,) = seen
    assert z.shape == (16, 2) and z.dtype == np.float32
    quantiles = [NormalDist().inv_cdf((i + 0.5) / 4) for i in range(4)]
    np.testing.assert_allclose(z[:4, 1], quantiles, rtol=1e-6)      # columns: z2 rising to the right
    np.testing.assert_allclose(z[::4, 0], quantiles[::-1], rtol=1e-6)  # rows: z1 falling downwards
    assert grid.shape == (112, 112) and grid[:56].min() == 255 and grid[56:].max() == 0


def test_loss_plot_draws_both_curves_in_their_colours():
    image = loss_plot({"train": ([1, 2, 3], [200.0, 150.0, 120.0]), "test": ([1, 2, 3], [190.0, float("nan"), 130.0])})
    assert image.shape == (400, 640, 3) and image.dtype == np.uint8
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert set(CURVE_COLOURS) <= colours and (0, 0, 0) in colours and (255, 255, 255) in colours
    blue = np.argwhere((image == CURVE_COLOURS[0]).all(axis=2))
    assert blue[:, 1].min() < 120 and blue[:, 1].max() > 560  # the train curve spans the x axis
    single = loss_plot({"train": ([1], [100.0])})
    assert (single == CURVE_COLOURS[0]).all(axis=2).any()
    decode_png(encode_png(image))


def test_loss_plot_needs_a_finite_point():
    with pytest.raises(ValueError, match="no finite point"):
        loss_plot({"train": ([1], [float("nan")])})


# --------------------------------------------------------------------------------------- labels a person can read
def ink(image: np.ndarray, rows=slice(None), columns=slice(None)) -> int:
    """The number of dark pixels (below 100 in every channel) in a region of a decoded PNG."""
    region = image[rows, columns]
    dark = region < 100
    return int(dark.sum() if region.ndim == 2 else dark.all(axis=-1).sum())


def axes(image: np.ndarray) -> tuple[int, int, int]:
    """(the y axis' column, its top row, the x axis' row): the longest black column and row."""
    black = (image == 0).all(axis=2)
    column, row = int(black.sum(axis=0).argmax()), int(black.sum(axis=1).argmax())
    return column, int(np.argmax(black[:, column])), row


CURVES = {"train": ([1, 2, 3], [200.0, 150.0, 120.0]), "held-out": ([1, 2, 3], [190.0, 140.0, 130.0])}


def test_the_loss_plot_has_a_title_axis_labels_and_ticks():
    image = decode_png(encode_png(loss_plot(CURVES, title="loss per epoch")))
    bare = decode_png(encode_png(loss_plot(CURVES, title="", x_label="", y_label="")))
    height, width = image.shape[:2]
    axis_column, axis_top, axis_row = axes(image)
    title = (slice(0, axis_top - 2 * CHAR_HEIGHT), slice(width // 3, 2 * width // 3))   # above the legend
    x_label = (slice(height - 2 * CHAR_HEIGHT, height), slice(axis_column + 1, width))
    y_label = (slice(axis_top, axis_row), slice(0, 2 * CHAR_HEIGHT))
    for region in (title, x_label, y_label):
        assert ink(image, *region) > 20 and ink(bare, *region) == 0
    y_ticks = ink(image, slice(axis_top, axis_row), slice(2 * CHAR_HEIGHT + 2, axis_column - 7))
    x_ticks = ink(image, slice(axis_row + 8, axis_row + 8 + 2 * CHAR_HEIGHT), slice(axis_column + 1, width))
    assert y_ticks > 50 and x_ticks > 10


def test_huge_values_keep_their_tick_labels_left_of_the_axis():
    for values in ([1e30, 150.0, 120.0], [-3.5e12, 2.0, 1.0], [123456.789, 123456.7891, 123456.78]):
        image = decode_png(encode_png(loss_plot({"train": ([1, 2, 3], values)})))
        axis_column, axis_top, axis_row = axes(image)
        black = (image == 0).all(axis=2)
        assert not black[axis_top:axis_row, axis_column + 1:].any(), values  # no text inside the plot
        assert ink(image, slice(axis_top, axis_row), slice(2 * CHAR_HEIGHT + 2, axis_column - 7)) > 20, values


def test_the_reconstruction_figure_names_its_rows_and_is_upscaled():
    rng = np.random.default_rng(0)
    originals = rng.random((16, 784))
    image = decode_png(encode_png(labelled_reconstructions(originals, originals / 2, columns=8)))
    grid = reconstruction_grid(originals, originals / 2, columns=8)
    assert image.shape[0] == DIGIT_SCALE * grid.shape[0] and DIGIT_SCALE >= 2
    margin = image.shape[1] - DIGIT_SCALE * grid.shape[1]
    np.testing.assert_array_equal(image[:, margin:], upscale(grid, DIGIT_SCALE))
    cell = 30 * DIGIT_SCALE
    labels = [ink(image, slice(r * cell, (r + 1) * cell), slice(0, margin)) for r in range(4)]
    assert all(count > 20 for count in labels)
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1]  # two different names


def test_the_samples_figure_has_a_title_and_is_upscaled():
    digits = np.random.default_rng(1).random((16, 784))
    image = decode_png(encode_png(labelled_samples(digits, columns=4)))
    grid = upscale(digit_grid(digits, columns=4), DIGIT_SCALE)
    band = image.shape[0] - grid.shape[0]
    np.testing.assert_array_equal(image[band:, :grid.shape[1]], grid)
    assert ink(image, slice(0, band)) > 50


def test_the_variance_plot_png_has_a_title_a_legend_panels_and_axis_labels():
    rows = [VarianceRow(state, estimator, s, 10.0 ** (3 - i) / s, 1.0) for state in ("init", "trained")
            for i, estimator in enumerate(GRADIENT_ESTIMATORS) for s in (1, 10, 100)]
    image = decode_png(encode_png(variance_plot_png(rows, GRADIENT_ESTIMATORS)))
    height, width = image.shape[:2]
    assert image.shape == (400, 760, 3)
    assert ink(image, slice(0, CHAR_HEIGHT + 8), slice(width // 4, 3 * width // 4)) > 50      # the title
    assert ink(image, slice(height - CHAR_HEIGHT - 10, height)) > 50                           # the x label
    assert ink(image, slice(height // 4, 3 * height // 4), slice(0, 2 * CHAR_HEIGHT)) > 30   # the y label
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert {(214, 39, 40), (255, 127, 14), (31, 119, 180), (44, 160, 44)} <= colours       # four estimators
    with pytest.raises(ValueError, match="no rows"):
        variance_plot_png([], GRADIENT_ESTIMATORS)
