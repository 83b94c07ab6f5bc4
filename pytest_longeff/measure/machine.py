"""Machine and software facts: one list, used by the report header, the batch-size cache key, the gate's
comparability check and the terminal."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

#: Facts that must match for two runs' figures to be comparable (the gate refuses a baseline otherwise). ``device``
#: compares its kind only: ``cuda:0`` and ``cuda:1`` of one machine are the same kind of device.
COMPARABLE_KEYS: tuple[str, ...] = ("device", "accelerator", "cpu", "cpu_threads", "torch", "transformers")
#: Facts that identify a machine and software stack for cached batch sizes (the host name too: a cache may travel).
CACHE_KEYS: tuple[str, ...] = ("host", "cpu", "device", "torch", "transformers", "accelerator")


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def light_facts(device: str) -> dict[str, Any]:
    """Facts known without importing torch, so a report has them from its first write (the session's fuller facts
    replace them once a cell runs)."""
    return {"device": device, "cpu": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": _version("torch"), "transformers": _version("transformers")}


def session_facts(device: str, meter: Mapping[str, Any] | None = None,
                  idle: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Facts of a running session: the device in use, torch's thread count, the accelerator, the meter's own
    description and the idle baseline."""
    import torch
    import transformers

    facts: dict[str, Any] = {**light_facts(device), "cpu_threads": torch.get_num_threads(),
                             "torch": torch.__version__, "transformers": transformers.__version__}
    facts = {k: facts[k] for k in ("device", "cpu", "cpu_threads", "platform", "python", "torch", "transformers")}
    if device.startswith("cuda"):
        facts["accelerator"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
    if meter is not None:
        facts["meter"] = dict(meter)
    if idle is not None:
        facts["idle"] = dict(idle)
    return facts


def machine_key(facts: Mapping[str, Any]) -> str:
    """A short digest identifying a machine and software stack, for caches keyed by machine."""
    parts = [platform.node() if key == "host" else str(facts.get(key)) for key in CACHE_KEYS]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def mismatch(baseline: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Why two reports' machines are not comparable, or None."""
    diffs = []
    for key in COMPARABLE_KEYS:
        a, b = baseline.get(key), current.get(key)
        if key == "device":
            a, b = str(a).split(":")[0], str(b).split(":")[0]
        if a != b:
            diffs.append(f"{key} {a!r} vs {b!r}")
    return "; ".join(diffs) or None


def describe(facts: Mapping[str, Any], meter_method: str | None, meter_error: str | None = None) -> list[str]:
    """Machine facts for the terminal: what ran where, and which meter (``meter_method``) measured it."""
    accel = f" ({facts['accelerator']})" if facts.get("accelerator") else ""
    lines = [(f"device {facts.get('device')}{accel}; CPU {facts.get('cpu')}, {facts.get('cpu_threads')} torch "
              f"threads; torch {facts.get('torch')}, transformers {facts.get('transformers')}")]
    if meter_error is not None:
        return [*lines, f"energy meter unavailable: {meter_error}"]
    if meter_method is None:
        return lines
    described = facts.get("meter")
    described = described if isinstance(described, Mapping) else {}
    meter = f"energy meter {meter_method}"
    idle = facts.get("idle")
    if isinstance(idle, Mapping):
        meter += (f", idle {idle['idle_power_w']:.1f} W over {idle['idle_time_s']:.1f} s" if idle.get("idle_valid")
                  and idle.get("idle_power_w") is not None else f", idle not measured ({idle.get('idle_note')})")
    lines.append(meter)
    for gpu in described.get("gpus", []):
        lines.append(f"GPU {gpu.get('nvml_index')}: {gpu.get('name')}, driver {described.get('driver_version')}, "
                     f"power limit {gpu.get('power_limit_w')} W, SM clock {gpu.get('sm_clock_mhz')} MHz")
    return lines
