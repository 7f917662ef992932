"""Images: the PNG writer (decoded here with zlib), digit grids, their upscaling, the reconstruction
pairs and the quantile function of the latent manifold."""
import struct
import zlib
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from minivae.figures import (DIGIT_SCALE, PNG_SIGNATURE, digit_grid, encode_png, manifold_grid, normal_quantile,
                             png_problem, reconstruction_grid, to_uint8, upscale, write_png)
from minivae.figures.images import PAIR_GAP


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


def test_digit_grid_upscales_every_pixel_to_a_block():
    digits = np.random.default_rng(0).random((5, 784))
    small, large = digit_grid(digits, columns=3), digit_grid(digits, columns=3, scale=DIGIT_SCALE)
    assert large.shape == (DIGIT_SCALE * small.shape[0], DIGIT_SCALE * small.shape[1]) and DIGIT_SCALE >= 2
    for dr in range(DIGIT_SCALE):
        for dc in range(DIGIT_SCALE):
            np.testing.assert_array_equal(large[dr::DIGIT_SCALE, dc::DIGIT_SCALE], small)
    with pytest.raises(ValueError, match="upscale"):
        digit_grid(digits, scale=0)


def test_reconstruction_grid_puts_each_row_of_originals_above_its_reconstructions():
    originals, reconstructions = np.full((16, 784), 1.0), np.full((16, 784), 0.25)
    grid = reconstruction_grid(originals, reconstructions, columns=8)
    pair = 2 * 30 + 2  # two rows of 28-pixel digits with 2 pixels of padding
    assert grid.shape == (2 * pair + PAIR_GAP, 8 * 30 + 2)
    centres = [top + 2 + 30 * r + 14 for top in (0, pair + PAIR_GAP) for r in range(2)]
    assert [grid[row, 16] for row in centres] == [255, 64, 255, 64]  # original, reconstruction, twice
    assert (grid[pair:pair + PAIR_GAP] == 255).all() and (grid[pair - 2:pair] == 128).all()  # the white gap
    np.testing.assert_array_equal(reconstruction_grid(originals, reconstructions, columns=8, scale=DIGIT_SCALE),
                                  upscale(grid, DIGIT_SCALE))
    for bad in ((originals[:5], reconstructions[:5], 8), (originals, reconstructions[:8], 8),
                (originals[:0], reconstructions[:0], 8), (originals, reconstructions, 0)):
        with pytest.raises(ValueError, match="reconstruction_grid"):
            reconstruction_grid(*bad)


def test_png_problem_names_what_is_wrong(tmp_path):
    content = encode_png(np.zeros((4, 4), np.uint8))
    path = write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    assert png_problem(path) is None
    path.write_bytes(content[:len(content) // 2])
    assert "truncated" in png_problem(path)
    path.write_bytes(content[:20] + bytes([content[20] ^ 1]) + content[21:])
    assert "bad CRC" in png_problem(path)
    assert "cannot be read" in png_problem(tmp_path / "missing.png")


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
