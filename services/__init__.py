"""Cerdas: the live backend of Indonesia's smart-city and SPBE evaluations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cerdas")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
