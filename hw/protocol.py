"""The lifpga serial protocol: constants, CRC, frame layout, payloads, and a reference device.

Everything both the gateware (the UART frame engine) and the host driver need is defined here
once; the host imports it (``firmware/``), the gateware uses it, and ``docs/PROTOCOL.md``
describes the same bytes for someone writing a client from scratch.

Frame (both directions), all multi-byte fields little-endian::

    offset  size  field
    0       2     SYNC = A5 5A
    2       1     CMD   request: command code; response: command code | 0x80
    3       1     SEQ   chosen by the host, echoed in the response
    4       2     LEN   payload length in bytes
    6       LEN   PAYLOAD (a response's payload starts with a STATUS byte)
    6+LEN   2     CRC   CRC-16/CCITT-FALSE of bytes 2 .. 6+LEN-1 (CMD through PAYLOAD)

CRC-16/CCITT-FALSE (the CRC catalogue's CRC-16/IBM-3740): polynomial 0x1021, initial value
0xFFFF, no reflection, no final XOR (check value: ``crc16(b"123456789") == 0x29B1``). The
algorithm is :data:`CRC_ALGORITHM` from Amaranth's ``amaranth.lib.crc`` catalogue, so the
gateware's CRC processor and the host compute it from one definition.

:class:`ReferenceDevice` is the executable specification of the device side: bytes in,
response bytes out, answers from :mod:`golden.model`. The gateware frame engine must answer
every byte sequence exactly as it does; host-driver tests run against it over a socket.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

import numpy as np
from amaranth.lib.crc import catalog

from golden import model
from golden.constants import MODE_BY_NAME, MODE_CURRENT, MODE_RATE

PROTOCOL_VERSION = 1

SYNC = b"\xa5\x5a"
#: Bytes before the payload: SYNC, CMD, SEQ, LEN.
HEADER_BYTES = 6
CRC_BYTES = 2
#: Set in a response's CMD byte.
RESPONSE_FLAG = 0x80
#: Longest payload a frame may carry. A device refuses a larger LEN at once (``BAD_LENGTH``);
#: the host parser does the same for responses.
MAX_PAYLOAD = 1024
#: A frame that stalls for this many byte times mid-way is abandoned (``TIMEOUT``).
IDLE_TIMEOUT_BYTES = 64

#: ``mode`` byte of CLASSIFY that selects the network image's default encoder mode.
MODE_DEFAULT = 0xFF

#: CLASSIFY requests the device buffers while its core works on another one. A request whose
#: header arrives while every slot is taken is consumed and answered ``BUSY``.
IMAGE_SLOTS = 2
#: CLASSIFY requests a host may have in flight without ever getting ``BUSY``: one in the core
#: (or its answer on the wire) and :data:`IMAGE_SLOTS` waiting.
MAX_IN_FLIGHT = IMAGE_SLOTS + 1
#: Replies the device queues at least (errors and INFO included) before it may drop a frame:
#: the depth of its requests FIFO. (Its replies FIFO and the reply being sent add 5 more.)
REPLY_QUEUE = 8


class Command(IntEnum):
    """Request codes."""

    INFO = 0x01
    CLASSIFY = 0x02


class Status(IntEnum):
    """First payload byte of every response."""

    OK = 0x00
    BAD_CRC = 0x01          # the frame's CRC does not match its bytes
    UNKNOWN_COMMAND = 0x02  # CMD is not a known request code
    BAD_LENGTH = 0x03       # LEN is wrong for the command, or above MAX_PAYLOAD
    PIXEL_RANGE = 0x04      # a pixel is above the image's pixel_max
    BAD_PARAMETER = 0x05    # an unknown encoder mode
    TIMEOUT = 0x06          # the frame stopped arriving mid-way
    BUSY = 0x07             # CLASSIFY while all IMAGE_SLOTS are taken (flow control)


#: The frame CRC: CRC-16/CCITT-FALSE, a.k.a. CRC-16/IBM-3740.
CRC_ALGORITHM = catalog.CRC16_IBM_3740
_CRC_BYTES = CRC_ALGORITHM(data_width=8)


def crc16(data: bytes) -> int:
    """CRC of ``data`` as the frame carries it."""
    return _CRC_BYTES.compute(data)


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One complete frame."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit LEN")
    body = struct.pack("<BBH", cmd, seq & 0xFF, len(payload)) + payload
    return SYNC + body + struct.pack("<H", crc16(body))


class Frame(NamedTuple):
    cmd: int
    seq: int
    payload: bytes


class FrameError(ValueError):
    """A frame whose bytes are inconsistent: ``status`` says how."""

    def __init__(self, status: Status, cmd: int, seq: int, message: str):
        super().__init__(message)
        self.status, self.cmd, self.seq = status, cmd, seq


class FrameParser:
    """Incremental frame parser with resynchronisation (the host's; the device's is
    :class:`DeviceParser`).

    Feed bytes with :meth:`feed`; it returns the complete frames (and :class:`FrameError` for
    frames with a bad CRC or an oversized LEN) found so far. Bytes before a SYNC are dropped;
    after a bad frame the parser hunts for the next SYNC from the byte after the bad SYNC, so a
    corrupt or cut-off frame never swallows the valid frame behind it.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self.buffer = bytearray()
        self.dropped = 0

    def pending(self) -> bool:
        """True while part of a frame is buffered (for idle timeouts)."""
        return bool(self.buffer)

    def reset(self) -> bytes:
        """Abandon the buffered partial frame; returns its bytes."""
        stale, self.buffer = bytes(self.buffer), bytearray()
        return stale

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add received bytes; returns the frames and frame errors they complete, in order."""
        self.buffer += data
        out: list[Frame | FrameError] = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                # Keep a trailing first SYNC byte: the second may be on its way.
                keep = 1 if self.buffer[-1:] == SYNC[:1] else 0
                self.dropped += len(self.buffer) - keep
                del self.buffer[:len(self.buffer) - keep]
                return out
            self.dropped += start
            del self.buffer[:start]
            if len(self.buffer) < HEADER_BYTES:
                return out
            cmd, seq, length = struct.unpack_from("<BBH", self.buffer, 2)
            if length > self.max_payload:
                out.append(FrameError(Status.BAD_LENGTH, cmd, seq,
                                      f"LEN {length} is above the maximum {self.max_payload}"))
                del self.buffer[:len(SYNC)]
                continue
            total = HEADER_BYTES + length + CRC_BYTES
            if len(self.buffer) < total:
                return out
            body = bytes(self.buffer[2:HEADER_BYTES + length])
            (crc,) = struct.unpack_from("<H", self.buffer, HEADER_BYTES + length)
            if crc != crc16(body):
                out.append(FrameError(Status.BAD_CRC, cmd, seq,
                                      f"CRC {crc:04x} does not match {crc16(body):04x}"))
                del self.buffer[:len(SYNC)]
                continue
            out.append(Frame(cmd, seq, body[4:]))
            del self.buffer[:total]


# --- payloads ----------------------------------------------------------------------------------

#: INFO response after STATUS: version, hash (32 bytes), inputs, neurons, classes, lanes,
#: default steps, pixel_max, default mode, clock in Hz, baud rate.
INFO_FORMAT = "<B32sHHBBHBBII"
#: CLASSIFY request before the pixels: steps (0 = image default), mode (0, 1 or MODE_DEFAULT).
CLASSIFY_HEADER_FORMAT = "<HB"
#: CLASSIFY response after STATUS: label, spike count, cycles; then one int32 score per class.
CLASSIFY_RESULT_FORMAT = "<BII"


class Info(NamedTuple):
    version: int
    image_hash: bytes
    inputs: int
    neurons: int
    classes: int
    lanes: int
    default_steps: int
    pixel_max: int
    default_mode: int
    clock_hz: int
    baud: int


class Classification(NamedTuple):
    label: int
    spike_count: int
    cycles: int
    scores: tuple[int, ...]


def pack_info(info: Info) -> bytes:
    """INFO response payload (STATUS OK first)."""
    return bytes([Status.OK]) + struct.pack(INFO_FORMAT, *info)


def unpack_info(payload: bytes) -> Info:
    """Parse an OK INFO response payload; :class:`ValueError` if it is not one."""
    if len(payload) != 1 + struct.calcsize(INFO_FORMAT) or payload[0] != Status.OK:
        raise ValueError(f"not an OK INFO response: {len(payload)} bytes, "
                         f"status {payload[:1].hex() or 'missing'}")
    return Info(*struct.unpack(INFO_FORMAT, payload[1:]))


def pack_classify(pixels, steps: int = 0, mode: int = MODE_DEFAULT) -> bytes:
    """CLASSIFY request payload. Checks only the byte range (0..255), not ``pixel_max``, so
    that out-of-range frames can be built on purpose; the driver checks ``pixel_max``."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 1 or pixels.dtype.kind not in "iu" or pixels.min(initial=0) < 0 \
            or pixels.max(initial=0) > 255:
        raise ValueError("pixels must be a flat array of integers in 0 .. 255")
    return struct.pack(CLASSIFY_HEADER_FORMAT, steps, mode) + pixels.astype(np.uint8).tobytes()


def pack_classification(result: Classification) -> bytes:
    """CLASSIFY response payload (STATUS OK first)."""
    scores = np.asarray(result.scores, dtype="<i4").tobytes()
    return (bytes([Status.OK])
            + struct.pack(CLASSIFY_RESULT_FORMAT, result.label, result.spike_count, result.cycles)
            + scores)


def unpack_classification(payload: bytes, classes: int) -> Classification:
    """Parse an OK CLASSIFY response payload for ``classes`` classes."""
    head = 1 + struct.calcsize(CLASSIFY_RESULT_FORMAT)
    if len(payload) != head + 4 * classes:
        raise ValueError(f"CLASSIFY response of {len(payload)} bytes, expected "
                         f"{head + 4 * classes} for {classes} classes")
    label, spikes, cycles = struct.unpack_from(CLASSIFY_RESULT_FORMAT, payload, 1)
    scores = tuple(int(s) for s in np.frombuffer(payload[head:], dtype="<i4"))
    return Classification(label, spikes, cycles, scores)


# --- the device, as a reference model ----------------------------------------------------------


def device_info(net: model.Network, manifest: dict, *, lanes: int, clock_hz: int,
                baud: int) -> Info:
    """What a device running ``net`` answers to INFO."""
    return Info(PROTOCOL_VERSION, bytes.fromhex(manifest["hash"].split(":")[1]), net.inputs,
                net.neurons, net.classes, lanes, manifest["timesteps"], manifest["pixel_max"],
                MODE_BY_NAME[manifest["encoder_mode"]], clock_hz, baud)


def request_length(cmd: int, inputs: int) -> int | None:
    """Payload length a request ``cmd`` must have; ``None`` for an unknown command."""
    if cmd == Command.INFO:
        return 0
    if cmd == Command.CLASSIFY:
        return struct.calcsize(CLASSIFY_HEADER_FORMAT) + inputs
    return None


def classify_answer_length(classes: int) -> int:
    """Payload length of an OK CLASSIFY answer: STATUS, the result fields, one int32 score
    per class."""
    return 1 + struct.calcsize(CLASSIFY_RESULT_FORMAT) + 4 * classes


def classify_frame_bytes(inputs: int, classes: int) -> tuple[int, int]:
    """Bytes on the wire of a CLASSIFY request and of its OK answer, framing included."""
    overhead = HEADER_BYTES + CRC_BYTES
    return (overhead + request_length(Command.CLASSIFY, inputs),
            overhead + classify_answer_length(classes))


class Request(NamedTuple):
    """A request the device parser accepted (``status`` OK) or refused (any other status)."""

    cmd: int
    seq: int
    status: Status
    payload: bytes = b""


class DeviceParser:
    """The device's frame parser, one byte at a time: the gateware's state machine in software.

    It differs from the host's :class:`FrameParser` in what it does after a bad frame, because
    the gateware cannot go back over bytes it has already consumed:

    * The header is checked as soon as LEN arrives. LEN above :data:`MAX_PAYLOAD`, or a known
      command with the wrong LEN, is refused at once (``BAD_LENGTH``), and hunting for SYNC
      resumes with the next byte.
    * Otherwise the frame is consumed whole, ``LEN + 2`` more bytes, and then judged: a wrong
      CRC gives ``BAD_CRC``; an unknown command ``UNKNOWN_COMMAND``.
    * A byte equal to ``A5`` while waiting for ``5A`` keeps waiting for ``5A``.

    Parameters
    ----------
    inputs : M, the CLASSIFY pixel count.
    """

    _HUNT, _SYNC1, _CMD, _SEQ, _LEN0, _LEN1, _BODY = range(7)

    def __init__(self, inputs: int):
        self.inputs = inputs
        self.state = self._HUNT
        self.cmd = self.seq = self.length = 0
        self.body = bytearray()

    def pending(self) -> bool:
        """True while part of a frame has been received."""
        return self.state != self._HUNT

    def timeout(self) -> Request | None:
        """The link went idle: abandon a partial frame; ``TIMEOUT`` if CMD and SEQ are known."""
        known = self.state in (self._LEN0, self._LEN1, self._BODY)
        request = Request(self.cmd, self.seq, Status.TIMEOUT) if known else None
        self.state = self._HUNT
        return request

    def feed(self, byte: int) -> Request | None:
        """One received byte; returns the request it completes or refuses, if any."""
        state = self.state
        if state == self._HUNT:
            self.state = self._SYNC1 if byte == SYNC[0] else self._HUNT
        elif state == self._SYNC1:
            self.state = (self._CMD if byte == SYNC[1]
                          else self._SYNC1 if byte == SYNC[0] else self._HUNT)
        elif state == self._CMD:
            self.cmd, self.state = byte, self._SEQ
        elif state == self._SEQ:
            self.seq, self.state = byte, self._LEN0
        elif state == self._LEN0:
            self.length, self.state = byte, self._LEN1
        elif state == self._LEN1:
            self.length |= byte << 8
            expected = request_length(self.cmd, self.inputs)
            if self.length > MAX_PAYLOAD or expected not in (None, self.length):
                self.state = self._HUNT
                return Request(self.cmd, self.seq, Status.BAD_LENGTH)
            self.body = bytearray()
            self.state = self._BODY
        else:
            self.body.append(byte)
            if len(self.body) == self.length + CRC_BYTES:
                self.state = self._HUNT
                payload = bytes(self.body[:self.length])
                crc = int.from_bytes(self.body[self.length:], "little")
                head = struct.pack("<BBH", self.cmd, self.seq, self.length)
                if crc != crc16(head + payload):
                    return Request(self.cmd, self.seq, Status.BAD_CRC)
                if request_length(self.cmd, self.inputs) is None:
                    return Request(self.cmd, self.seq, Status.UNKNOWN_COMMAND)
                return Request(self.cmd, self.seq, Status.OK, payload)
        return None


class ReferenceDevice:
    """The device side of the protocol in software: what the board answers, byte for byte.

    It answers at once and buffers without limit, so it never sends ``BUSY`` and never drops a
    reply; a host within :data:`MAX_IN_FLIGHT` requests and :data:`REPLY_QUEUE` replies sees
    the gateware answer exactly the same bytes.

    Parameters
    ----------
    net, manifest : a loaded network image (``golden.image.load``).
    lanes, clock_hz, baud : reported by INFO (``lanes`` also sets ``cycles`` through
        ``cycles_model``, a callable ``(pixels, steps, mode) -> int``; without one, 0).
    """

    def __init__(self, net: model.Network, manifest: dict, *, lanes: int = 16,
                 clock_hz: int = 0, baud: int = 0, cycles_model=None):
        self.net, self.manifest = net, manifest
        self.parser = DeviceParser(net.inputs)
        self.info = device_info(net, manifest, lanes=lanes, clock_hz=clock_hz, baud=baud)
        self.cycles_model = cycles_model

    def idle_timeout(self) -> bytes:
        """The link went idle mid-frame: abandon the partial frame.

        A frame cut off after its CMD and SEQ are known is answered with TIMEOUT; fewer bytes
        (a stray SYNC, noise) are dropped silently, since there is nothing to address a reply to.
        """
        request = self.parser.timeout()
        return self._answer(request) if request else b""

    def receive(self, data: bytes) -> bytes:
        """Bytes from the host; returns the response bytes they complete."""
        out = b""
        for byte in data:
            if request := self.parser.feed(byte):
                out += self._answer(request)
        return out

    def _error(self, cmd: int, seq: int, status: Status) -> bytes:
        return encode_frame((cmd | RESPONSE_FLAG) & 0xFF, seq, bytes([status]))

    def _answer(self, request: Request) -> bytes:
        reply = (request.cmd | RESPONSE_FLAG) & 0xFF
        if request.status != Status.OK:
            return self._error(request.cmd, request.seq, request.status)
        if request.cmd == Command.INFO:
            return encode_frame(reply, request.seq, pack_info(self.info))
        head = struct.calcsize(CLASSIFY_HEADER_FORMAT)
        steps, mode = struct.unpack_from(CLASSIFY_HEADER_FORMAT, request.payload)
        pixels = np.frombuffer(request.payload[head:], dtype=np.uint8).astype(np.int64)
        if mode == MODE_DEFAULT:
            mode = self.info.default_mode
        if mode not in (MODE_CURRENT, MODE_RATE):
            return self._error(request.cmd, request.seq, Status.BAD_PARAMETER)
        if pixels.max() > self.info.pixel_max:
            return self._error(request.cmd, request.seq, Status.PIXEL_RANGE)
        steps = steps or self.info.default_steps
        result = model.run(pixels[None, :], self.net, steps, mode)
        cycles = self.cycles_model(pixels, steps, mode) if self.cycles_model else 0
        answer = Classification(int(result.classes[-1, 0]), int(result.spike_count[0]),
                                cycles, tuple(int(s) for s in result.scores[-1, 0]))
        return encode_frame(reply, request.seq, pack_classification(answer))
