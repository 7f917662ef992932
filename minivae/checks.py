"""Argument checks every layer above the engine shares: random generators, counts, float dtypes and tensors.

Each check either returns the value in the form its caller works with or raises a one-line
TypeError naming the owner and the argument, so that a wrong argument fails where it is passed.
"""
from __future__ import annotations

import numpy as np

from .engine import Tensor


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    """A ``np.random.Generator`` from a Generator (returned as is), an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"{name}: expected a np.random.Generator, an int seed or None, got {type(rng).__name__}")


def is_positive_int(value) -> bool:
    """Whether ``value`` is an int (not a bool) of at least 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes a model is built in: float32 to train, float64 to check (NumPy's generators draw no other)."""


def float_dtype(dtype, name: str) -> np.dtype:
    """``dtype`` as float32 or float64, or a TypeError naming ``name`` and the supported dtypes."""
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked is None or checked not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype must be float32 or float64, got {getattr(checked, 'name', repr(dtype))}")
    return checked


def as_float_tensor(value, owner: str, name: str, dtype=None) -> Tensor:
    """``value`` (a Tensor or an array) as a floating-point Tensor, of ``dtype`` if given; no casts."""
    tensor = value if isinstance(value, Tensor) else Tensor(value)
    if tensor.dtype.kind != "f":
        raise TypeError(f"{owner}: {name} must be floating-point, got dtype {tensor.dtype}")
    if dtype is not None and tensor.dtype != dtype:
        raise TypeError(f"{owner}: {name} has dtype {tensor.dtype}, expected {np.dtype(dtype)}; "
                        f"convert it explicitly with .astype")
    return tensor
