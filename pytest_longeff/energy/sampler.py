"""A background thread that samples a power source at a fixed rate; the NVML power meter and the legacy figure
use it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

#: Default rate of the power-sampling thread. 20 Hz is well above NVML's 10 Hz refresh, so no update is missed,
#: and cheap enough (one driver call per 50 ms) not to perturb the workload.
DEFAULT_SAMPLE_HZ = 20.0


class PowerSampler:
    """Calls ``read_power_w`` on a daemon thread at ``sample_hz`` and keeps ``(time_s, power_w)`` samples.

    Separate from NVML so that the sampling loop can be measured with a stand-in power source (see
    ``benchmarks/meter_overhead.py``) and tested without a driver. An exception from the power source ends the
    sampling and is kept in :attr:`error`; it never escapes the thread.
    """

    def __init__(
        self,
        read_power_w: Callable[[], float],
        sample_hz: float = DEFAULT_SAMPLE_HZ,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not sample_hz > 0 or math.isinf(sample_hz):
            raise ValueError(f"sample_hz must be a positive finite number, got {sample_hz!r}")
        self._read = read_power_w
        self.period_s = 1.0 / sample_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float]] = []
        self._error: str | None = None
        self._cpu_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def error(self) -> str | None:
        """The first error raised by the power source since :meth:`start`, as text."""
        with self._lock:
            return self._error

    @property
    def cpu_time_s(self) -> float:
        """CPU time the sampling thread itself used in its last run, seconds (complete after :meth:`stop`)."""
        with self._lock:
            return self._cpu_s

    def samples(self) -> list[tuple[float, float]]:
        """A copy of the samples taken since :meth:`start`."""
        with self._lock:
            return list(self._samples)

    def sample_once(self) -> bool:
        """Take one sample on the calling thread; False (and :attr:`error` set) if the source failed."""
        return self._sample(None)

    def _sample(self, stop: threading.Event | None) -> bool:
        before = self._clock()
        try:
            power_w = float(self._read())
        except Exception as exc:  # noqa: BLE001 - any failure of the source ends the trace; it is reported
            with self._lock:
                if self._error is None:
                    self._error = f"{type(exc).__name__}: {exc}"
            return False
        # The driver call takes a little time; stamp the sample at its middle.
        stamp = (before + self._clock()) / 2.0
        with self._lock:
            if stop is not None and stop.is_set():
                # A thread from an earlier window that outlived its join (hung driver) must not add to this one.
                return False
            self._samples.append((stamp, power_w))
        return True

    def start(self) -> None:
        """Clear the trace, take one sample now, and start the thread."""
        self.stop()
        with self._lock:
            self._samples = []
            self._error = None
            self._cpu_s = 0.0
        self._stop = threading.Event()
        if not self.sample_once():
            return
        thread = threading.Thread(target=self._run, args=(self._stop,), name="longeff-power-sampler", daemon=True)
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; safe to call when not running."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # The loop waits on the event, so it wakes at once; the timeout only guards against a hung driver.
            thread.join(timeout=max(1.0, 10 * self.period_s))

    def _run(self, stop: threading.Event) -> None:
        try:
            # Schedule against absolute deadlines so the rate does not drift by the cost of each read.
            next_t = time.perf_counter() + self.period_s
            while not stop.wait(max(0.0, next_t - time.perf_counter())):
                if not self._sample(stop):
                    return
                next_t += self.period_s
                now = time.perf_counter()
                if next_t < now:
                    # Fell behind (starved thread): resume the cadence from now instead of sampling in a burst.
                    next_t = now + self.period_s
        finally:
            cpu_s = time.thread_time()
            with self._lock:
                if stop is self._stop:  # not a thread of an earlier window
                    self._cpu_s = cpu_s
