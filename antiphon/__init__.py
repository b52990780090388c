"""Antiphon: a real-time MIDI co-improviser.

The repository keeps its parts side by side (``daemon/``, ``training/``, ``exported_models/``);
``pyproject.toml`` maps them into this one namespace, so an installed Antiphon is
``antiphon.daemon`` (the runtime), ``antiphon.training`` (PyTorch, an extra) and
``antiphon.exported_models`` (the shipped models, package data), and nothing else.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("antiphon")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
