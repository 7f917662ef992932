"""The ``minivae`` command line: ``main`` and ``build_parser`` (``command``), one module per command
(``train``, ``evaluate``, ``sample``, ``export``, ``download``, ``estimators``), and the argument types,
usage error and exit statuses they share (``arguments``)."""
from .command import build_parser, main

__all__ = ["build_parser", "main"]
