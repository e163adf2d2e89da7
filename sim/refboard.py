"""The reference board: :class:`golden.device.ReferenceDevice` served over TCP.

``python -m sim.refboard --image firmware/digits [--port N]`` listens on 127.0.0.1 (port 0
picks a free port), prints the pyserial URL ``socket://127.0.0.1:PORT`` on stdout and answers
the lifpga protocol for one client connection after another until interrupted. The host
driver (:class:`firmware.driver.Lifpga`) opens that URL exactly as it opens ``/dev/ttyUSB0``;
it cannot tell this board from a real one. This is the software stand-in for the virtual
board, which later serves the Verilator model behind the same socket.

Each connection gets a fresh device (an empty frame parser), as a board does after reset.
Concurrent connections are each served in a thread of their own, with a device of their own,
so a second client is answered rather than left to time out in the listen backlog. (The
virtual board, :mod:`sim.board`, is one device: it serves one client at a time and refuses
another with a line of text.) The device answers every request at once, so RESET, which the
driver sends on connecting, finds nothing to abandon.

A client that stops reading its replies cannot block the board: a reply that cannot be sent
within ``SEND_TIMEOUT_S`` closes that connection. Every thread polls a stop flag every
``POLL_S`` seconds, so :meth:`RefBoard.stop` always joins them.

Idle timeout: when part of a frame has been buffered and no byte has arrived for
``idle_timeout`` seconds, the device abandons it and answers ``TIMEOUT``
(:meth:`~golden.device.ReferenceDevice.idle_timeout`). The default is
``IDLE_TIMEOUT_BYTES`` byte times at the configured baud rate (8N1:
``golden.protocol.BITS_PER_BYTE`` bits per byte), but never below ``IDLE_TIMEOUT_MIN_S``
(50 ms): TCP on a loaded host delivers a frame with more jitter than a UART, and a host writes
each frame with one call, so a real stall is much longer than that. This module, like the
driver, loads no HDL.

In tests::

    with RefBoard(DIGITS_IMAGE) as url:
        with Lifpga(url) as board:
            board.info()
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import threading
import time
from pathlib import Path

from firmware import DIGITS_IMAGE
from firmware.driver import DEFAULT_BAUD
from golden import device, image, protocol
from sim.foreground import run_in_foreground

#: Lower bound of the idle timeout, seconds (see the module docstring). The driver waits
#: longer than this for a RESET answer before it sends RESET again, hence one constant.
IDLE_TIMEOUT_MIN_S = protocol.IDLE_TIMEOUT_FLOOR_S
#: How often the serving threads check for shutdown, seconds.
POLL_S = 0.05
#: A reply that cannot be sent within this many seconds closes its connection.
SEND_TIMEOUT_S = 2.0


class RefBoardError(OSError):
    """The board cannot listen (for instance, the port is in use)."""


class RefBoard:
    """A TCP server answering the lifpga protocol from the golden model, in a thread.

    Parameters
    ----------
    image_dir : network image directory (``golden.image.load_layers``).
    port : TCP port on 127.0.0.1; 0 picks a free one.
    baud : baud rate reported by INFO and used for the idle timeout.
    lanes, clock_hz : reported by INFO.
    idle_timeout : seconds a partial frame may stall before ``TIMEOUT``; ``None`` for the
        default (``IDLE_TIMEOUT_BYTES`` byte times at ``baud``, at least 50 ms).

    Attributes
    ----------
    url : ``socket://127.0.0.1:PORT``, valid after :meth:`start`.
    connections : number of client connections accepted so far.
    """

    def __init__(self, image_dir: str | Path, *, port: int = 0, baud: int = DEFAULT_BAUD,
                 lanes: int = 16, clock_hz: int = 0, idle_timeout: float | None = None):
        self.net, self.manifest = image.load_layers(image_dir)
        self.port, self.baud, self.lanes, self.clock_hz = port, baud, lanes, clock_hz
        if idle_timeout is None:
            byte_times = (protocol.IDLE_TIMEOUT_BYTES * protocol.BITS_PER_BYTE / baud
                          if baud else 0.0)
            idle_timeout = max(byte_times, IDLE_TIMEOUT_MIN_S)
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.url = ""
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def thread(self) -> threading.Thread | None:
        """The thread accepting connections while the board is started, else None."""
        return self._thread

    def new_device(self) -> device.ReferenceDevice:
        """A device at reset, as each connection sees it."""
        return device.ReferenceDevice(self.net, self.manifest, lanes=self.lanes,
                                        clock_hz=self.clock_hz, baud=self.baud)

    def start(self) -> str:
        """Bind, listen and start serving in a daemon thread; returns the URL.

        Raises
        ------
        RefBoardError : the port cannot be bound (in use, not permitted).
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(4)
        except OSError as exc:
            listener.close()
            raise RefBoardError(f"cannot listen on 127.0.0.1:{self.port}: "
                                f"{exc.strerror or exc}") from exc
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve, name="refboard", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, close every socket and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # every thread polls the stop flag every POLL_S
            self._thread = None
        with self._lock:
            clients, self._clients = self._clients, []
        for thread in clients:
            thread.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve(self) -> None:
        """Accept connections until :meth:`stop`, serving each in a thread of its own."""
        assert self._listener is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], POLL_S)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=self._serve_and_close, args=(conn,),
                                      name="refboard-client", daemon=True)
            with self._lock:
                self.connections += 1
                self._clients = [t for t in self._clients if t.is_alive()] + [thread]
            thread.start()

    def _serve_and_close(self, conn: socket.socket) -> None:
        with conn:
            self._serve_connection(conn)

    def _send(self, conn: socket.socket, reply: bytes) -> bool:
        """Send ``reply``; False if the client stopped reading or the board is stopping."""
        deadline = time.monotonic() + SEND_TIMEOUT_S
        view = memoryview(reply)
        while view:
            if self._stop.is_set() or time.monotonic() >= deadline:
                return False
            try:
                view = view[conn.send(view):]
            except TimeoutError:  # socket.timeout: the send buffer stayed full for POLL_S
                continue
        return True

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.settimeout(POLL_S)  # bounds every send, so a client that stops reading
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        device = self.new_device()
        last_byte = time.monotonic()
        while not self._stop.is_set():
            wait = POLL_S
            if device.parser.pending():
                wait = min(wait, max(0.0, last_byte + self.idle_timeout - time.monotonic()))
            ready, _, _ = select.select([conn], [], [], wait)
            try:
                if ready:
                    data = conn.recv(4096)
                    if not data:
                        return  # the client closed the connection
                    last_byte = time.monotonic()
                    reply = device.receive(data)
                elif (device.parser.pending()
                      and time.monotonic() - last_byte >= self.idle_timeout):
                    reply = device.idle_timeout()
                else:
                    continue
                if reply and not self._send(conn, reply):
                    return  # the client stopped reading, or stop(): close the connection
            except OSError:
                return  # connection reset by the client


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.refboard``: serve a network image until interrupted."""
    from hw.options import port_number, positive_int  # pure argparse; importing sim.refboard
    # itself loads nothing of hw/ (tests/test_refboard.py checks)

    parser = argparse.ArgumentParser(prog="python -m sim.refboard", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(DIGITS_IMAGE), help="network image directory")
    parser.add_argument("--port", type=port_number, default=0,
                        help="TCP port (0: pick a free one)")
    parser.add_argument("--baud", type=positive_int, default=DEFAULT_BAUD,
                        help="baud rate reported by INFO and used for the idle timeout")
    parser.add_argument("--lanes", type=positive_int, default=16, help="lanes reported by INFO")
    args = parser.parse_args(argv)
    boards: list[RefBoard] = []

    def start() -> str:
        boards.append(RefBoard(args.image, port=args.port, baud=args.baud, lanes=args.lanes))
        return boards[0].start()

    return run_in_foreground("refboard", start, lambda: boards[0].stop())


if __name__ == "__main__":
    sys.exit(main())
