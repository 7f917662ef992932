"""Progress on long waits: a live line on a terminal, periodic lines in a log, and the note that
the Numba kernels compile once."""
from __future__ import annotations

import os
import sys
import time

LOG_INTERVAL = 5.0   # seconds between progress lines when the stream is not a terminal
REDRAW_INTERVAL = 0.1


class Progress:
    """Progress on ``stream`` (default stdout).

    On a terminal, ``update`` redraws one live line at most ten times a second, cut to the
    terminal's width so that it never wraps; elsewhere (a log file, a pipe) it prints a permanent
    line at most every ``interval`` seconds (``LOG_INTERVAL``). ``line`` prints a permanent line
    everywhere.
    """

    def __init__(self, stream=None, interval: float | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = LOG_INTERVAL if interval is None else interval
        self.last_draw = time.monotonic() if not self.live else 0.0

    def width(self) -> int:
        """Columns of the terminal the stream writes to (80 if it cannot be told)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return 80

    def update(self, text) -> None:
        """Show ``text()`` when it is due: redraw the live line, or print a line in a log."""
        now = time.monotonic()
        if self.live and now - self.last_draw >= REDRAW_INTERVAL:
            self.stream.write("\r\033[K" + text()[:max(self.width() - 1, 1)])
            self.stream.flush()
            self.last_draw = now
        elif not self.live and now - self.last_draw >= self.interval:
            self.stream.write(text() + "\n")
            self.stream.flush()
            self.last_draw = now

    def line(self, text: str) -> None:
        """Print a permanent line, replacing the live one."""
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()
        if not self.live:
            self.last_draw = time.monotonic()

    def end(self) -> None:
        """Erase the live line, so that what follows starts on a clean line."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def bar(done: int, total: int, width: int = 30) -> str:
    """``[####......] done/total``."""
    filled = width * done // max(total, 1)
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def kernels_need_compiling() -> bool:
    """Whether the Numba kernels have no usable machine code in their on-disk cache yet, so the
    first calls compile them (a few seconds, once). False on the NumPy backend."""
    from .. import kernels
    if kernels.active() != "numba":
        return False
    try:
        return any(not kernel._cache._cache_file._load_index() for kernel in kernels.COMPILED)
    except Exception:  # a Numba version without this cache layout: say nothing rather than guess
        return False


COMPILE_NOTE = "compiling the Numba kernels: a few seconds, once; later runs load them from the cache"
