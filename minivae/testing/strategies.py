"""Hypothesis strategies of shapes, arrays and Tensors for testing code built on minivae.

Shapes, well-conditioned float arrays, arrays restricted to an op's domain (positive, away from
zero, pairwise distinct, pairs that never meet) and Tensors ready for ``minivae.gradcheck``.
Every ``shape`` argument is a tuple or a strategy of tuples; every array strategy draws float64
values and casts them to ``dtype`` (float32 or float64).
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..checks import FLOAT_DTYPES
from ..engine import Tensor


def float_dtypes() -> st.SearchStrategy:
    """float32 or float64."""
    return st.sampled_from(FLOAT_DTYPES)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Array shapes: tuples of ``min_dims``..``max_dims`` sides, each ``min_side``..``max_side``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(count: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                         max_side: int = 4) -> st.SearchStrategy:
    """Tuples of ``count`` shapes that broadcast together (pairs for count=2, triples for 3)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=count, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda b: b.input_shapes)


def matmul_shapes(max_batch_dims: int = 2, max_side: int = 4) -> st.SearchStrategy:
    """Pairs of shapes ``(…, n, k)`` and ``(…, k, m)`` for ``@``, their batch dimensions broadcasting."""
    return hnp.mutually_broadcastable_shapes(signature="(n,k),(k,m)->(n,m)", max_dims=max_batch_dims,
                                             max_side=max_side).map(lambda b: b.input_shapes)


def reduction_axes(ndim: int) -> st.SearchStrategy:
    """An ``axis`` argument for an array of ``ndim`` dimensions: None, one axis, or a tuple of distinct axes.

    Axes may be negative.
    """
    one_axis = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
    return st.one_of(st.none(), one_axis, hnp.valid_tuple_axes(ndim, min_size=1) if ndim else st.nothing())


def float_arrays(shape, dtype=np.float64, low: float = -3.0, high: float = 3.0) -> st.SearchStrategy:
    """Well-conditioned arrays: finite values in [low, high], no subnormals."""
    return _arrays(shape, dtype, st.floats(low, high, allow_subnormal=False))


def positive_arrays(shape, dtype=np.float64, low: float = 0.2, high: float = 3.0) -> st.SearchStrategy:
    """Arrays with values in [low, high], low > 0: the domain of log, sqrt and a power's base."""
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be positive, got {low}")
    return float_arrays(shape, dtype, low, high)


def nonzero_arrays(shape, dtype=np.float64, margin: float = 0.2, high: float = 3.0) -> st.SearchStrategy:
    """Arrays with margin ≤ |value| ≤ high: safe divisors, and away from the kink of relu and abs at 0."""
    magnitude = st.floats(margin, high, allow_subnormal=False)
    return _arrays(shape, dtype, st.one_of(magnitude, magnitude.map(lambda v: -v)))


def distinct_arrays(shape, dtype=np.float64, margin: float = 0.2) -> st.SearchStrategy:
    """Arrays whose elements are pairwise at least ``margin`` apart, so that max has no ties.

    The elements are a shuffled grid of spacing 2·margin, each moved by at most 0.4·margin, so that
    the gaps (≥ 1.2·margin) survive rounding to float32.
    """
    dtype = _float_dtype(dtype)

    def build(shape):
        size = math.prod(shape)
        order = st.permutations(range(size)).map(lambda p: np.reshape(np.array(p, dtype=np.float64), shape))
        jitter = hnp.arrays(np.float64, shape, elements=st.floats(-0.4, 0.4))
        return st.tuples(order, jitter).map(
            lambda pair: ((2 * pair[0] - size + pair[1]) * margin).astype(dtype))
    return _as_strategy(shape).flatmap(build)


def separated_pairs(shape_pair, dtype=np.float64, margin: float = 0.2) -> st.SearchStrategy:
    """Pairs (x, y) of the two given broadcastable shapes with |x − y| ≥ margin everywhere once broadcast.

    Where x and y meet, maximum and minimum have a kink; these pairs stay clear of it. x lies on
    the even and y on the odd points of a grid of spacing 2·margin, each moved by at most 0.4·margin,
    so that the gaps (≥ 1.2·margin) survive rounding to float32.
    """
    dtype = _float_dtype(dtype)

    def build(shapes):
        def on_grid(shape, parity):
            steps = hnp.arrays(np.int64, shape, elements=st.integers(-3, 3))
            jitter = hnp.arrays(np.float64, shape, elements=st.floats(-0.2, 0.2))
            return st.tuples(steps, jitter).map(
                lambda pair: (2 * margin * (2 * pair[0] + parity + pair[1])).astype(dtype))
        return st.tuples(on_grid(shapes[0], 0), on_grid(shapes[1], 1))
    return _as_strategy(shape_pair).flatmap(build)


def tensors(arrays: st.SearchStrategy, requires_grad: bool = True, name: str | None = None) -> st.SearchStrategy:
    """Tensors wrapping the arrays drawn from ``arrays``, requiring grad by default (for gradcheck)."""
    return arrays.map(lambda a: Tensor(a, requires_grad=requires_grad, name=name))


def _arrays(shape, dtype, elements: st.SearchStrategy) -> st.SearchStrategy:
    """float64 arrays of ``shape`` with the given elements, cast to ``dtype``."""
    dtype = _float_dtype(dtype)
    return hnp.arrays(np.float64, _as_strategy(shape), elements=elements).map(lambda a: a.astype(dtype))


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"minivae.testing: dtype must be float32 or float64, got {dtype}")
    return dtype


def _as_strategy(value) -> st.SearchStrategy:
    """``value`` itself if it is a strategy, else a strategy that always gives ``value``."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)
