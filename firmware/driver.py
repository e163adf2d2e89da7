"""Host driver for a lifpga board over any pyserial transport.

:class:`Lifpga` speaks the protocol of :mod:`golden.protocol` (described byte by byte in
``docs/PROTOCOL.md``) over a pyserial transport opened with ``serial.serial_for_url``, so a
UART (``/dev/ttyUSB0``), the reference or virtual board (``socket://127.0.0.1:PORT``) and
``loop://`` all work the same; it never knows which is on the other end.

A clean start: on connecting, the driver sends RESET (:meth:`Lifpga.reset`), with which the
device abandons every request not yet answered (an earlier client's, say), and discards every
byte that arrives before RESET's answer. It resets again before the next request after a
:class:`LinkTimeout`, a malformed response or a :meth:`Lifpga.classify_many` stream abandoned
with requests in flight, so the late answer of a request the driver gave up on can never be
taken for the answer of a later one. (With ``reset=False``, for a device whose firmware
predates RESET, the driver instead drains its input before each request and drops late
answers it recognises by their SEQ and CMD.)

A RESET can be swallowed: a client killed mid-write leaves a partial frame in the device's
parser (on a UART, or on the virtual board when the next client comes within its idle
timeout), and the RESET behind it becomes part of that frame. The device then answers
BAD_LENGTH or BAD_CRC for the frame, or TIMEOUT once the line stays idle, and never answers
the RESET. So the driver sends RESET again when such a refusal arrives instead of RESET's
answer, or when no answer comes within :attr:`Lifpga.reset_retry_s` (the longest idle
timeout of any transport, 50 ms at 3 Mbaud, plus ``RESET_MARGIN_S``); at most
``RESET_ATTEMPTS`` RESETs in all, within the one deadline of ``timeout`` seconds. The first
client after a killed one is therefore served at once: its RESET is answered within the
device's idle timeout (measured on the reference board, whose idle timeout is 50 ms: at most
51 ms, for any cut of a CLASSIFY frame). An extra RESET is harmless: its answer, after the one
taken, is dropped as late. The host's own parser may hold a stale partial frame too (a
header whose body was lost: a cut frame, a UART buffer that overflowed while the port was
closed, noise), which would buffer the RESET answers as its payload; so whenever a RESET
answer is overdue the driver also resynchronises its parser past that frame
(:meth:`golden.protocol.FrameParser.resync`) and parses the bytes behind it again.

CLASSIFY encodings: with ``encoding="auto"`` (the default) the driver sends each image as
CLASSIFY_SPARSE (zero runs skipped, docs/PROTOCOL.md) when the device's INFO version has it
(:data:`golden.protocol.SPARSE_VERSION`) and that frame is shorter, else as CLASSIFY;
``"dense"`` always sends CLASSIFY, ``"sparse"`` always CLASSIFY_SPARSE (a
:class:`ParameterError` before sending if the device's version lacks it). Either way the
answer is the same.

Every request has a deadline (``timeout`` seconds), so no call hangs, provided the transport's
reads return within a bounded time: a transport the driver opens itself from a URL gets a read
timeout of at most ``READ_SLICE_S``; a transport object passed in must have one of its own.
A :class:`LinkTimeout` says how long the request was expected to take (from the worst-case
cycle count, INFO's cycle bound or, from a version-2 device, :func:`hw.geometry.max_cycles`;
INFO's clock; and the link time at the baud rate). Bytes before a response's SYNC are
skipped by :class:`golden.protocol.FrameParser`.
A connection the other end closes (a busy virtual board refusing a second client) is a
:class:`PortError` quoting what it sent, if that was a line of text. Errors are typed, all
subclasses of :class:`LifpgaError`:

===================  ============================================================
``PortError``        the port is missing, busy or malformed, the transport failed,
                     or the other end closed the connection
``LinkTimeout``      no complete response within the timeout
``CrcError``         a response with a bad CRC
``ProtocolError``    a malformed response: wrong command, unexpected SEQ, bad length
``DeviceError``      the device answered with a non-OK status (``.status``)
``ResetUnsupported`` a :class:`DeviceError`: the firmware predates RESET
``ImageError``       an image of the wrong shape, range or dtype (raised before sending)
``ParameterError``   steps, mode, window, timeout or encoding out of range, or an encoding
                     the device lacks (raised before sending)
===================  ============================================================

Example::

    with Lifpga("socket://127.0.0.1:5000") as board:
        print(board.info())
        result = board.classify(pixels)          # protocol.Classification
        for r in board.classify_many(images):   # pipelined, in order
            ...
"""

from __future__ import annotations

import math
import numbers
import re
import struct
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import serial

from golden import protocol
from golden.constants import MODE_BY_NAME, MODE_RATE, STEPS_BITS
from golden.protocol import Command, Status

#: Default deadline per request, seconds.
DEFAULT_TIMEOUT_S = 2.0
#: Default baud rate for a UART (ignored by socket:// and loop://).
DEFAULT_BAUD = 3_000_000  # what every board top builds (hw/boards.py)
#: Longest single read from the transport, seconds; the request deadline is checked between.
READ_SLICE_S = 0.05
#: A RESET unanswered for :attr:`Lifpga.reset_retry_s` is sent again, up to this many RESETs.
RESET_ATTEMPTS = 4
#: The longest idle timeout of a board over TCP, seconds: a device fact, defined in
#: :data:`golden.protocol.IDLE_TIMEOUT_FLOOR_S` (this name is an alias).
IDLE_TIMEOUT_FLOOR_S = protocol.IDLE_TIMEOUT_FLOOR_S
#: Added to the idle timeout before RESET is sent again: the RESET's round trip and the answer
#: in progress on the wire, with room for a loaded host.
RESET_MARGIN_S = 0.1
#: Received bytes kept for quoting what a peer sent before it closed the connection.
PEER_TEXT_BYTES = 512
#: Simulated cycles per second of wall time of the virtual board (``sim/board.py``, Speed:
#: some 0.8 to 0.95 million), for the advice in a timeout message.
VIRTUAL_BOARD_CYCLES_PER_S = 1_000_000

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



def _max_cycles(info: protocol.Info, steps: int, mode: int) -> int:
    """The most core cycles a CLASSIFY of ``steps`` can take on the device of ``info``: its
    cycle bound (protocol version 3), or the single-layer core's worst case from M, N, C and
    P (a version-2 device, which runs one layer)."""
    if info.version >= protocol.CYCLE_BOUND_VERSION and info.cycles_per_step:
        return info.cycles_base + max(1, steps) * info.cycles_per_step
    from hw.geometry import max_cycles  # pure Python, loaded only when needed

    return max_cycles(info.inputs, info.neurons, info.lanes, info.classes, steps, mode)

class LifpgaError(Exception):
    """Base class of every error the driver raises."""


class PortError(LifpgaError):
    """The port could not be opened (missing, busy, malformed URL), the transport failed, or
    the other end closed the connection.

    Attributes
    ----------
    peer_text : the line of text the other end sent before closing, or None.
    """

    def __init__(self, message: str, peer_text: str | None = None):
        super().__init__(message)
        self.peer_text = peer_text


class LinkTimeout(LifpgaError):
    """No complete response arrived before the deadline.

    Attributes
    ----------
    detail : what happened and how long the request was expected to take.
    expected_s : the expected worst-case time of the request in seconds, or None if unknown.
    """

    def __init__(self, detail: str, expected_s: float | None, timeout_s: float):
        self.detail, self.expected_s, self.timeout_s = detail, expected_s, timeout_s
        super().__init__(self.advice("timeout={}"))

    def advice(self, option: str) -> str:
        """The message, suggesting a longer deadline with ``option``, a format string for
        the number of seconds (``"timeout={}"``, ``"--timeout {}"``), where one may help."""
        if self.expected_s is None:
            return (f"{self.detail} If the device needs longer, give it more time with "
                    f"{option.format('SECONDS')}.")
        if 2 * self.expected_s <= self.timeout_s:
            return f"{self.detail} The deadline was ample: the device did not answer."
        suggest = max(1, math.ceil(2 * self.expected_s))
        return f"{self.detail} Give it more time, e.g. {option.format(suggest)}."


class CrcError(LifpgaError):
    """A response frame's CRC does not match its bytes."""


class ProtocolError(LifpgaError):
    """A response that does not fit the request: wrong command, SEQ, length or label."""


class DeviceError(LifpgaError):
    """The device answered with a non-OK status.

    Attributes
    ----------
    status : the :class:`golden.protocol.Status` the device sent.
    command, seq : the request it answered.
    """

    def __init__(self, status: Status, command: int, seq: int, explanation: str | None = None):
        self.status, self.command, self.seq = status, command, seq
        name = _command_name(command)
        explanation = explanation or STATUS_MESSAGES.get(status, "unknown status")
        super().__init__(f"device answered {status.name} to {name} (seq {seq}): {explanation}")


class ResetUnsupported(DeviceError):
    """The device answered ``UNKNOWN_COMMAND`` to RESET: its firmware predates RESET."""


class ImageError(LifpgaError, ValueError):
    """An image the device cannot take: wrong shape, range or dtype. Raised before sending."""


class ParameterError(LifpgaError, ValueError):
    """Steps, mode, window or timeout out of range or of the wrong type. Raised before
    sending."""


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


def check_port_url(port: str) -> None:
    """Raise :class:`PortError` for a ``socket://`` URL pyserial would misread.

    pyserial answers ``socket://HOST`` (no port) or ``socket://HOST:abc`` with internal
    errors; this says what is wrong. Other ports (devices, ``loop://``) pass unchecked.
    """
    if not port.lower().startswith("socket:"):
        return
    parts = urllib.parse.urlsplit(port)
    form = "socket://HOST:PORT, e.g. socket://127.0.0.1:5000"
    try:
        number = parts.port
    except ValueError:
        number = -1
    if not port.lower().startswith("socket://") or not parts.hostname:
        raise PortError(f"port {port}: a socket URL has the form {form}")
    if number is None or not 1 <= number <= 65535:
        raise PortError(f"port {port}: needs a TCP port number 1 .. 65535 after the host "
                        f"({form})")
    options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if parts.path not in ("", "/") or set(options) - {"logging"}:
        raise PortError(f"port {port}: unexpected path or option; the form is {form} "
                        "(optionally ?logging=debug)")


def check_timeout(timeout: Any) -> float:
    """``timeout`` as a float, or :class:`ParameterError` unless positive and finite."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) \
            or not 0 < timeout < math.inf:
        raise ParameterError(f"timeout must be a positive finite number of seconds, got "
                             f"{timeout!r}")
    return float(timeout)


def check_encoding(encoding: Any) -> str:
    """``encoding`` if it is one of :data:`golden.protocol.ENCODINGS`, else
    :class:`ParameterError`."""
    if not isinstance(encoding, str) or encoding not in protocol.ENCODINGS:
        raise ParameterError(f"encoding must be one of {', '.join(protocol.ENCODINGS)}, "
                             f"got {encoding!r}")
    return encoding


def _open_url(port: str, baud: int, timeout: float) -> Any:
    """Open a pyserial URL or device, keeping what a socket peer sends at once.

    pyserial's socket transport drains its input when it opens, which would swallow the line
    a busy virtual board sends before it closes the connection; the driver drains through its
    own parser instead (RESET), so that drain is skipped.
    """
    check_port_url(port)
    try:
        transport = serial.serial_for_url(port, baudrate=baud, timeout=min(timeout, READ_SLICE_S),
                                          do_not_open=True)
        if port.lower().startswith("socket://"):
            transport.reset_input_buffer = lambda: None
        transport.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        # pyserial's messages repeat the port: "[Errno 2] could not open port X: [Errno 2] ..."
        reason = re.sub(r"^(\[Errno \d+\] )?[Cc]ould not open port .*?: (?=\[|\w)", "",
                        str(exc), count=1)
        raise PortError(f"cannot open port {port}: {reason}") from exc
    return transport


#: Statuses with which a device refuses a frame as it parsed it (not a request it understood).
REFUSALS = frozenset({Status.BAD_CRC, Status.BAD_LENGTH, Status.TIMEOUT})


def _refusal(item: protocol.Frame | protocol.FrameError) -> bool:
    """Whether ``item`` answers a frame the device refused as framed: BAD_CRC, BAD_LENGTH or
    TIMEOUT, or UNKNOWN_COMMAND to anything but RESET. While the driver awaits a RESET answer,
    such an answer can mean the RESET was swallowed by a partial frame (see
    :meth:`Lifpga.reset`)."""
    if not isinstance(item, protocol.Frame) or len(item.payload) != 1:
        return False
    status = item.payload[0]
    return status in REFUSALS or (status == Status.UNKNOWN_COMMAND
                                  and item.cmd != Command.RESET | protocol.RESPONSE_FLAG)


def _peer_text(raw: bytes) -> str | None:
    """``raw`` as a line of text, if it is one (printable ASCII, not frame bytes)."""
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if text and text.replace("\t", " ").isprintable() else None


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
    reset : send RESET on connecting and whenever a request was abandoned (see the module
        docstring); False for a device whose firmware predates RESET.
    encoding : how CLASSIFY requests go out by default, one of
        :data:`golden.protocol.ENCODINGS`: ``"auto"`` (the shorter frame the device serves),
        ``"dense"`` (CLASSIFY) or ``"sparse"`` (CLASSIFY_SPARSE); see the module docstring.

    Raises
    ------
    PortError : the port does not exist, is busy, refuses or closes the connection.
    ResetUnsupported : the device's firmware predates RESET (open with ``reset=False``).
    LinkTimeout : no answer to RESET within ``timeout``.
    ParameterError : ``timeout`` is not a positive finite number, or ``encoding`` unknown.
    """

    def __init__(self, port: str | Transport, baud: int = DEFAULT_BAUD,
                 timeout: float = DEFAULT_TIMEOUT_S, *, owns_transport: bool = False,
                 reset: bool = True, encoding: str = "auto"):
        self.timeout = check_timeout(timeout)
        self.encoding = check_encoding(encoding)
        self.baud = baud
        if isinstance(port, str):
            self.port_name = port
            self.transport: Any = _open_url(port, baud, self.timeout)
            self._owns = True
        else:
            self.port_name = getattr(port, "name", None) or type(port).__name__
            self.transport = port
            self._owns = owns_transport
        self.parser = protocol.FrameParser()
        self._frames: list[protocol.Frame | protocol.FrameError] = []  # parsed, not yet used
        self._unframed = bytearray()  # received bytes not (yet) part of a frame
        self._received = 0  # bytes read from the transport so far
        self._seq = 0
        #: SEQ -> response CMD of requests sent whose response has not been taken yet. An
        #: unexpected response matching one of them is a late answer and is dropped.
        self._outstanding: dict[int, int] = {}
        self._info: protocol.Info | None = None
        self.uses_reset = reset
        self._need_reset = reset
        if reset:
            try:
                self.reset()
            except BaseException:
                self.close()
                raise

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

    def reset(self) -> None:
        """Make the device abandon every request not yet answered (RESET), and discard every
        byte that arrives before its answer.

        The device stops the image it computes, empties its queues, finishes the answer
        already on the wire and then answers RESET; so afterwards no late answer can arrive.
        A RESET the device may not have seen whole is sent again (see :meth:`_resend_reset`),
        up to ``RESET_ATTEMPTS`` times in all, within one deadline of ``timeout`` seconds
        from the first.

        Raises
        ------
        ResetUnsupported : the device answered UNKNOWN_COMMAND: its firmware predates RESET.
        DeviceError, LinkTimeout, PortError
        """
        self._clear_input()
        sent, mark = time.monotonic(), self._received
        seqs = [self._send(Command.RESET, b"")]
        resend_at = sent + self.reset_retry_s
        while True:
            try:
                item = self._next_item(Command.RESET, seqs[0], sent, until=resend_at,
                                       mark=mark)
            except LinkTimeout as exc:
                raise self._reset_timeout(exc, seqs) from None
            if item is not None and self._answers_reset(item, seqs):
                break  # everything before it is stale, and dropped
            if item is None or _refusal(item):
                resend_at = self._resend_reset(seqs)
            if item is None:
                # Overdue: a stale header (its body lost) may hold the answers as payload.
                self._frames += self.parser.resync()
        self._outstanding.clear()
        self._clear_input()
        # A RESET refused (BAD_CRC: line noise) reset nothing: the next request tries again.
        self._need_reset = item.payload[0] != Status.OK and self.uses_reset
        if item.payload[0] == Status.UNKNOWN_COMMAND:
            raise ResetUnsupported(
                Status.UNKNOWN_COMMAND, Command.RESET, item.seq,
                "its firmware predates RESET: rebuild and program the current bitstream, or "
                "open the port with reset=False (lifpga: --no-reset), which cannot stop an "
                "earlier client's requests")
        self._check_status(item)

    @property
    def reset_retry_s(self) -> float:
        """Seconds to wait for a RESET answer before sending RESET again: the longest idle
        timeout of any transport (``IDLE_TIMEOUT_BYTES`` byte times at ``baud``, at least
        ``IDLE_TIMEOUT_FLOOR_S``) plus ``RESET_MARGIN_S``."""
        byte_times = protocol.IDLE_TIMEOUT_BYTES * protocol.BITS_PER_BYTE / (self.baud or
                                                                             DEFAULT_BAUD)
        return max(byte_times, IDLE_TIMEOUT_FLOOR_S) + RESET_MARGIN_S

    def _resend_reset(self, seqs: list[int]) -> float:
        """Send RESET again, if fewer than ``RESET_ATTEMPTS`` went out; returns when to
        resend next (never, once the attempts are spent: the deadline then decides).

        Called when no RESET answer came within :attr:`reset_retry_s`, or when an answer
        refusing a frame (:func:`_refusal`) came instead: a partial frame that a killed client
        left in the device's parser swallows the RESET behind it, as payload, and the device
        then answers BAD_LENGTH or BAD_CRC for that frame, or TIMEOUT once the line stays idle.
        Each extra RESET is harmless: its answer, after ours, is dropped as late.
        """
        if len(seqs) >= RESET_ATTEMPTS:
            return math.inf
        seqs.append(self._send(Command.RESET, b""))
        return time.monotonic() + self.reset_retry_s

    @staticmethod
    def _answers_reset(item: protocol.Frame | protocol.FrameError, seqs: list[int]) -> bool:
        """Whether ``item`` is the answer to one of the RESETs ``seqs`` that ends the wait:
        any but a refusal, which is taken only for the last attempt."""
        if not (isinstance(item, protocol.Frame) and item.seq in seqs and item.payload
                and item.cmd == Command.RESET | protocol.RESPONSE_FLAG):
            return False
        return not _refusal(item) or (len(seqs) == RESET_ATTEMPTS and item.seq == seqs[-1])

    def _reset_timeout(self, exc: LinkTimeout, seqs: list[int]) -> LinkTimeout:
        if len(seqs) == 1:
            return exc
        return LinkTimeout(f"{exc.detail} RESET was sent {len(seqs)} times (seq "
                           f"{', '.join(map(str, seqs))}), none answered.", exc.expected_s,
                           exc.timeout_s)

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

    def classify(self, image: Any, steps: int = 0, mode: int = protocol.MODE_DEFAULT,
                 encoding: str | None = None) -> protocol.Classification:
        """Classify one image.

        Parameters
        ----------
        image : M integer pixels in ``0 .. pixel_max``, as a flat array-like or a square 2-D
            one (flattened row by row).
        steps : time steps; 0 for the network image's default.
        mode : ``golden.constants.MODE_CURRENT``, ``MODE_RATE`` or ``protocol.MODE_DEFAULT``.
        encoding : ``"auto"``, ``"dense"`` or ``"sparse"``; None for the driver's
            :attr:`encoding`.

        Returns
        -------
        protocol.Classification : label, spike count, cycles and one score per class.

        Raises
        ------
        ImageError, ParameterError : before anything is sent.
        DeviceError, LinkTimeout, CrcError, ProtocolError, PortError
        """
        command, payload = self._classify_request(image, steps, mode, encoding)
        reply = self.request(command, payload)
        return self._unpack_classification(reply)

    def classify_many(self, images: Iterable[Any], steps: int = 0,
                      mode: int = protocol.MODE_DEFAULT,
                      window: int = protocol.MAX_IN_FLIGHT, encoding: str | None = None
                      ) -> Iterator[protocol.Classification]:
        """Classify images pipelined: up to ``window`` requests in flight, results in order.

        Each request carries its own SEQ; responses are matched by SEQ. Each image is
        validated just before it is sent, so an :class:`ImageError` stops the stream there.
        If the stream is abandoned (``break``, an exception) with requests in flight, the next
        request resets the device first (or, with ``reset=False``, drops their late answers).

        Parameters
        ----------
        images : iterable of images as for :meth:`classify` (a (B, M) array works).
        steps, mode, encoding : as for :meth:`classify` (with ``"auto"`` each image goes out
            in its own shorter form).
        window : requests in flight, 1 .. :data:`~golden.protocol.MAX_WINDOW`. A board holds
            :data:`~golden.protocol.MAX_IN_FLIGHT` (the default) and answers more with ``BUSY``;
            the reference board takes any number.

        Yields
        ------
        protocol.Classification : one per image, in the order of ``images``.
        """
        if isinstance(window, bool) or not isinstance(window, numbers.Integral) \
                or not 1 <= window <= protocol.MAX_WINDOW:
            raise ParameterError(f"window must be an integer in 1 .. {protocol.MAX_WINDOW}, "
                                 f"got {window!r}")
        self._check_steps_mode(steps, mode)
        encoding = self._check_device_encoding(encoding)
        self._prepare()
        pending: dict[int, float] = {}  # SEQ -> time sent, in send order
        try:
            yield from self._stream(iter(images), steps, mode, window, pending, encoding)
        finally:
            if pending:  # abandoned with requests in flight: their answers are stale
                self._need_reset = self.uses_reset

    def _stream(self, source: Iterator[Any], steps: int, mode: int, window: int,
                pending: dict[int, float], encoding: str
                ) -> Iterator[protocol.Classification]:
        done: dict[int, protocol.Classification] = {}
        order: list[int] = []
        commands: dict[int, int] = {}  # SEQ -> the request's command (auto mixes them)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    image = next(source)
                except StopIteration:
                    exhausted = True
                    break
                command, payload = self._classify_request(image, steps, mode, encoding)
                seq = self._send(command, payload)
                pending[seq] = time.monotonic()
                commands[seq] = command
                order.append(seq)
            while order and order[0] in done:
                yield done.pop(order.pop(0))
            if not pending:
                return
            oldest = order[0]
            # Every request of the stream has the same steps and mode: any payload tells
            # how long the oldest one takes (its length only changes the link time a little).
            frame = self._receive(commands[oldest], set(pending), oldest, pending[oldest],
                                  payload, commands=commands)
            del pending[frame.seq], commands[frame.seq]
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
        self._prepare()
        seq = self._send(command, payload)
        frame = self._receive(command, {seq}, seq, time.monotonic(), payload)
        return self._check_status(frame)

    def _prepare(self) -> None:
        """Before an exchange: reset the device if a request was abandoned, or (without
        RESET) drop the bytes that arrived in between."""
        if self._need_reset:
            self.reset()
        elif not self.uses_reset:
            self.transport_reset()

    def transport_reset(self) -> None:
        """Drop stale bytes (late answers to abandoned requests) before a new exchange."""
        try:
            self.transport.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._port_failure("drop stale input", exc) from exc
        self._clear_input()

    def _clear_input(self) -> None:
        self.parser.reset()
        self._frames.clear()
        self._unframed.clear()

    def _send(self, command: int, payload: bytes) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        self._outstanding[seq] = (command | protocol.RESPONSE_FLAG) & 0xFF
        try:
            self.transport.write(protocol.encode_frame(command, seq, payload))
        except (serial.SerialException, OSError) as exc:
            raise self._port_failure("write to", exc) from exc
        return seq

    def _receive(self, command: int, expected: set[int], seq: int, sent: float,
                 payload: bytes = b"", *, commands: dict[int, int] | None = None
                 ) -> protocol.Frame:
        """The next response frame; it must answer ``command`` with a SEQ in ``expected``
        (or, given ``commands``, SEQ -> command, the command of its own SEQ).

        ``seq`` and ``sent`` name the request whose deadline (``sent + timeout``) applies;
        ``payload`` is its payload, for the expected time a timeout message quotes.
        """
        while True:
            item = self._next_item(command, seq, sent, payload)
            if self._is_late(item, expected):
                continue
            try:
                answers = (commands.get(item.seq, command)
                           if commands and isinstance(item, protocol.Frame) else command)
                frame = self._check_frame(item, answers, expected)
            except (CrcError, ProtocolError):
                self._need_reset = self.uses_reset  # the stream is out of step: start afresh
                raise
            self._outstanding.pop(frame.seq, None)
            return frame

    def _next_item(self, command: int, seq: int, sent: float, payload: bytes = b"", *,
                   until: float = math.inf, mark: int | None = None
                   ) -> protocol.Frame | protocol.FrameError | None:
        """The next parsed frame or frame error, reading until ``sent + timeout``; None if
        ``until`` (a ``time.monotonic()`` instant) comes first. A timeout counts the bytes that
        arrived since the byte count was ``mark`` (by default: since this call)."""
        deadline = sent + self.timeout
        mark = self._received if mark is None else mark
        while not self._frames:
            now = time.monotonic()
            if now >= deadline:
                self._need_reset = self.uses_reset
                raise self._timeout(command, seq, self._received - mark, payload)
            if now >= until:
                return None
            try:
                data = self.transport.read(self._bytes_wanted())
            except (serial.SerialException, OSError) as exc:
                raise self._port_failure("read from", exc) from exc
            if data:
                self._received += len(data)
                frames = self.parser.feed(data)
                if frames:
                    self._unframed.clear()
                else:
                    self._unframed += data
                    del self._unframed[:-PEER_TEXT_BYTES]
                self._frames += frames
        return self._frames.pop(0)

    def _port_failure(self, action: str, exc: Exception) -> PortError:
        """The error for a failed transport: quoting the peer's last words if it closed the
        connection after a line of text (a busy virtual board)."""
        if action != "read from":  # the peer's text may still be waiting to be read
            self._read_remaining()
        text = _peer_text(bytes(self._unframed))
        if text is not None:
            return PortError(f"port {self.port_name}: the other end closed the connection, "
                             f"saying: {text}", peer_text=text)
        closed = isinstance(exc, ConnectionError) or any(
            sign in str(exc) for sign in ("disconnected", "reset by peer", "Broken pipe"))
        if closed:
            return PortError(f"port {self.port_name}: the other end closed the connection "
                             "without a word (is it a lifpga board?)")
        return PortError(f"cannot {action} port {self.port_name}: {exc}")

    def _read_remaining(self) -> None:
        """Collect what the peer still sent, until the transport fails or runs dry."""
        for _ in range(PEER_TEXT_BYTES):
            try:
                data = self.transport.read(1)
            except (serial.SerialException, OSError):
                return
            if not data:
                return
            self._unframed += data
        del self._unframed[:-PEER_TEXT_BYTES]

    def _timeout(self, command: int, seq: int, received: int, payload: bytes) -> LinkTimeout:
        partial = (f", {len(self.parser.buffer)} of them a partial frame"
                   if self.parser.pending() else "")
        expected_s, expectation = self._expected_time(command, payload)
        after = (" The driver resets the device before the next request."
                 if self.uses_reset and command != Command.RESET else "")
        return LinkTimeout(
            f"no complete response to {_command_name(command)} (seq {seq}) within "
            f"{self.timeout:g} s on {self.port_name}: {received} bytes arrived{partial}. "
            f"{expectation}.{after}", expected_s, self.timeout)

    def _expected_time(self, command: int, payload: bytes) -> tuple[float | None, str]:
        """The request's worst-case time (seconds or None) and a sentence explaining it."""
        info = self._info
        baud = (info.baud if info and info.baud else self.baud) or DEFAULT_BAUD
        inputs, classes = (info.inputs, info.classes) if info else (0, 0)
        answers = {Command.INFO: 1 + struct.calcsize(protocol.INFO_FORMAT),
                   Command.CLASSIFY: protocol.classify_answer_length(classes),
                   Command.CLASSIFY_SPARSE: protocol.classify_answer_length(classes)}
        overhead = protocol.HEADER_BYTES + protocol.CRC_BYTES
        wire = 2 * overhead + len(payload) + answers.get(command, 1)
        link_s = wire * protocol.BITS_PER_BYTE / baud
        link = f"{1e3 * link_s:.2g} ms on the link at {baud} baud"
        if command == Command.RESET:
            return link_s, (f"A RESET answer takes about {link} after the answer on the wire "
                            "(is the device programmed and running, at this baud rate? A "
                            "device whose firmware predates RESET answers it only after every "
                            "request it holds)")
        if command not in protocol.CLASSIFY_COMMANDS or info is None or len(payload) < 3:
            return link_s, (f"A {_command_name(command)} answer takes about {link} (is the "
                            "device programmed and running, at this baud rate?)")
        steps, mode = struct.unpack_from(protocol.CLASSIFY_HEADER_FORMAT, payload)
        steps = steps or info.default_steps
        mode = info.default_mode if mode == protocol.MODE_DEFAULT else mode
        cycles = _max_cycles(info, steps, mode)
        what = (f"A CLASSIFY of {steps} steps in {'rate' if mode == MODE_RATE else 'current'}"
                f" mode takes at most {cycles:,} core cycles")
        if not info.clock_hz:
            return None, (f"{what}, plus {link}; the device reports clock_hz 0, so the "
                          "compute time is unknown")
        total = cycles / info.clock_hz + link_s
        virtual = ""
        if self.port_name.lower().startswith("socket://"):
            total = max(total, cycles / VIRTUAL_BOARD_CYCLES_PER_S + link_s)
            virtual = (f"; a virtual board simulates only about {VIRTUAL_BOARD_CYCLES_PER_S:,}"
                       " cycles per second, far slower than its clock")
        return total, (f"{what} at {info.clock_hz:,} Hz, plus {link}: up to {total:.3g} s"
                       f"{virtual}")

    def _is_late(self, item: protocol.Frame | protocol.FrameError, expected: set[int]) -> bool:
        """Whether ``item`` answers an earlier request that was abandoned: drop it then."""
        if not isinstance(item, protocol.Frame) or item.seq in expected:
            return False
        if self._outstanding.get(item.seq) == item.cmd:
            del self._outstanding[item.seq]
            return True
        # A RESET answer is only ever awaited by reset(): another one is stale (an earlier
        # client's RESET, answered before ours and taken for it, leaves ours behind).
        return item.cmd == Command.RESET | protocol.RESPONSE_FLAG

    def _bytes_wanted(self) -> int:
        """Bytes that surely belong to the frame being parsed, so a read never over-waits.

        Between frames that is 1: a byte that is not a SYNC is then read alone, so a line of
        text the peer sends before closing is kept whole (pyserial's socket transport loses
        the bytes of a read that ends in the peer's close).
        """
        buffered = self.parser.buffer
        if not buffered:
            return 1
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

    @staticmethod
    def _check_steps_mode(steps: Any, mode: Any) -> None:
        for name, value in (("steps", steps), ("mode", mode)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ParameterError(f"{name} must be an integer, got {value!r}")
        if not 0 <= steps < 1 << STEPS_BITS:
            raise ParameterError(f"steps must lie in 0 .. {(1 << STEPS_BITS) - 1}, got {steps}")
        if mode not in MODES.values():
            raise ParameterError(f"mode must be one of {sorted(MODES.values())}, got {mode}")

    def _check_device_encoding(self, encoding: str | None) -> str:
        """The encoding to use (``encoding``, or the driver's), checked against the device's
        INFO version: ``"auto"`` becomes ``"dense"`` for a device without CLASSIFY_SPARSE."""
        encoding = self.encoding if encoding is None else check_encoding(encoding)
        version = self.cached_info.version
        if version >= protocol.SPARSE_VERSION:
            return encoding
        if encoding == "sparse":
            raise ParameterError(
                f"the device on {self.port_name} speaks protocol version {version}, which has "
                f"no CLASSIFY_SPARSE (it needs version {protocol.SPARSE_VERSION}); use "
                "encoding 'dense' or 'auto'")
        return "dense"

    def _classify_request(self, image: Any, steps: int, mode: int,
                          encoding: str | None) -> tuple[int, bytes]:
        """The command and payload for one image, checked before anything is sent."""
        self._check_steps_mode(steps, mode)
        encoding = self._check_device_encoding(encoding)
        info = self.cached_info
        pixels = validate_image(image, info.inputs, info.pixel_max)
        command, payload = protocol.classify_request(pixels, int(steps), int(mode), encoding)
        if len(payload) > protocol.MAX_PAYLOAD:
            raise ImageError(f"this image takes {len(payload)} bytes as {command.name}, above "
                             f"the {protocol.MAX_PAYLOAD} a frame may carry; use encoding "
                             "'auto' or 'dense'")
        return command, payload

    def _unpack_classification(self, payload: bytes) -> protocol.Classification:
        classes = self.cached_info.classes
        try:
            result = protocol.unpack_classification(payload, classes)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from exc
        if result.label >= classes:
            raise ProtocolError(f"the device answered label {result.label}, outside the "
                                f"{classes} classes 0 .. {classes - 1} it reports")
        return result


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
