"""The version, written here only: pyproject.toml reads it, outputs and bundles record it."""

__version__ = "0.1.0"
