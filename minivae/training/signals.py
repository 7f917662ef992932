"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM are deferred to the loop's next consistent point."""
from __future__ import annotations

import signal
import threading


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredInterrupt:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (``kill``, schedulers, containers) only set
    ``requested`` and ``signal``: the loop stops at its next consistent point. Signal handlers
    belong to the main thread; elsewhere this does nothing."""

    def __enter__(self):
        self.requested, self.signal, self.previous = False, None, {}
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self.previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True
        self.signal = self.signal or signal.Signals(signum).name

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False
