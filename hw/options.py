"""Argument types shared by the command lines of ``hw/`` and ``sim/`` (``argparse``).

A count such as ``--lanes`` must be a whole number of at least 1: 0 or a negative value is a
usage error (exit 2, with the option named), never silently replaced by a default.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float", "port_number"]


def positive_int(text: str) -> int:
    """An integer of at least 1, for ``argparse``'s ``type=``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0, for ``argparse``'s ``type=``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535, for ``argparse``'s ``type=``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, not {value}")
    return value
