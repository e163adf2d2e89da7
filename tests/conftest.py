"""Fixtures shared by several test files."""

from pathlib import Path

import pytest

from sim.refboard import RefBoard

SHIPPED = Path(__file__).resolve().parent.parent / "firmware" / "digits"


@pytest.fixture(scope="module")
def refboard():
    """The reference board serving the shipped image on a free local port."""
    board = RefBoard(SHIPPED)
    board.start()
    yield board
    board.stop()
