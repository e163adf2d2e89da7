"""Fixtures shared by several test files: the shipped network image and the reference board."""

from pathlib import Path

import pytest

from golden import image
from sim.refboard import RefBoard

#: The shipped digits image, the one every hardware test runs unless it builds its own.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "firmware" / "digits"


@pytest.fixture(scope="session")
def shipped_dir() -> Path:
    """Path of the shipped network image (``firmware/digits``)."""
    return SHIPPED_DIR


@pytest.fixture(scope="session")
def shipped():
    """The shipped network image, loaded and validated once: ``(net, manifest)``."""
    return image.load(SHIPPED_DIR)


@pytest.fixture(scope="module")
def refboard():
    """The reference board serving the shipped image on a free local port."""
    board = RefBoard(SHIPPED_DIR)
    board.start()
    yield board
    board.stop()
