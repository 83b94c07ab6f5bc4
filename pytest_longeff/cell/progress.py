r"""Progress of a long cell on the terminal: step, budget, elapsed and estimated remaining time.

Written only through pytest's terminal reporter. On a TTY one line is rewritten in place (``\r``) at most
``1 / min_interval_s`` times a second and erased when the cell ends; elsewhere (CI logs) a full line is written every
``line_interval_s`` seconds, and only under ``-v``. Nothing at all under ``-q``, or without a terminal reporter
(xdist workers, ``-p no:terminal``).

The training loop calls a :class:`Progress` as ``on_step(step, planned_steps_or_None, elapsed_s)`` after each
optimiser step; the call costs a clock read unless a line is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import pytest


class TerminalLike(Protocol):
    """The part of pytest's ``TerminalReporter`` progress uses."""

    def write(self, content: str, *, flush: bool = False) -> None:
        """Write ``content`` without a newline."""

    def write_line(self, line: str) -> None:
        """Write ``line`` and end it with a newline."""

    def ensure_newline(self) -> None:
        """Start a new line unless already at the start of one."""


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def describe(label: str, step: int, planned: int | None, elapsed_s: float) -> str:
    """``label: step 12/40, 1m03s elapsed, ~2m27s left`` (no estimate without a planned step count)."""
    if planned:
        left = elapsed_s / step * (planned - step) if step > 0 else None
        return (f"{label}: step {step}/{planned}, {_duration(elapsed_s)} elapsed" +
                (f", ~{_duration(left)} left" if left is not None else ""))
    return f"{label}: step {step}, {_duration(elapsed_s)} elapsed"


class Progress:
    """A throttled progress line for one cell at a time; call it as the training loop's ``on_step``."""

    def __init__(self, terminal: TerminalLike, *, tty: bool, clock: Callable[[], float] = time.monotonic,
                 min_interval_s: float = 0.5, line_interval_s: float = 30.0) -> None:
        self.terminal, self.tty, self.clock = terminal, tty, clock
        self.interval_s = min_interval_s if tty else max(min_interval_s, line_interval_s)
        self.label = ""
        self._last: float | None = None
        self._shown = 0  # width of the line on screen (TTY)

    @classmethod
    def for_config(cls, config: pytest.Config) -> Progress | None:
        """A progress writer for this session, or None where progress must stay quiet (``-q``; not a TTY
        without ``-v``; no terminal reporter)."""
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        verbosity = config.get_verbosity()
        if terminal is None or verbosity < 0:
            return None
        tty = bool(getattr(terminal, "isatty", False))  # pytest 9: a CallableBool
        if not tty and verbosity < 1:
            return None
        return cls(terminal, tty=tty)

    def start(self, label: str) -> None:
        """A new cell begins (its first line waits for the first interval)."""
        self.finish()
        self.label, self._last = label, self.clock()

    def __call__(self, step: int, planned: int | None, elapsed_s: float) -> None:
        """Show training progress at ``step``, at most once per interval (rewritten in place on a TTY)."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        text = describe(self.label or "training", step, planned, elapsed_s)
        if not self.tty:
            self.terminal.write_line(f"longeff: {text}")
            return
        if not self._shown:
            self.terminal.ensure_newline()  # pytest then starts its next output on a fresh line
        self.terminal.write("\r" + text.ljust(self._shown), flush=True)
        self._shown = max(self._shown, len(text))

    def finish(self) -> None:
        """Erase the progress line (TTY), leaving the terminal as pytest left it."""
        if self._shown:
            self.terminal.write("\r" + " " * self._shown + "\r", flush=True)
            self._shown = 0
        self._last = None

