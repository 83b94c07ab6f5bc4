"""Measurement windows: time, peak memory and energy over a named stretch of work.

A window synchronises the device at both edges (so queued GPU work is charged to the window that issued it), reads
every meter at both edges, and records peak memory: CUDA's peak allocated bytes on a GPU, the process high-water
mark (``VmHWM``, reset at window start) on the CPU.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_longeff.energy import EnergyReading, Meter


def synchronize(device: str) -> None:
    """Wait for all work queued on ``device``."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the process's resident-set high-water mark (Linux ``clear_refs``); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_memory(device: str, full: bool = True) -> None:
    """Give freed memory back (between batch-size probes and cells), so one probe's garbage is not the next's.

    ``full=False`` collects only the young generations: a probe's tensors go with their last reference, and cyclic
    garbage from the probe (e.g. an out-of-memory error's frames) is young, while a full collection walks every
    object of transformers and torch (about 0.2 s each time, a tenth of a default run when done per probe)."""
    gc.collect() if full else gc.collect(1)
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    else:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


# glibc's malloc raises its mmap threshold after large frees, then serves later tensors from a heap it keeps, and
# the heap keeps part of what is freed. One fixed threshold for the whole session switches that dynamic behaviour
# off, so every window and every batch-size probe of every run measures under the same allocator settings. 32 MiB
# is glibc's own ceiling, and what every report so far was measured under: a lower one makes resident memory follow
# live tensors more closely, at a cost in page faults that depends on the shapes (4 MiB against 32 MiB, median
# paired step-time ratio per tiny cell: 0.94-1.26, and up to 1.6 with 128-position labels;
# ``benchmarks/allocator_cost.py``). The probes measure under the same setting, several steps long
# (``cell.batch.CPU_PROBE_STEPS``), so they see the heap training keeps.
_M_MMAP_THRESHOLD = -3
RELAXED_MMAP_THRESHOLD = 32 * 1024 * 1024
GLIBC_DEFAULT_MMAP_THRESHOLD = 128 * 1024


def settle_cpu_allocator(device: str) -> None:
    """Fix malloc's mmap threshold at :data:`RELAXED_MMAP_THRESHOLD` for the whole session, so every window and
    every probe of every run is measured under the same allocator settings (setting it once switches glibc's
    dynamic threshold off)."""
    if device.startswith("cuda"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, RELAXED_MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


def restore_cpu_allocator(device: str) -> None:
    """Put malloc's mmap threshold back to glibc's default (128 KiB) when a session ends. glibc offers no way
    back to its dynamic threshold once it was set, so the default value is the closest restore there is."""
    if device.startswith("cuda"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, GLIBC_DEFAULT_MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


class MemoryProbe:
    """Peak memory of a stretch of work on one device.

    CPU: ``VmHWM - VmRSS at start``, i.e. the most memory the work added on top of what the process held before;
    callers add the model's weights (already resident), so the figure means what CUDA's does. CUDA:
    ``max_memory_allocated`` (weights included).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.method = ("cuda_max_memory_allocated" if device.startswith("cuda") else
                       "process_vmhwm_delta_plus_weights (approximate: the heap may reuse memory freed earlier)")
        self._start_rss = 0
        self._hwm_reset = False
        self.reserved: int | None = None
        """CUDA: the window's peak reserved bytes (what the allocator held from the driver), after :meth:`stop`."""

    def start(self) -> None:
        """Begin the window: reset the peak counter (CUDA) or the high-water mark and note the resident set (CPU)."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._hwm_reset = _reset_hwm()
        self._start_rss = _proc_status_bytes("VmRSS") or 0

    def so_far(self) -> int | None:
        """Peak bytes added since :meth:`start`, read without ending the window (None where it cannot be told)."""
        if self.device.startswith("cuda"):
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _proc_status_bytes("VmHWM")
        return None if hwm is None or not self._hwm_reset else max(hwm - self._start_rss, 0)

    def stop(self) -> int | None:
        """Peak bytes added during the window, or None when this system cannot tell."""
        if self.device.startswith("cuda"):
            import torch

            self.reserved = int(torch.cuda.max_memory_reserved(self.device))
            return int(torch.cuda.max_memory_allocated(self.device))
        return self.so_far()


@dataclass
class WindowResult:
    """What one window measured. ``time_s`` is wall time from ``perf_counter_ns`` between synchronised edges."""

    name: str
    time_s: float = 0.0
    peak_memory_bytes: int | None = None
    memory_method: str = ""
    energy: EnergyReading | None = None
    peak_reserved_bytes: int | None = None
    """CUDA only: the caching allocator's peak reserved bytes (what a per-process memory fraction caps)."""
    peak_so_far: Callable[[], int | None] = field(default=lambda: None, repr=False, compare=False)
    """The peak bytes added so far (as ``peak_memory_bytes`` will read at the window's end; after it, that)."""


@contextmanager
def window(name: str, device: str, meter: Meter | None) -> Iterator[WindowResult]:
    """Measure the body: ``with window("train", "cpu", meter) as w: ...``; ``w`` is filled in on exit, also when
    the body raises (so a failure still reports what was measured up to it)."""
    result = WindowResult(name)
    probe = MemoryProbe(device)
    result.memory_method = probe.method
    result.peak_so_far = probe.so_far
    synchronize(device)
    probe.start()
    if meter is not None:
        meter.start()
    t0 = time.perf_counter_ns()
    try:
        yield result
    finally:
        try:
            synchronize(device)
            result.time_s = (time.perf_counter_ns() - t0) / 1e9
        finally:  # the meter's reading threads end whatever happened, also when the device sync raised
            if meter is not None:
                result.energy = meter.stop()
        result.peak_memory_bytes = probe.stop()
        result.peak_reserved_bytes = probe.reserved
        result.peak_so_far = lambda: result.peak_memory_bytes  # closed: the window's figure
