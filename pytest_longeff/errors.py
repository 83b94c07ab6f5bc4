"""pytest-longeff's exceptions and warnings: one base for everything the plugin raises on purpose, and a
``pytest.PytestWarning`` subclass so ``-W`` filters work and pytest's warnings summary shows them."""

from __future__ import annotations

import pytest


class LongeffError(Exception):
    """Base of every error pytest-longeff raises on purpose; its message says what was wrong and how to fix it."""


class CellSkip(LongeffError):
    """The cell cannot run here (e.g. it does not fit the memory budget even at batch 1): reported as skipped."""


class CellUnavailable(LongeffError):
    """The cell cannot be measured as asked (e.g. the requested energy meter does not work on this machine)."""


class DataError(LongeffError):
    """A task's data is missing or malformed; the message names the file (and line)."""


class CheckpointError(LongeffError):
    """A checkpoint the package ships is missing or damaged: the cell fails with a message naming the file and the
    way out (reinstall the package, or run with random weights)."""


class NoCheckpoint(CellSkip):
    """No pretrained checkpoint exists for this (family, size)."""


class LongeffWarning(pytest.PytestWarning):
    """Something measured less well than asked (e.g. a fallback meter); filter with ``-W``."""
