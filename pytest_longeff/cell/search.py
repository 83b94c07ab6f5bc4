"""The largest training batch that fits a memory budget, found in as few probes as possible.

Both searches here are pure functions over an injected ``try_batch(batch_size) -> peak_memory_bytes`` callable
that runs real training at that batch (a probe: one step on CUDA, a few on the CPU, ``cell.batch.probe_batch``).
Only out-of-memory errors are caught (they mean "does not fit"); anything else escapes unchanged.
``release()`` is called after every probe so the next one starts from freed memory.

``search_batch_size`` uses the measured peaks. Training memory is very nearly ``a + k * batch`` (weights,
gradients and optimizer state, plus activations that grow with the batch), so measured points predict where the
budget is crossed. Predictions only choose where to probe: every answer is certified by a fit at ``b`` and a
failure at ``b + 1`` (or ``b == max_batch``). Every probe is also kept inside a window that leaves plain
bisection enough probes to finish, which bounds the count at ``2 + ceil(log2(max_batch))`` for any monotone
behaviour, however far from linear. That window is why a failure is sought early: until one is seen, the window
pushes probes towards the top of the range.

``doubling_bisect`` is the classic baseline (double until it fails, then bisect), kept for comparison.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "OutOfMemory",
    "Probe",
    "SearchResult",
    "doubling_bisect",
    "is_oom",
    "search_batch_size",
    "worst_case_probes",
]

# Substrings of RuntimeError messages that mean an allocation failed: the CUDA caching allocator ("CUDA out of
# memory"), raw CUDA ("CUDA error: out of memory"), other backends ("MPS backend out of memory", "XPU out of
# memory"), the CPU allocator, and cuBLAS failing to allocate its workspace, which is an OOM in disguise.
_OOM_MESSAGES: tuple[str, ...] = (
    "out of memory",
    "can't allocate memory",
    "cublas_status_alloc_failed",
)


class OutOfMemory(Exception):
    """Raised by a probe (or translated from a torch / CPU OOM) when a batch does not fit."""


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` means "this batch did not fit in memory" rather than a bug to be reported."""
    if isinstance(exc, (OutOfMemory, MemoryError)):
        return True
    # torch is only consulted when already imported: an exception from torch implies torch is loaded, and
    # importing it here just to classify a ValueError would cost seconds.
    torch = sys.modules.get("torch")
    if torch is not None:
        oom_types = tuple(
            kind
            for kind in (
                getattr(torch, "OutOfMemoryError", None),
                getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None),
            )
            if isinstance(kind, type)
        )
        if oom_types and isinstance(exc, oom_types):
            return True
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        return any(fragment in message for fragment in _OOM_MESSAGES)
    return False


class AtLeast(int):
    """A probe's figure that is a lower bound: ``try_batch`` stopped the probe once its figure passed the budget
    (a high-water mark only grows, so the probe does not fit either way). The search does not fit its memory line
    through such a figure once a size is known to fit; before that it still bounds the answer from above."""


@dataclass(frozen=True)
class Probe:
    """One probe (training at one batch size)."""

    batch_size: int
    """Samples in the step."""
    fits: bool
    """The step completed and its peak stayed within the budget."""
    peak_memory_bytes: int | None
    """Peak memory in bytes, as measured by ``try_batch``; ``None`` when it ran out of memory."""
    lower_bound: bool = False
    """``peak_memory_bytes`` is a lower bound (``try_batch`` returned :class:`AtLeast`)."""

    def to_dict(self) -> dict[str, object]:
        """The probe as a JSON-ready dict."""
        return {"batch_size": self.batch_size, "fits": self.fits, "peak_memory_bytes": self.peak_memory_bytes,
                "lower_bound": self.lower_bound}


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a batch-size search."""

    batch_size: int
    """Largest batch size in ``[1, max_batch]`` that fits; 0 if even batch 1 does not."""
    probes: tuple[Probe, ...]
    """Every probe, in the order run."""
    peak_memory_bytes: int | None
    """Peak memory in bytes of the probe at ``batch_size``; ``None`` when ``batch_size`` is 0."""

    def to_dict(self) -> dict[str, object]:
        """The record's ``batch_search`` fields: ``probes`` is the count (as in the report contract), the
        probes themselves are under ``probe_log``. The caller adds ``source``."""
        return {
            "batch_size": self.batch_size,
            "probes": len(self.probes),
            "peak_memory_bytes": self.peak_memory_bytes,
            "probe_log": [probe.to_dict() for probe in self.probes],
        }


def worst_case_probes(max_batch: int) -> int:
    """Most probes ``search_batch_size`` can need for ``max_batch``: ``2 + ceil(log2(max_batch))``."""
    return 2 + (max_batch - 1).bit_length()


def _run_probe(
    try_batch: Callable[[int], int], release: Callable[[], None], batch_size: int, budget_bytes: int
) -> Probe:
    peak: int | None = None
    lower = False
    try:
        raw = try_batch(batch_size)
        peak, lower = int(raw), isinstance(raw, AtLeast)
    except Exception as exc:
        if not is_oom(exc):
            # A foreign error ends the search as it is; release() is not called because the traceback still
            # pins the step's tensors (nothing could be freed) and a failure inside it would hide this error.
            raise
    # Reached only after the except block has dropped the OOM exception and the frames its traceback held,
    # so the tensors of the failed step are really freeable now.
    release()
    return Probe(batch_size, fits=peak is not None and peak <= budget_bytes, peak_memory_bytes=peak,
                 lower_bound=lower)


def _check_arguments(budget_bytes: int, max_batch: int, start: int) -> None:
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if start < 1:
        raise ValueError(f"start must be >= 1, got {start}")
    if budget_bytes < 1:
        raise ValueError(f"budget_bytes must be >= 1, got {budget_bytes}")


def _result(probes: list[Probe], batch_size: int) -> SearchResult:
    peak = next((p.peak_memory_bytes for p in probes if p.batch_size == batch_size and p.fits), None)
    return SearchResult(batch_size=batch_size, probes=tuple(probes), peak_memory_bytes=peak)


@dataclass(frozen=True)
class _Claim:
    """What the memory model says the answer is."""

    batch_size: int
    """Predicted largest fitting size, already clamped to the sizes still possible."""
    bound: bool
    """Derived from a one-point bound (memory proportional to batch) rather than a two-point line."""


def _model_claim(lo: int, hi: int, peaks: Mapping[int, int], budget: int) -> _Claim | None:
    """Predicted answer from the measured peaks, given that ``lo`` fits (or is 0) and ``hi`` does not.

    Memory is modelled as ``a + k * b`` with ``a >= 0`` (weights and optimizer state cannot be negative).
    Integer arithmetic throughout: byte counts are exact, and a float rounding ``23.999`` down would cost a probe.
    """
    over = [b for b, peak in peaks.items() if peak > budget]
    if lo == 0:
        if not over:
            # Nothing measured yet below the failure: the size just under it is as good a guess as any, and
            # repeated misses turn it into a gallop downwards.
            return _Claim(hi - 1, bound=True)
        u = min(over)
        # For b <= u, a >= 0 gives mem(b) >= peak_u * b / u: nothing above budget * u / peak_u can fit.
        return _Claim(_clamp(budget * u // peaks[u], lo, hi - 1), bound=True)
    p_lo = peaks[lo]
    if over:
        # A measured failure above and a fit below bracket the budget: interpolate between them.
        u = min(over)
        return _Claim(_clamp(lo + (budget - p_lo) * (u - lo) // (peaks[u] - p_lo), lo, hi - 1), bound=False)
    below = [b for b in peaks if b < lo]
    if not below:
        if p_lo <= 0:
            return None
        # For b >= lo, a >= 0 gives mem(b) <= p_lo * b / lo: everything up to budget * lo / p_lo fits. Probing
        # there is safe and gives the longest baseline for the slope that one extra probe can buy.
        return _Claim(_clamp(budget * lo // p_lo, lo, hi - 1), bound=True)
    # Extrapolate along the longest baseline available: measurement noise in the slope shrinks with it.
    v = min(below)
    rise = p_lo - peaks[v]
    if rise <= 0:
        # Memory did not grow with the batch: nothing known limits the size below hi.
        return _Claim(hi - 1, bound=False)
    return _Claim(_clamp(lo + (budget - p_lo) * (lo - v) // rise, lo, hi - 1), bound=False)


# Largest share of a batch-1 training step's memory that is fixed (weights, gradients, optimizer state) rather
# than per-sample, as a fraction. Long-input training sits around 0.3..0.7 (fp32 AdamW keeps 16 bytes per
# parameter); a model above it only makes the first high guess fit, and the search still ends correctly.
_FIXED_SHARE_MAX = (3, 4)


def _upper_estimate(lo: int, p_lo: int, budget: int) -> int:
    """Largest answer consistent with one fit (``p_lo`` bytes at ``lo``) if the fixed share at batch 1 is at most
    ``f = _FIXED_SHARE_MAX``. That share shrinks as the batch grows, so at ``lo`` the per-sample slope is at
    least ``(1 - f) * p_lo / (f + (1 - f) * lo)``: a large ``lo`` (a previous answer as ``start``) gives a tight
    estimate, batch 1 a loose one."""
    num, den = _FIXED_SHARE_MAX
    return lo + (budget - p_lo) * (num + (den - num) * lo) // ((den - num) * p_lo)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


@dataclass(frozen=True)
class _Trend:
    """How the model's claim has been moving: a claim that keeps moving one way means the model is off."""

    claim: _Claim | None = None
    direction: int = 0
    """-1, 0 or +1: the way the last move went."""
    streak: int = 0
    """Moves in a row in ``direction``."""

    def after(self, claim: _Claim | None) -> _Trend:
        if claim is None or self.claim is None or self.claim.bound != claim.bound:
            # The first line through two points is expected to jump away from a one-point bound: not a miss.
            return _Trend(claim)
        move = (claim.batch_size > self.claim.batch_size) - (claim.batch_size < self.claim.batch_size)
        if move == 0:
            return _Trend(claim)
        return _Trend(claim, move, self.streak + 1 if move == self.direction else 1)

    @property
    def step(self) -> int:
        """How far past the claim to probe: doubling with each miss in a row, so that a model off by ``d``
        costs about ``2 * log2(d)`` probes instead of ``d``."""
        return 1 << max(0, self.streak - 1)


def _next_size(
    lo: int, hi: int, max_batch: int, peaks: Mapping[int, int], budget: int, trend: _Trend, reach: int
) -> int:
    """Where to probe next, before the worst-case window is applied. ``reach`` is how many candidates the next
    probe may leave on either side; each probe after it may leave half as many as the one before."""
    claim = trend.claim
    if claim is None:
        return (lo + hi) // 2
    up, down = trend.direction > 0, trend.direction < 0
    if hi > max_batch and lo > 0:
        # No failure seen yet. The worst-case window only lets later probes stray from the middle once an upper
        # bound is known, so the next probe is one expected to fail: just above the predicted answer when a line
        # is known, else just above the most the answer can be if the fixed share of memory is typical (and
        # that failure, if it returns a reading, also gives the slope).
        if claim.bound:
            # Capped so that once it fails, the window still lets the next two probes go to the predicted
            # answer and just above it, whatever that turns out to be (it is at least the one-point bound).
            return min(_upper_estimate(lo, peaks[lo], budget), claim.batch_size + (reach >> 2)) + 1
        return max(claim.batch_size + 1, lo + trend.step if up else 0)
    if claim.batch_size == lo:
        return lo + (trend.step if up else 1)  # the claim "lo is the answer" is checked at lo + 1
    if down:
        return min(claim.batch_size, hi - trend.step)
    if up:
        return max(claim.batch_size, lo + trend.step)
    size = claim.batch_size
    # Certifying the claim takes a fit at it and a failure just above, in either order. Fitting first leaves
    # (claim, hi) to settle, failing first leaves [lo, claim]: when the window is tight, take the order whose
    # leftover the probe after next can still afford.
    if size + 1 < hi and hi - size - 1 > reach >> 1 >= size - lo:
        size += 1
    return size


def search_batch_size(
    try_batch: Callable[[int], int],
    budget_bytes: int,
    *,
    max_batch: int,
    start: int = 1,
    release: Callable[[], None] = lambda: None,
) -> SearchResult:
    """The largest batch size in ``[1, max_batch]`` whose training step fits in ``budget_bytes`` (0 if none).

    ``try_batch(b)`` runs a probe (real training) at batch size ``b`` and returns its peak memory in bytes (an
    :class:`AtLeast` where it stopped once over the budget: a lower bound), or raises
    an out-of-memory error (see ``is_oom``); a size fits iff it did not raise and its peak is at most
    ``budget_bytes``. Any other exception propagates unchanged. ``release()`` runs after every probe. Fitting is
    assumed monotone (if ``b`` fits, so does every smaller size). ``start`` is the first size tried (clamped to
    ``max_batch``); a previous answer for the same model and input length makes a good one.

    No size is probed twice, none outside ``[1, max_batch]``, and never more than
    ``worst_case_probes(max_batch)``. On linear memory curves with at most 3/4 of the batch-1 memory fixed and
    an answer of at most ``max_batch / 16``, from ``start=1``: at most 4 probes when a step over the budget still
    returns its peak (budget below the device's memory), at most 5 when it raises OOM; 2 from a correct
    ``start``. Answers nearer ``max_batch`` leave the worst-case window less room and can cost a few more. Failed
    probes that return lower bounds (:class:`AtLeast`) leave the answer as it is but can cost more probes (each of
    them cheaper): simulated over random linear curves, 3.4 probes a cell against 3.1.
    """
    _check_arguments(budget_bytes, max_batch, start)
    limit = worst_case_probes(max_batch)
    probes: list[Probe] = []
    peaks: dict[int, int] = {}
    bounds: dict[int, int] = {}  # lower-bound figures of failed probes (AtLeast)
    lo, hi = 0, max_batch + 1  # lo fits (or is 0), hi does not (or is past the range)
    trend = _Trend()
    size = min(start, max_batch)
    while True:
        # After this probe, `remaining` more must settle what is left even by plain bisection, so the probe may
        # leave at most 2**remaining candidates on either side. Invariant: hi - lo <= 2**(remaining + 1), which
        # keeps this window non-empty and makes `limit` a hard bound.
        remaining = limit - len(probes) - 1
        reach = 1 << remaining
        size = min(max(size, lo + 1, hi - reach), hi - 1, lo + reach)
        probe = _run_probe(try_batch, release, size, budget_bytes)
        probes.append(probe)
        if probe.peak_memory_bytes is not None:
            (bounds if probe.lower_bound else peaks)[size] = probe.peak_memory_bytes
        if probe.fits:
            lo = size
        else:
            hi = size
        if hi - lo <= 1:
            return _result(probes, lo)
        # A lower bound above the budget still caps the answer while nothing fits (peak_u * b / u <= mem(b)); a
        # line between a fit and a lower bound would be too flat and aim too high.
        trend = trend.after(_model_claim(lo, hi, {**peaks, **bounds} if lo == 0 else peaks, budget_bytes))
        size = _next_size(lo, hi, max_batch, peaks, budget_bytes, trend, reach=reach >> 1)


def doubling_bisect(
    try_batch: Callable[[int], int],
    budget_bytes: int,
    *,
    max_batch: int,
    release: Callable[[], None] = lambda: None,
) -> SearchResult:
    """The classic baseline: try 1, 2, 4, ... (capped at ``max_batch``) until a size fails, then bisect.

    Same contract as ``search_batch_size``; it ignores the measured peaks and needs about ``2*log2(answer)``
    probes.
    """
    _check_arguments(budget_bytes, max_batch, 1)
    probes: list[Probe] = []
    lo, hi = 0, max_batch + 1
    size = 1
    while hi == max_batch + 1 and lo < max_batch:
        probe = _run_probe(try_batch, release, size, budget_bytes)
        probes.append(probe)
        if not probe.fits:
            hi = size
        else:
            lo, size = size, min(2 * size, max_batch)
    while hi - lo > 1:
        size = (lo + hi) // 2
        probe = _run_probe(try_batch, release, size, budget_bytes)
        probes.append(probe)
        if probe.fits:
            lo = size
        else:
            hi = size
    return _result(probes, lo)
