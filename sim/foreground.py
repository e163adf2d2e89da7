"""Serving a board from a command line until it stops or Ctrl-C (``python -m sim.board``,
``python -m sim.refboard``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["run_in_foreground"]


def _forever() -> None:
    while True:
        time.sleep(1)


def run_in_foreground(name: str, start: Callable[[], str], stop: Callable[[], object], *,
                      wait: Callable[[], None] = _forever,
                      errors: tuple[type[BaseException], ...] = (OSError, ValueError)) -> int:
    """Start a board, print the line ``start`` returns (its URL), serve until ``wait``
    returns or Ctrl-C, then ``stop`` it; returns the command's exit status.

    Parameters
    ----------
    name : str
        The command's name, for ``<name>: error: ...`` on stderr.
    start : callable
        Starts the board; returns the line to print on stdout (the URL a client opens).
    stop : callable
        Stops the board; always called once ``start`` has returned.
    wait : callable, optional
        Blocks while the board serves (by default until Ctrl-C).
    errors : tuple of exception types
        What ``start`` raises when the board cannot start: reported, exit status 1.
    """
    try:
        line = start()
    except errors as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    print(line, flush=True)
    try:
        wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
    return 0
