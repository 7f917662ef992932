"""The captured step's finiteness check of the gradients (``minivae.kernels.checks.all_finite``) on both
backends, and the engine's float32-in-float64 reductions (``accumulated``) against NumPy's np.sum and
np.mean, bit for bit."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivae import kernels
from minivae.engine.tensor import accumulated
from minivae.kernels.checks import all_finite

FLOATS = (np.float32, np.float64)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@given(dtype=st.sampled_from(FLOATS), size=st.integers(1, 700), data=st.data(),
       bad=st.sampled_from([np.inf, -np.inf, np.nan]))
def test_a_non_finite_value_anywhere_is_caught(backend, dtype, size, data, bad):
    """Every position: the first, the last, and those of the vector loop's tail (sizes up to 700)."""
    values = data.draw(hnp.arrays(dtype, size, elements=st.floats(allow_nan=False, allow_infinity=False,
                                                                  width=np.finfo(dtype).bits)))
    position = data.draw(st.integers(0, size - 1))
    with kernels.use(backend):
        assert all_finite(values)
        values[position] = bad
        assert not all_finite(values)
        values[-1] = bad
        assert not all_finite(values)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_huge_finite_values_are_not_flagged(backend, dtype):
    """The largest finite values of either sign, many of them: a check that summed the values (or their
    squares) before multiplying by 0 would overflow to inf and flag them."""
    largest = np.finfo(dtype).max
    values = np.full(652_824, largest, dtype)
    values[1::2] = -largest
    values[::7] = np.finfo(dtype).smallest_subnormal
    with kernels.use(backend):
        assert all_finite(values)
        assert all_finite(values.reshape(-1, 8))          # any shape
        assert all_finite(values[::3])                    # not contiguous: the reference checks it
        values[-1] = np.nan
        assert not all_finite(values) and not all_finite(values.reshape(-1, 8))


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.dtype(">f4")])
def test_other_float_dtypes_get_the_same_answer_on_either_backend(backend, dtype):
    """The compiled pass is for float32 and float64; a float16, long double or byte-swapped array is checked by the
    reference, not handed to a kernel that cannot type it."""
    values = np.arange(9, dtype=dtype)
    with kernels.use(backend):
        assert all_finite(values)
        values[4] = np.nan
        assert not all_finite(values)


def _former(reduction, x, axis, keepdims):
    """The reduction as the engine took it before its sums and means called np.add.reduce directly."""
    if x.dtype.kind == "f" and x.dtype.itemsize < 8:
        return reduction(x, axis=axis, keepdims=keepdims, dtype=np.float64).astype(x.dtype, copy=False)
    return reduction(x, axis=axis, keepdims=keepdims)


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64, np.float16, np.bool_, np.int32]),
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9), keepdims=st.booleans(),
       reduction=st.sampled_from([np.sum, np.mean]))
def test_sums_and_means_are_numpys_bit_for_bit(data, dtype, shape, keepdims, reduction):
    x = data.draw(hnp.arrays(dtype, shape))
    ndim = len(shape)
    axes = [None] + list(range(-ndim, ndim)) + ([(0, ndim - 1)] if ndim > 1 else [])
    axis = data.draw(st.sampled_from(axes))
    with warnings.catch_warnings(record=True) as former_warnings:
        warnings.simplefilter("always")
        expected = _former(reduction, x, axis, keepdims)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = accumulated(reduction, x, axis, keepdims)
    assert type(got) is type(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.asarray(got).tobytes() == np.asarray(expected).tobytes()
    assert [str(w.message) for w in caught] == [str(w.message) for w in former_warnings]  # an empty mean: NaN
