"""Whether every value of an array is finite, in one vectorized pass: the captured step's check of the
gradients before any parameter changes.

The compiled kernel adds up ``g · 0`` over the array in the array's dtype: each term is 0 (or -0) for a
finite ``g``, however large, and NaN for ±inf or NaN (∞ · 0 is NaN), and a NaN term makes the sum NaN
whatever comes after it. So the sum is 0 exactly when every value is finite; no term can overflow, and
the additions may be reordered (``reassoc``, which lets LLVM keep several vector accumulators) without
changing that, since a sum of zeros is zero in any order. The reference is ``np.isfinite(a).all()``.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .backend import DTYPES, FAST_ARITHMETIC, jit


@jit(fastmath=FAST_ARITHMETIC)
def _zero_sum(a):
    """Σ a[i] · 0 over a 1-d array, in its dtype: 0 when every value is finite, NaN otherwise."""
    zero = a.dtype.type(0)  # not the int 0: float32 times an int would be float64 in Numba
    total = zero
    for i in range(a.shape[0]):
        total += a[i] * zero
    return total


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of the float array ``a`` (float32 or float64, any shape) is finite.

    With the "numba" backend a contiguous float32 or float64 array is checked by the compiled one-pass
    kernel; otherwise (another dtype, such as float16, or a non-contiguous array), and with the "reference"
    backend, by ``np.isfinite(a).all()``. The answer is the same either way.
    """
    if backend.active() == "numba" and a.flags.c_contiguous and a.dtype in DTYPES:
        return bool(_zero_sum(a.reshape(-1)) == 0)
    return bool(np.isfinite(a).all())
