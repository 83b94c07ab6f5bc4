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

#: A counter that went down is undone as a wrap-around only if the energy that implies, spread over the window,
#: stays below this mean power per domain, watts. No socket or DRAM draws 5 kW, while a counter reset (module
#: reload, firmware) read as a wrap would imply most of the ~262 kJ range within the window.
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


class RaplMeter(CounterMeter):
    """Reads Linux powercap RAPL counters (CPU packages and DRAM, microjoules) at window start and stop.

    The counters cover whole sockets, so other processes' work is included. A counter that went down is undone
    as one wrap-around at ``max_energy_range_uj`` when that is plausible (below :data:`RAPL_MAX_PLAUSIBLE_W`
    over the window), else the reading is invalid; a second wrap within one window (a package counter's range
    is typically ~262 kJ, over 20 min at 200 W) cannot be seen.

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

    def _counter_delta(self, index: int, start: int, end: int, time_s: float) -> int | str:
        if end >= start:
            return end - start
        domain = self._domains[index]
        if domain.max_range_uj <= 0:
            return (
                f"RAPL counter {domain.energy_path} went backwards ({start} -> {end} uJ) and its "
                "max_energy_range_uj is unknown, so a wrap-around cannot be told from a reset"
            )
        wrapped_uj = end + domain.max_range_uj - start
        if 0 < wrapped_uj <= RAPL_MAX_PLAUSIBLE_W * time_s * 1e6:
            return wrapped_uj
        implied = f"{wrapped_uj / 1e6 / time_s:.0f} W" if time_s > 0 and wrapped_uj > 0 else "an impossible power"
        return (
            f"RAPL counter {domain.name} went backwards ({start} -> {end} uJ; counter reset?): read as a "
            f"wrap-around it would mean {implied} over {time_s:.3f} s, above the {RAPL_MAX_PLAUSIBLE_W:g} W "
            "plausible for one domain"
        )

    def _valid_note(self) -> str:
        names = ", ".join(d.name for d in self._domains)
        return f"RAPL counters ({names}); socket-wide, includes other processes"

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> dict[str, object]:
        """The measured domains' names and the counters' update period (``counter_update_period_s``, seconds)."""
        return {"rapl_domains": [d.name for d in self._domains], **self.describe_period()}
