"""Which implementation the model's functions run: the fused Numba kernels or the reference.

"reference" runs every function of ``minivae.functions`` as its composition of engine
primitives; "numba" (the default) runs the fused implementations registered beneath them. The
backend is read once, at import, from the environment variable ``MINIVAE_KERNELS`` ("numba" or
"reference"; "numpy" is accepted for "reference"), and can be switched at run time with ``use``.
The switch is global to the process (not per thread).

Numba is a speed-up, not a condition: where it cannot be imported, the reference runs, and a
warning says so once.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import warnings

try:
    import numba
except ImportError:  # the references do everything
    numba = None

BACKENDS = ("numba", "reference")
ALIASES = {"numpy": "reference"}
ENV_VAR = "MINIVAE_KERNELS"

FAST_ARITHMETIC = ("nsz", "arcp", "contract", "reassoc")
"""fastmath flags that let LLVM reorder and fuse arithmetic (and so vectorize reductions) while
keeping inf/NaN semantics and exact library calls: no ``nnan``, ``ninf`` or ``afn``."""


def _checked(backend: str, where: str) -> str:
    backend = ALIASES.get(backend, backend)
    if backend not in BACKENDS:
        raise ValueError(f"{where}: unknown kernel backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def _numba_available(where: str) -> bool:
    if numba is None:
        warnings.warn(f"{where}: Numba is not installed, so the fast kernels are off; every function runs its "
                      f"reference (pip install numba to turn them on)", RuntimeWarning, stacklevel=3)
    return numba is not None


_active = _checked(os.environ.get(ENV_VAR, "numba").strip().lower() or "numba", f"{ENV_VAR} (environment)")
if _active == "numba" and not _numba_available("minivae.kernels"):
    _active = "reference"


def active() -> str:
    """The backend in use now: "numba" or "reference"."""
    return _active


@contextlib.contextmanager
def use(backend: str):
    """Run on ``backend`` ("numba", or "reference", alias "numpy") inside the ``with`` block."""
    global _active
    backend = _checked(backend, "minivae.kernels.use")
    if backend == "numba" and numba is None:
        raise RuntimeError("minivae.kernels.use: the numba backend needs Numba, which is not installed")
    previous, _active = _active, backend
    try:
        yield
    finally:
        _active = previous


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
