"""The RAPL meter: Linux powercap energy counters of the CPU packages and DRAM."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_longeff.energy.base import CounterMeter, CounterReadError

DEFAULT_RAPL_ROOT = "/sys/class/powercap"

#: How to make RAPL counters readable without running the whole benchmark as root; recent kernels restrict them
#: to root since the PLATYPUS side channel (CVE-2020-8694).
RAPL_PERMISSION_HINT = (
    "make the counters readable with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*/intel-rapl:*/energy_uj` (resets at reboot) or run as root"
)

#: The most power one domain can plausibly draw, watts. A counter that went down between two reads is undone as a
#: wrap-around only if the energy that implies, spread over the time between the reads, stays below it: no socket
#: or DRAM draws 5 kW, while a counter reset (module reload, firmware) read as a wrap would imply most of the
#: ~262 kJ range. It also sets how often a window's counters are read (:func:`rapl_poll_period_s`).
RAPL_MAX_PLAUSIBLE_W = 5000.0


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL energy counter in sysfs."""

    name: str
    """The domain's ``name`` file, e.g. "package-0" or "dram"."""
    energy_path: Path
    """Its ``energy_uj`` file (microjoules)."""
    max_range_uj: int
    """Its ``max_energy_range_uj``, microjoules: the counter wraps to 0 after this many; 0 when unknown."""
    power_limit_w: float | None = None
    """The highest of its ``constraint_*_power_limit_uw`` limits, watts (the uncertainty's power ceiling);
    None when it has none (DRAM) or they are unreadable."""


def find_rapl_domains(root: str | os.PathLike[str]) -> list[RaplDomain]:
    """Package domains (``intel-rapl:N``) and their ``dram`` subdomains under a powercap root.

    ``psys`` (whole platform, overlapping the packages) and ``core``/``uncore`` (inside the package) are left
    out so that nothing is counted twice. Files are only listed here, not read.
    """
    base = Path(root)
    domains: list[RaplDomain] = []
    if not base.is_dir():
        return domains
    for top in sorted(base.glob("intel-rapl:*")):
        if top.name.count(":") != 1 or not top.is_dir():
            continue  # Subdomains also appear at the root as links on some kernels; take them via their parent.
        name = _read_name(top)
        if name == "psys":
            continue
        domains.append(_domain(top, name))
        for sub in sorted(top.glob("intel-rapl:*:*")):
            if sub.is_dir() and _read_name(sub) == "dram":
                domains.append(_domain(sub, "dram"))
    return domains


def _read_name(path: Path) -> str:
    try:
        return (path / "name").read_text().strip()
    except OSError:
        return path.name


def _domain(path: Path, name: str) -> RaplDomain:
    try:
        max_range = int((path / "max_energy_range_uj").read_text().strip())
    except (OSError, ValueError):
        max_range = 0  # Unknown range: a decrease cannot be undone and is reported instead.
    limits: list[float] = []
    for limit_file in sorted(path.glob("constraint_*_power_limit_uw")):
        try:
            limits.append(int(limit_file.read_text().strip()) / 1e6)
        except (OSError, ValueError):
            continue
    limit = max(limits) if limits and max(limits) > 0 else None
    return RaplDomain(name=name, energy_path=path / "energy_uj", max_range_uj=max_range, power_limit_w=limit)


def rapl_poll_period_s(domains: Sequence[RaplDomain]) -> float | None:
    """Seconds between reads inside a window: half the shortest time in which a domain could draw its whole range
    at :data:`RAPL_MAX_PLAUSIBLE_W` (about 6.6 s with a typical 65.7 kJ DRAM range, 26 s for a package alone), so
    at most one wrap-around falls between two reads even if one is late; None when no range is known (a decrease
    is then refused, not undone)."""
    ranges = [d.max_range_uj for d in domains if d.max_range_uj > 0]
    if not ranges:
        return None
    return min(ranges) / 1e6 / RAPL_MAX_PLAUSIBLE_W / 2.0


class RaplMeter(CounterMeter):
    """Reads Linux powercap RAPL counters (CPU packages and DRAM, microjoules) at window start and stop, and in
    between often enough to count every wrap-around.

    The counters cover whole sockets, so other processes' work is included. A counter wraps to 0 after
    ``max_energy_range_uj`` (a package's ~262 kJ take 20-30 min at 150-200 W), so while a window is open a
    daemon thread reads them every :func:`rapl_poll_period_s` seconds: in that time no domain can draw its
    whole range even at :data:`RAPL_MAX_PLAUSIBLE_W`, so each step between two reads holds at most one
    wrap-around, which is undone. A decrease that would need more than that power is a reset, and two reads so
    far apart that a whole range could have passed between them (a starved thread) leave the wrap count
    unknown: both make the reading invalid, as does a decrease in a domain whose range is unknown.

    Uncertainty as in :class:`CounterMeter`: the update period (about 1 ms) is measured when the meter is made
    (at most 50 ms); the power ceiling is the sum over domains of their highest RAPL power limit, with
    :data:`RAPL_MAX_PLAUSIBLE_W` for a domain without one (DRAM).
    """

    method = "rapl"
    units_per_joule = 1e6
    read_error_prefix = "RAPL read failed"
    still_note = "RAPL counters did not move over {time_s:.3f} s"
    assumed_period_s = 0.001
    period_probe_s = 0.05

    def __init__(
        self,
        domains: Sequence[RaplDomain],
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        align: bool = False,
    ) -> None:
        super().__init__(clock, sleep, align)
        self._domains = list(domains)

    def _power_ceiling_w(self) -> float | None:
        return sum(d.power_limit_w or RAPL_MAX_PLAUSIBLE_W for d in self._domains)

    def _read_counters(self) -> list[int]:
        try:
            return [int(d.energy_path.read_text().strip()) for d in self._domains]
        except (OSError, ValueError) as exc:
            raise CounterReadError(str(exc)) from exc

    def _poll_period_s(self) -> float | None:
        return rapl_poll_period_s(self._domains)

    def _counter_delta(self, index: int, start: int, end: int, elapsed_s: float) -> int | str:
        domain = self._domains[index]
        if domain.max_range_uj <= 0:
            if end >= start:
                return end - start
            return (
                f"RAPL counter {domain.energy_path} went backwards ({start} -> {end} uJ) and its "
                "max_energy_range_uj is unknown, so a wrap-around cannot be told from a reset"
            )
        most_uj = RAPL_MAX_PLAUSIBLE_W * elapsed_s * 1e6
        if most_uj >= domain.max_range_uj:
            return (
                f"RAPL counter {domain.name} was not read for {elapsed_s:.1f} s: at up to "
                f"{RAPL_MAX_PLAUSIBLE_W:g} W it could have wrapped around unseen in that time, so its energy is "
                "unknown (reading thread starved?)"
            )
        if end >= start:
            return end - start
        wrapped_uj = end + domain.max_range_uj - start
        if 0 < wrapped_uj <= most_uj:
            return wrapped_uj
        implied = f"{wrapped_uj / 1e6 / elapsed_s:.0f} W" if elapsed_s > 0 and wrapped_uj > 0 else "an impossible power"
        return (
            f"RAPL counter {domain.name} went backwards ({start} -> {end} uJ; counter reset?): read as a "
            f"wrap-around it would mean {implied} over {elapsed_s:.3f} s, above the {RAPL_MAX_PLAUSIBLE_W:g} W "
            "plausible for one domain"
        )

    def _valid_note(self) -> str:
        names = ", ".join(d.name for d in self._domains)
        return f"RAPL counters ({names}); socket-wide, includes other processes"

    def describe(self) -> dict[str, object]:
        """The measured domains' names and the counters' update period (``counter_update_period_s``, seconds)."""
        return {"rapl_domains": [d.name for d in self._domains], **self.describe_period()}
