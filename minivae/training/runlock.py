"""Run folders: one writer per folder, an advisory lock that a crashed process cannot leave
stuck, and fresh default folder names.

The lock is ``flock`` on the file ``<folder>/.lock``, which also holds the holder's process id,
so the process that finds the folder taken can name the holder. The kernel releases an ``flock``
when its process ends, however it ends (a crash, SIGKILL), so a dead holder never blocks a folder:
the next run takes the lock at once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..files import make_directory

LOCK_NAME = ".lock"


class RunLockedError(OSError):
    """Another live process holds the run folder."""


class RunLock:
    """``with RunLock(folder):`` holds ``folder`` for this process, or raises ``RunLockedError``.

    The folder must exist. On release the lock file is removed; the lock is taken on the file
    only if it is still the one at the path, so removing it never lets two processes in.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunLockedError(f"{self.folder} is in use by process {holder} (another minivae train); "
                                     f"wait for it to end, or choose another --out") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file as we opened it: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def new_run_folder(parent, stamp: str) -> Path:
    """Create and return a fresh folder ``parent/stamp`` (or ``stamp-2``, ``stamp-3``, ...).

    ``mkdir`` without ``exist_ok`` is atomic, so runs started in the same second, in parallel or
    one after another, each get a folder of their own.
    """
    parent = make_directory(parent, "the folder of runs")
    for n in range(1, 10_000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            return make_directory(folder, "the run folder", exist_ok=False)
        except FileExistsError:
            continue
    raise FileExistsError(f"new_run_folder: {parent} already holds 9,999 runs named {stamp}; pass --out")
