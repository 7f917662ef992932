"""What the commands of ``minivae`` share: the usage error, the exit statuses and the argument types of their flags."""
from __future__ import annotations

import argparse
import math


EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EXIT_SIGNAL_BASE = 128   # a command stopped by signal N exits with 128 + N: 130 for SIGINT, 143 for SIGTERM


class UsageError(Exception):
    """The command was asked something it cannot do as asked (exit status 2)."""


def _number_type(convert, low, inclusive: bool, description: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not (value >= low if inclusive else value > low) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value
    return parse


positive_int = _number_type(int, 1, True, "an integer >= 1")
non_negative_int = _number_type(int, 0, True, "an integer >= 0")
positive_float = _number_type(float, 0.0, False, "a number > 0")
