"""pytest hooks, options and fixtures of pytest-longeff (being written)."""
