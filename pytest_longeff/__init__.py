"""pytest-longeff: accuracy vs. efficiency of long-context NLP models, as a pytest plugin."""

from __future__ import annotations

__version__ = "0.1.0"
