"""The reference board: :class:`hw.protocol.ReferenceDevice` served over TCP.

``python -m sim.refboard --image firmware/digits [--port N]`` listens on 127.0.0.1 (port 0
picks a free port), prints the pyserial URL ``socket://127.0.0.1:PORT`` on stdout and answers
the lifpga protocol for one client connection after another until interrupted. The host
driver (:class:`firmware.driver.Lifpga`) opens that URL exactly as it opens ``/dev/ttyUSB0``;
it cannot tell this board from a real one. This is the software stand-in for the virtual
board, which later serves the Verilator model behind the same socket.

Each connection gets a fresh device (an empty frame parser), as a board does after reset.

Idle timeout: when part of a frame has been buffered and no byte has arrived for
``idle_timeout`` seconds, the device abandons it and answers ``TIMEOUT``
(:meth:`~hw.protocol.ReferenceDevice.idle_timeout`). The default is
``IDLE_TIMEOUT_BYTES`` byte times at the configured baud rate (8N1: 10 bits per byte), but
never below 50 ms: TCP on a loaded host delivers a frame with more jitter than a UART, and a
host writes each frame with one call, so a real stall is much longer than that.

In tests::

    with RefBoard("firmware/digits") as url:
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

from golden import image
from hw import protocol

#: Lower bound of the idle timeout, seconds (see the module docstring).
IDLE_TIMEOUT_MIN_S = 0.05
#: Bits on the wire per byte with 8N1 framing.
BITS_PER_BYTE = 10
#: How often the serving thread checks for shutdown, seconds.
POLL_S = 0.05


class RefBoard:
    """A TCP server answering the lifpga protocol from the golden model, in a thread.

    Parameters
    ----------
    image_dir : network image directory (``golden.image.load``).
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

    def __init__(self, image_dir: str | Path, *, port: int = 0, baud: int = 115_200,
                 lanes: int = 16, clock_hz: int = 0, idle_timeout: float | None = None):
        self.net, self.manifest = image.load(image_dir)
        self.port, self.baud, self.lanes, self.clock_hz = port, baud, lanes, clock_hz
        if idle_timeout is None:
            byte_times = protocol.IDLE_TIMEOUT_BYTES * BITS_PER_BYTE / baud if baud else 0.0
            idle_timeout = max(byte_times, IDLE_TIMEOUT_MIN_S)
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.url = ""
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def new_device(self) -> protocol.ReferenceDevice:
        """A device at reset, as each connection sees it."""
        return protocol.ReferenceDevice(self.net, self.manifest, lanes=self.lanes,
                                        clock_hz=self.clock_hz, baud=self.baud)

    def start(self) -> str:
        """Bind, listen and start serving in a daemon thread; returns the URL."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
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
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve(self) -> None:
        """Accept and serve connections one after another until :meth:`stop`."""
        assert self._listener is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], POLL_S)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
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
                if reply:
                    conn.sendall(reply)
            except OSError:
                return  # connection reset by the client


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.refboard``: serve a network image until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sim.refboard", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="firmware/digits", help="network image directory")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument("--baud", type=int, default=115_200,
                        help="baud rate reported by INFO and used for the idle timeout")
    parser.add_argument("--lanes", type=int, default=16, help="lanes reported by INFO")
    args = parser.parse_args(argv)
    try:
        board = RefBoard(args.image, port=args.port, baud=args.baud, lanes=args.lanes)
        url = board.start()
    except (OSError, ValueError) as exc:
        print(f"refboard: error: {exc}", file=sys.stderr)
        return 1
    print(url, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
