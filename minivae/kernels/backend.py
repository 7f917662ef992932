"""Which implementation the model's functions run: the fused Numba kernels or the reference.

"reference" runs every function of ``minivae.functions`` as its composition of engine
primitives; "numba" (the default) runs the fused implementations registered beneath them. The
backend of every thread starts as the environment variable ``MINIVAE_KERNELS`` says ("numba" or
"reference"), and ``use`` switches it for one thread, like the gradient mode (``no_grad``): as a
plain call or as a ``with`` block.

Numba is a speed-up, not a condition: where it cannot be imported, the reference runs, and a
warning says so once.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading
import warnings

import numpy as np

try:
    import numba
except ImportError:  # the references do everything
    numba = None

BACKENDS = ("numba", "reference")
ENV_VAR = "MINIVAE_KERNELS"

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes the compiled kernels take (native byte order); other arrays run the reference composition."""

FAST_ARITHMETIC = ("nsz", "arcp", "contract", "reassoc")
"""fastmath flags that let LLVM reorder and fuse arithmetic (and so vectorize reductions) while
keeping inf/NaN semantics and exact library calls: no ``nnan``, ``ninf`` or ``afn``."""


def _checked(backend, where: str) -> str:
    if backend not in BACKENDS:
        hint = " (its former name; the backend is now called 'reference')" if backend == "numpy" else ""
        raise ValueError(f"{where}: unknown kernel backend {backend!r}{hint}; expected one of {', '.join(BACKENDS)}")
    return backend


def _numba_available(where: str) -> bool:
    if numba is None:
        warnings.warn(f"{where}: Numba is not installed, so the fast kernels are off; every function runs its "
                      f"reference (pip install numba to turn them on)", RuntimeWarning, stacklevel=3)
    return numba is not None


def _from_environment() -> tuple[str, str | None]:
    """The backend ``MINIVAE_KERNELS`` names ("numba" when unset), and the error to raise when it names none."""
    name = os.environ.get(ENV_VAR, "numba").strip() or "numba"
    try:
        name = _checked(name, f"{ENV_VAR} (environment)")
    except ValueError as err:
        return "numba", str(err)
    if name == "numba" and not _numba_available("minivae.kernels"):
        name = "reference"
    return name, None


_DEFAULT, ENVIRONMENT_ERROR = _from_environment()
"""Every thread starts on the environment's backend. An unknown name is no error at import (so that
every command can report it on one line): ``active()`` raises it, at the first function called."""


class _Backend(threading.local):
    """The backend of each thread (None until ``use`` chooses one: the environment's)."""
    name = None


_backend = _Backend()


def active() -> str:
    """The backend in use now in this thread: "numba" or "reference".

    Raises ValueError when ``MINIVAE_KERNELS`` names no backend and none was chosen with ``use``.
    """
    name = _backend.name
    if name is None:
        if ENVIRONMENT_ERROR is not None:
            raise ValueError(ENVIRONMENT_ERROR)
        return _DEFAULT
    return name


class use:
    """Run on ``backend`` ("numba" or "reference") in this thread, as ``set_grad_enabled`` sets the gradient mode.

    Called, it switches at once (``minivae.kernels.use("reference")``); used as ``with use(backend):``,
    it restores the previous backend at the end of the block. Raises ValueError for an unknown name,
    RuntimeError for "numba" where Numba is not installed.
    """

    def __init__(self, backend: str):
        backend = _checked(backend, "minivae.kernels.use")
        if backend == "numba" and numba is None:
            raise RuntimeError("minivae.kernels.use: the numba backend needs Numba, which is not installed")
        self.previous = _backend.name
        _backend.name = backend

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _backend.name = self.previous
        return False


def jit(fastmath=False):
    """``numba.njit`` with the kernels' common options.

    ``cache=True`` keeps the machine code on disk, so a new process does not compile again;
    ``error_model="numpy"`` lets a float division be a plain (vectorizable) instruction;
    ``nogil`` lets other Python threads run meanwhile. No ``parallel=True``: on two cores the
    compiled kernels' threads and OpenBLAS's threads oversubscribe them (see benchmarks/README.md).
    """
    if numba is None:
        return lambda function: function  # never called: the references run instead
    return numba.njit(cache=True, nogil=True, error_model="numpy",
                      fastmath=set(fastmath) if isinstance(fastmath, tuple) else fastmath)


_HEAP_SET = False


def keep_freed_arrays_in_heap() -> bool:
    """Ask glibc's malloc to keep arrays below 64 MiB in its heap, and freed memory up to 256 MiB, for the
    rest of the process: a step that frees and allocates the same multi-megabyte arrays every time
    (S × batch × 784 logits and their gradient) then reuses the same pages instead of having the
    kernel map, zero and fault in fresh ones (3,408 page faults and about a fifth of the step at
    batch 128, S = 10; see benchmarks/README.md). The resident memory stays near its peak instead
    of shrinking between steps. Once per process; elsewhere than glibc, nothing. Whether it is set.
    """
    global _HEAP_SET
    if not _HEAP_SET and sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3
            _HEAP_SET = bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(libc.mallopt(m_trim_threshold,
                                                                                             256 << 20))
        except (OSError, AttributeError):
            pass
    return _HEAP_SET
