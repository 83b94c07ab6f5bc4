"""Root conftest: marks the project root for pytest.

The pytest-longeff plugin itself is loaded through its ``pytest11`` entry point (``pip install -e .``), so every
test suite of the environment gets it without listing it here (listing it too would register it twice).
"""
