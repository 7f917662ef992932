"""Fault injection for tests that run ``python -m minivae`` as a real process.

With this folder first on PYTHONPATH and ``MINIVAE_FAULT_ENOSPC=NAME`` in the environment, every
file opened for writing whose name (or, for a file descriptor, the path it refers to) contains
NAME fails like a full disk: its first write stores half the bytes and raises OSError(ENOSPC),
as the operating system's write would once the space runs out. With ``MINIVAE_FAULT_HANG=NAME``
instead, the first write stores half the bytes and then hangs (a minute), so that a test can kill
the process in the middle of that write.
"""
import builtins
import errno
import io
import os
import time

_NAME = os.environ.get("MINIVAE_FAULT_ENOSPC") or os.environ.get("MINIVAE_FAULT_HANG")
_HANG = bool(os.environ.get("MINIVAE_FAULT_HANG"))


class _FullDisk:
    """A file that writes half of the first buffer it is given, then fails for lack of space."""

    def __init__(self, file):
        self._file = file

    def write(self, data):
        self._file.write(bytes(data)[:len(data) // 2])
        self._file.flush()
        if _HANG:
            time.sleep(60)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False

    def __iter__(self):
        return iter(self._file)


def _target(file, name):
    if isinstance(name, int):
        try:
            return os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            return ""
    return os.fspath(name) if isinstance(name, (str, bytes, os.PathLike)) else ""


def _wrap(open_function):
    def opened(file, mode="r", *args, **kwargs):
        handle = open_function(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax+") and _NAME in str(_target(handle, file)):
            return _FullDisk(handle)
        return handle
    return opened


if _NAME:
    builtins.open = io.open = _wrap(io.open)
    _fdopen = os.fdopen
    os.fdopen = lambda fd, mode="r", *args, **kwargs: _wrap(lambda f, m, *a, **k: _fdopen(f, m, *a, **k))(
        fd, mode, *args, **kwargs)
