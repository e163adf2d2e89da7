"""Argument types shared by the command lines of ``hw/`` and ``sim/`` (``argparse``).

A count such as ``--lanes`` must be a whole number of at least 1: 0 or a negative value is a
usage error (exit 2, with the option named), never silently replaced by a default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["positive_int", "positive_float", "port_number", "seed_list"]


def _number(text: str, kind: type, accept: Callable[[float], bool], wanted: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1, for ``argparse``'s ``type=``."""
    return _number(text, int, lambda v: v >= 1, "at least 1")


def positive_float(text: str) -> float:
    """A number above 0, for ``argparse``'s ``type=``."""
    return _number(text, float, lambda v: v > 0, "above 0")


def port_number(text: str) -> int:
    """A TCP port, 0 (pick a free one) to 65535, for ``argparse``'s ``type=``."""
    return _number(text, int, lambda v: 0 <= v <= 65535, "0 to 65535")


def seed_list(text: str) -> tuple[int, ...]:
    """Placement seeds, ``1,7``: whole numbers 0 to 2**31 - 1 (nextpnr's ``int``), each once,
    for ``argparse``."""
    seeds = tuple(_number(part.strip(), int, lambda v: 0 <= v < 2**31, "0 to 2147483647")
                  for part in text.split(","))
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return seeds
