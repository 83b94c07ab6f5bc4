"""The package's version, importable without the package's facade."""

__version__ = "0.1.0"
