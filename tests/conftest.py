"""Fixtures shared by several test files: the shipped network image, the reference board and a
peer that answers with a line and closes (as the virtual board does to a second client)."""

import socket
import threading
import time
from pathlib import Path

import pytest

from firmware import DIGITS_IMAGE
from golden import image
from sim.refboard import RefBoard

#: The MNIST IDX files the tests and benchmarks use when present (the product never needs them).
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
#: The shipped digits image, the one every hardware test runs unless it builds its own.
SHIPPED_DIR = DIGITS_IMAGE


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


@pytest.fixture
def closing_server():
    """A factory of local servers: ``closing_server(text, delay=0.0)`` listens on a free port,
    answers one connection with ``text`` after ``delay`` seconds and closes it; returns the
    ``socket://`` URL. Every server is joined and closed at the end of the test."""
    listeners, threads = [], []

    def start(text: bytes, delay: float = 0.0) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def serve():
            listener.settimeout(5)
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            time.sleep(delay)
            with conn:
                conn.sendall(text)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        listeners.append(listener)
        threads.append(thread)
        return f"socket://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for thread in threads:
        thread.join(6)
    for listener in listeners:
        listener.close()
