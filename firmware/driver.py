"""Host driver for a lifpga board over any pyserial transport.

:class:`Lifpga` speaks the protocol of :mod:`golden.protocol` (described byte by byte in
``docs/PROTOCOL.md``) over a pyserial transport opened with ``serial.serial_for_url``, so a
UART (``/dev/ttyUSB0``), the reference or virtual board (``socket://127.0.0.1:PORT``) and
``loop://`` all work the same; it never knows which is on the other end.

Every request has a deadline (``timeout`` seconds), so no call hangs, provided the transport's
reads return within a bounded time: a transport the driver opens itself from a URL gets a read
timeout of at most ``READ_SLICE_S``; a transport object passed in must have one of its own.
Bytes before a response's SYNC are skipped by :class:`golden.protocol.FrameParser`. A late answer
to a request the driver gave up on (a :class:`LinkTimeout`, or a :meth:`Lifpga.classify_many`
stream abandoned early) is recognised by its SEQ and dropped silently. Errors are typed, all
subclasses of :class:`LifpgaError`:

==================  =============================================================
``PortError``       the port is missing or busy, or the transport failed
``LinkTimeout``     no complete response within the timeout
``CrcError``        a response with a bad CRC
``ProtocolError``   a malformed response: wrong command, unexpected SEQ, bad length
``DeviceError``     the device answered with a non-OK status (``.status``)
``ImageError``      an image of the wrong shape, range or dtype (raised before sending)
``ParameterError``  steps or mode out of range or not integers (raised before sending)
==================  =============================================================

Example::

    with Lifpga("socket://127.0.0.1:5000") as board:
        print(board.info())
        result = board.classify(pixels)          # protocol.Classification
        for r in board.classify_many(images):   # pipelined, in order
            ...
"""

from __future__ import annotations

import numbers
import struct
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import serial

from golden import protocol
from golden.constants import MODE_BY_NAME, STEPS_BITS
from golden.protocol import Command, Status

#: Default deadline per request, seconds.
DEFAULT_TIMEOUT_S = 2.0
#: Default baud rate for a UART (ignored by socket:// and loop://).
DEFAULT_BAUD = 3_000_000  # what every board top builds (hw/boards.py)
#: Longest single read from the transport, seconds; the request deadline is checked between.
READ_SLICE_S = 0.05

#: What each status means, for :class:`DeviceError` messages.
STATUS_MESSAGES = {
    Status.OK: "success",
    Status.BAD_CRC: "the device received a frame with a bad CRC (line noise?)",
    Status.UNKNOWN_COMMAND: "the device does not know this command",
    Status.BAD_LENGTH: "the device refused the payload length (wrong image size for this "
                       "network, or LEN above the maximum)",
    Status.PIXEL_RANGE: "a pixel is above the network image's pixel_max",
    Status.BAD_PARAMETER: "unknown encoder mode",
    Status.TIMEOUT: "the request stopped arriving mid-frame and the device abandoned it",
    Status.BUSY: (f"the device already holds {protocol.IMAGE_SLOTS} waiting images (keep at "
                  f"most {protocol.MAX_IN_FLIGHT} CLASSIFY requests in flight)"),
}


class LifpgaError(Exception):
    """Base class of every error the driver raises."""


class PortError(LifpgaError):
    """The port could not be opened (missing, busy) or the transport failed."""


class LinkTimeout(LifpgaError):
    """No complete response arrived before the deadline."""


class CrcError(LifpgaError):
    """A response frame's CRC does not match its bytes."""


class ProtocolError(LifpgaError):
    """A response that does not fit the request: wrong command, SEQ or length."""


class DeviceError(LifpgaError):
    """The device answered with a non-OK status.

    Attributes
    ----------
    status : the :class:`golden.protocol.Status` the device sent.
    command, seq : the request it answered.
    """

    def __init__(self, status: Status, command: int, seq: int):
        self.status, self.command, self.seq = status, command, seq
        name = _command_name(command)
        super().__init__(f"device answered {status.name} to {name} (seq {seq}): "
                         f"{STATUS_MESSAGES.get(status, 'unknown status')}")


class ImageError(LifpgaError, ValueError):
    """An image the device cannot take: wrong shape, range or dtype. Raised before sending."""


class ParameterError(LifpgaError, ValueError):
    """Steps or mode out of range or not integers. Raised before sending."""


class Transport(Protocol):
    """What the driver needs of a byte transport (a subset of ``serial.Serial``)."""

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def reset_input_buffer(self) -> None: ...


def _command_name(command: int) -> str:
    try:
        return Command(command & ~protocol.RESPONSE_FLAG).name
    except ValueError:
        return f"command 0x{command:02x}"


MODES = {**MODE_BY_NAME, "default": protocol.MODE_DEFAULT}


class Lifpga:
    """A lifpga board on a serial link.

    Parameters
    ----------
    port : a pyserial URL or device (``/dev/ttyUSB0``, ``socket://127.0.0.1:5000``,
        ``loop://``), or an already open transport with ``read``, ``write`` and
        ``reset_input_buffer`` (then closed by :meth:`close` only if it has ``close``
        and ``owns_transport`` is true).
    baud : UART baud rate; socket and loop transports ignore it.
    timeout : deadline per request in seconds: a response must be complete within it.
    owns_transport : close a transport passed in as an object on :meth:`close`.

    Raises
    ------
    PortError : the port does not exist, is busy or refuses the connection.
    """

    def __init__(self, port: str | Transport, baud: int = DEFAULT_BAUD,
                 timeout: float = DEFAULT_TIMEOUT_S, *, owns_transport: bool = False):
        self.timeout = timeout
        if isinstance(port, str):
            self.port_name = port
            try:
                self.transport: Any = serial.serial_for_url(
                    port, baudrate=baud, timeout=min(timeout, READ_SLICE_S))
            except (serial.SerialException, OSError, ValueError) as exc:
                raise PortError(f"cannot open port {port}: {exc}") from exc
            self._owns = True
        else:
            self.port_name = getattr(port, "name", None) or type(port).__name__
            self.transport = port
            self._owns = owns_transport
        self.parser = protocol.FrameParser()
        self._frames: list[protocol.Frame | protocol.FrameError] = []  # parsed, not yet used
        self._seq = 0
        #: SEQ -> response CMD of requests sent whose response has not been taken yet. An
        #: unexpected response matching one of them is a late answer and is dropped.
        self._outstanding: dict[int, int] = {}
        self._info: protocol.Info | None = None

    # --- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the transport if this driver opened it."""
        if self._owns and hasattr(self.transport, "close"):
            self.transport.close()

    def __enter__(self) -> Lifpga:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- commands --------------------------------------------------------------------------

    def info(self) -> protocol.Info:
        """Ask the device what it runs (INFO); the answer is cached for :meth:`classify`.

        Returns
        -------
        protocol.Info
        """
        payload = self.request(Command.INFO)
        try:
            self._info = protocol.unpack_info(payload)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from exc
        return self._info

    @property
    def cached_info(self) -> protocol.Info:
        """The last INFO answer, asking the device once if there is none."""
        return self._info if self._info is not None else self.info()

    def classify(self, image: Any, steps: int = 0,
                 mode: int = protocol.MODE_DEFAULT) -> protocol.Classification:
        """Classify one image.

        Parameters
        ----------
        image : M integer pixels in ``0 .. pixel_max``, as a flat array-like or a square 2-D
            one (flattened row by row).
        steps : time steps; 0 for the network image's default.
        mode : ``golden.constants.MODE_CURRENT``, ``MODE_RATE`` or ``protocol.MODE_DEFAULT``.

        Returns
        -------
        protocol.Classification : label, spike count, cycles and one score per class.

        Raises
        ------
        ImageError, ParameterError : before anything is sent.
        DeviceError, LinkTimeout, CrcError, ProtocolError, PortError
        """
        payload = self._classify_payload(image, steps, mode)
        reply = self.request(Command.CLASSIFY, payload)
        return self._unpack_classification(reply)

    def classify_many(self, images: Iterable[Any], steps: int = 0,
                      mode: int = protocol.MODE_DEFAULT,
                      window: int = protocol.MAX_IN_FLIGHT
                      ) -> Iterator[protocol.Classification]:
        """Classify images pipelined: up to ``window`` requests in flight, results in order.

        Each request carries its own SEQ; responses are matched by SEQ. Each image is
        validated just before it is sent, so an :class:`ImageError` stops the stream there.
        If the stream is abandoned (``break``, an exception) with requests in flight, their
        late answers are dropped by later calls.

        Parameters
        ----------
        images : iterable of images as for :meth:`classify` (a (B, M) array works).
        steps, mode : as for :meth:`classify`.
        window : requests in flight, 1 .. 128. A board holds
            :data:`~golden.protocol.MAX_IN_FLIGHT` (the default) and answers more with ``BUSY``;
            the reference board takes any number.

        Yields
        ------
        protocol.Classification : one per image, in the order of ``images``.
        """
        if not 1 <= window <= 128:
            raise ParameterError(f"window must lie in 1 .. 128, got {window}")
        self.cached_info  # noqa: B018 -- fetch INFO before the first request goes out
        self.transport_reset()
        pending: dict[int, float] = {}  # SEQ -> time sent, in send order
        done: dict[int, protocol.Classification] = {}
        order: list[int] = []
        source = iter(images)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    image = next(source)
                except StopIteration:
                    exhausted = True
                    break
                seq = self._send(Command.CLASSIFY, self._classify_payload(image, steps, mode))
                pending[seq] = time.monotonic()
                order.append(seq)
            while order and order[0] in done:
                yield done.pop(order.pop(0))
            if not pending:
                return
            oldest = order[0]
            frame = self._receive(Command.CLASSIFY, set(pending), oldest, pending[oldest])
            del pending[frame.seq]
            # The device answers in order, so the next deadline runs from this response.
            now = time.monotonic()
            for seq in pending:
                pending[seq] = max(pending[seq], now)
            done[frame.seq] = self._unpack_classification(self._check_status(frame))

    # --- the link --------------------------------------------------------------------------

    def request(self, command: int, payload: bytes = b"") -> bytes:
        """Send one raw request and return its response payload (STATUS byte first).

        Raises
        ------
        DeviceError : the status is not OK.
        LinkTimeout, CrcError, ProtocolError, PortError
        """
        self.transport_reset()
        seq = self._send(command, payload)
        frame = self._receive(command, {seq}, seq, time.monotonic())
        return self._check_status(frame)

    def transport_reset(self) -> None:
        """Drop stale bytes (late answers to abandoned requests) before a new exchange."""
        try:
            self.transport.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"port {self.port_name}: {exc}") from exc
        self.parser.reset()
        self._frames.clear()

    def _send(self, command: int, payload: bytes) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        self._outstanding[seq] = (command | protocol.RESPONSE_FLAG) & 0xFF
        try:
            self.transport.write(protocol.encode_frame(command, seq, payload))
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"cannot write to port {self.port_name}: {exc}") from exc
        return seq

    def _receive(self, command: int, expected: set[int], seq: int,
                 sent: float) -> protocol.Frame:
        """The next response frame; it must answer ``command`` with a SEQ in ``expected``.

        ``seq`` and ``sent`` name the request whose deadline (``sent + timeout``) applies.
        """
        deadline = sent + self.timeout
        received = 0
        while True:
            if self._frames:
                item = self._frames.pop(0)
                if self._is_late(item, expected):
                    continue
                frame = self._check_frame(item, command, expected)
                self._outstanding.pop(frame.seq, None)
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(
                    f"no complete response to {_command_name(command)} (seq {seq}) within "
                    f"{self.timeout:g} s on {self.port_name}: {received} bytes arrived"
                    + (f", {len(self.parser.buffer)} of them a partial frame"
                       if self.parser.pending() else ""))
            try:
                data = self.transport.read(self._bytes_wanted())
            except (serial.SerialException, OSError) as exc:
                raise PortError(f"cannot read from port {self.port_name}: {exc}") from exc
            if data:
                received += len(data)
                self._frames += self.parser.feed(data)

    def _is_late(self, item: protocol.Frame | protocol.FrameError, expected: set[int]) -> bool:
        """Whether ``item`` answers an earlier request that was abandoned: drop it then."""
        if (isinstance(item, protocol.Frame) and item.seq not in expected
                and self._outstanding.get(item.seq) == item.cmd):
            del self._outstanding[item.seq]
            return True
        return False

    def _bytes_wanted(self) -> int:
        """Bytes that surely belong to the frame being parsed, so a read never over-waits."""
        buffered = self.parser.buffer
        if len(buffered) < protocol.HEADER_BYTES:
            return protocol.HEADER_BYTES - len(buffered)
        (length,) = struct.unpack_from("<H", buffered, 4)
        total = protocol.HEADER_BYTES + length + protocol.CRC_BYTES
        return max(1, min(total, protocol.HEADER_BYTES + self.parser.max_payload
                          + protocol.CRC_BYTES) - len(buffered))

    def _check_frame(self, item: protocol.Frame | protocol.FrameError, command: int,
                     expected: set[int]) -> protocol.Frame:
        if isinstance(item, protocol.FrameError):
            kind = CrcError if item.status == Status.BAD_CRC else ProtocolError
            raise kind(f"bad response frame on {self.port_name} (cmd 0x{item.cmd:02x}, "
                       f"seq {item.seq}): {item}")
        if item.cmd != (command | protocol.RESPONSE_FLAG):
            raise ProtocolError(f"response CMD 0x{item.cmd:02x} to {_command_name(command)}, "
                                f"expected 0x{command | protocol.RESPONSE_FLAG:02x}")
        if item.seq not in expected:
            raise ProtocolError(f"response with seq {item.seq} to {_command_name(command)}, "
                                f"expected seq {' or '.join(map(str, sorted(expected)))}")
        if not item.payload:
            raise ProtocolError(f"response to {_command_name(command)} (seq {item.seq}) "
                                "has no STATUS byte")
        return item

    def _check_status(self, frame: protocol.Frame) -> bytes:
        try:
            status = Status(frame.payload[0])
        except ValueError:
            raise ProtocolError(f"unknown status 0x{frame.payload[0]:02x} in response to "
                                f"{_command_name(frame.cmd)} (seq {frame.seq})") from None
        if status != Status.OK:
            raise DeviceError(status, frame.cmd & ~protocol.RESPONSE_FLAG, frame.seq)
        return frame.payload

    # --- payloads --------------------------------------------------------------------------

    def _classify_payload(self, image: Any, steps: int, mode: int) -> bytes:
        info = self.cached_info
        pixels = validate_image(image, info.inputs, info.pixel_max)
        if not isinstance(steps, numbers.Integral):
            raise ParameterError(f"steps must be an integer, got {steps!r}")
        if not isinstance(mode, numbers.Integral):
            raise ParameterError(f"mode must be an integer, got {mode!r}")
        if not 0 <= steps < 1 << STEPS_BITS:
            raise ParameterError(f"steps must lie in 0 .. {(1 << STEPS_BITS) - 1}, got {steps}")
        if mode not in MODES.values():
            raise ParameterError(f"mode must be one of {sorted(MODES.values())}, got {mode}")
        return protocol.pack_classify(pixels, steps, mode)

    def _unpack_classification(self, payload: bytes) -> protocol.Classification:
        try:
            return protocol.unpack_classification(payload, self.cached_info.classes)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from exc


def validate_image(image: Any, inputs: int, pixel_max: int) -> np.ndarray:
    """The image as a flat integer array, or :class:`ImageError` saying what is wrong.

    Parameters
    ----------
    image : M pixels, flat or as a square 2-D array (flattened row by row).
    inputs : M, the network's input count.
    pixel_max : largest pixel value the network takes.
    """
    try:
        x = np.asarray(image)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"image is not an array: {exc}") from exc
    if x.dtype.kind not in "iu":
        raise ImageError(f"image must hold integer pixels, got dtype {x.dtype}")
    if x.ndim == 2 and x.shape[0] == x.shape[1]:
        x = x.reshape(-1)
    if x.shape != (inputs,):
        side = int(round(inputs ** 0.5))
        square = f" or ({side}, {side})" if side * side == inputs else ""
        raise ImageError(f"image must have shape ({inputs},){square}, got {x.shape}")
    if x.size and (x.min() < 0 or x.max() > pixel_max):
        raise ImageError(f"pixels must lie in 0 .. {pixel_max}, got {x.min()} .. {x.max()}")
    return x
