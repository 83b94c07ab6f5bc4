"""Which kind of device a meter is asked to measure, parsed from the cell's device string."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceTarget:
    """A parsed device string."""

    kind: str
    """"cpu", "cuda" or "other" (anything no built-in meter knows, e.g. "mps")."""
    index: int | None
    """The CUDA ordinal for kind "cuda" ("cuda" alone is 0); None otherwise."""


def parse_device(device: str) -> DeviceTarget:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (case and surrounding blanks ignored); anything else is "other"."""
    text = device.strip().lower()
    if text == "cpu":
        return DeviceTarget("cpu", None)
    if text == "cuda":
        return DeviceTarget("cuda", 0)
    if text.startswith("cuda:") and text[5:].isdigit():
        return DeviceTarget("cuda", int(text[5:]))
    return DeviceTarget("other", None)
