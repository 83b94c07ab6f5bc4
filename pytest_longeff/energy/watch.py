"""A daemon thread that runs a check every few seconds while a window is open: RAPL's wrap-around count, NVML's
process and throttling checks between a window's edges."""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Name prefix of every watch thread (tests look for leftovers by it).
WATCH_THREAD_PREFIX = "longeff-watch"


class WindowWatch:
    """Calls ``poll`` every ``period_s`` seconds on a daemon thread, from :meth:`start` until :meth:`stop`.

    One instance serves one window: a window's state lives in what ``poll`` closes over, so a thread that outlives
    its join (a hung driver call) can only touch its own, finished window. An exception from ``poll`` ends the
    thread and is kept in :attr:`error`; it never escapes.
    """

    def __init__(self, poll: Callable[[], None], period_s: float, name: str) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s!r}")
        self._poll = poll
        self._period_s = period_s
        self._name = f"{WATCH_THREAD_PREFIX}-{name}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._error: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def error(self) -> str | None:
        """The exception that ended the thread, as text; None while it runs or after a clean stop."""
        with self._lock:
            return self._error

    def start(self) -> None:
        """Start the thread; its first poll comes one period from now."""
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most a few seconds, against a hung driver). Safe to repeat."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - a failure ends the watch and is kept, never raised
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}"
                return
