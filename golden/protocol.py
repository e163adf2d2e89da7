"""The lifpga serial protocol: constants, CRC, frame layout and payloads, in plain Python.

This module is the protocol's single definition. The host driver (``firmware/``) imports it
without any HDL toolchain (it needs only NumPy); the gateware (``hw/frame_*.py``) and the
reference device (:mod:`golden.device`) import the same constants; ``docs/PROTOCOL.md``
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
parameters are :data:`CRC_WIDTH` .. :data:`CRC_XOROUT`; :func:`crc16` is a table-driven
implementation of them. The gateware uses ``amaranth.lib.crc`` (``hw/crc.py``), and a test
proves the two agree.

An image goes out as CLASSIFY (:func:`pack_classify`, M pixel bytes) or, since protocol
version 2, as CLASSIFY_SPARSE (:func:`pack_classify_sparse`, zero runs skipped);
:func:`classify_request` picks one, :func:`link_figures` says what either allows on a link.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

import numpy as np

#: Reported by INFO. Version 2 added CLASSIFY_SPARSE; a host sends it only to a device whose
#: INFO version is at least :data:`SPARSE_VERSION`. Version 3 appended INFO's cycle bound
#: (:data:`CYCLE_BOUND_VERSION`).
PROTOCOL_VERSION = 3
#: The first protocol version with :attr:`Command.CLASSIFY_SPARSE`.
SPARSE_VERSION = 2
#: The first protocol version whose INFO ends with ``cycles_base`` and ``cycles_per_step``.
CYCLE_BOUND_VERSION = 3

SYNC = b"\xa5\x5a"
#: The header after SYNC: CMD, SEQ, LEN (u8, u8, u16).
HEADER_FORMAT = "<BBH"
#: Bytes before the payload: SYNC, CMD, SEQ, LEN.
HEADER_BYTES = len(SYNC) + struct.calcsize(HEADER_FORMAT)
CRC_BYTES = 2
#: Set in a response's CMD byte.
RESPONSE_FLAG = 0x80
#: Longest payload a frame may carry. A device refuses a larger LEN at once (``BAD_LENGTH``);
#: the host parser does the same for responses.
MAX_PAYLOAD = 1024
#: A frame that stalls for this many byte times mid-way is abandoned (``TIMEOUT``).
IDLE_TIMEOUT_BYTES = 64
#: The longest idle timeout of any device over TCP, seconds: the reference board's floor
#: (``sim.refboard.IDLE_TIMEOUT_MIN_S``, TCP delivery jitters more than a UART); the virtual
#: board's is about 25 ms, a UART's ``IDLE_TIMEOUT_BYTES`` byte times. A host awaiting a RESET
#: answer waits longer than this before it sends RESET again.
IDLE_TIMEOUT_FLOOR_S = 0.05

#: Bits on the wire per byte at 8N1: start, 8 data bits, stop.
BITS_PER_BYTE = 10
#: Largest window (CLASSIFY requests in flight) the host driver accepts. Beyond
#: :data:`MAX_IN_FLIGHT` a board may answer ``BUSY``, which the driver raises as a
#: ``DeviceError``; windows above it are for a reference device, which never sends BUSY.
MAX_WINDOW = 128

#: ``mode`` byte of CLASSIFY that selects the network image's default encoder mode.
MODE_DEFAULT = 0xFF

#: CLASSIFY requests the device buffers while its core works on another one. A request whose
#: header arrives while every slot is taken is consumed and answered ``BUSY``.
IMAGE_SLOTS = 2
#: CLASSIFY requests a host may have in flight without ever getting ``BUSY``: one in the core
#: (or its answer on the wire) and :data:`IMAGE_SLOTS` waiting.
MAX_IN_FLIGHT = IMAGE_SLOTS + 1
#: Depth D of the device's requests queue. ``D + 2`` unanswered requests of any kind (one in
#: the core, D queued, one held by the parser) always fit (docs/PROTOCOL.md, Pipelining). It
#: is kept small enough for LUT RAM: a 126-deep queue went to block RAM on the ECP5, whose
#: 5.6 ns read then decided the dispatcher's ready and took the ULX3S-85F to 89.5 MHz.
REPLY_QUEUE = 8


class Command(IntEnum):
    """Request codes."""

    INFO = 0x01
    CLASSIFY = 0x02
    #: Abandon every request not yet answered: the device stops the image it is computing,
    #: empties its queues and image slots, finishes the answer already on the wire (if any),
    #: then answers RESET. Every byte a host receives before that answer is stale.
    RESET = 0x03
    #: CLASSIFY with the pixels run-length coded (:func:`pack_classify_sparse`); answered
    #: exactly as CLASSIFY is (response CMD ``0x84``). Since protocol version 2.
    CLASSIFY_SPARSE = 0x04


#: The two requests that classify an image; both are answered with a classification.
CLASSIFY_COMMANDS = (Command.CLASSIFY, Command.CLASSIFY_SPARSE)


class Status(IntEnum):
    """First payload byte of every response."""

    OK = 0x00
    BAD_CRC = 0x01          # the frame's CRC does not match its bytes
    UNKNOWN_COMMAND = 0x02  # CMD is not a known request code
    BAD_LENGTH = 0x03       # LEN is wrong for the command, or above MAX_PAYLOAD; or a
                            # CLASSIFY_SPARSE payload that does not describe exactly M pixels
    PIXEL_RANGE = 0x04      # a pixel is above the image's pixel_max
    BAD_PARAMETER = 0x05    # an unknown encoder mode
    TIMEOUT = 0x06          # the frame stopped arriving mid-way
    BUSY = 0x07             # CLASSIFY while all IMAGE_SLOTS are taken (flow control)


#: The frame CRC, CRC-16/CCITT-FALSE (a.k.a. CRC-16/IBM-3740), in the Rocksoft parameters
#: of the CRC catalogue: width, polynomial, initial value, reflect in/out, final XOR, check.
CRC_WIDTH = 16
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
CRC_REFIN = False
CRC_REFOUT = False
CRC_XOROUT = 0x0000
#: ``crc16(b"123456789")``.
CRC_CHECK = 0x29B1


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC of ``data`` as the frame carries it (MSB-first, table-driven)."""
    crc = CRC_INIT
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc ^ CRC_XOROUT


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    """One complete frame."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit LEN")
    body = struct.pack(HEADER_FORMAT, cmd, seq & 0xFF, len(payload)) + payload
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

    def resync(self) -> list[Frame | FrameError]:
        """Give up the buffered partial frame as stale: drop its SYNC and parse the bytes
        behind it again; returns the frames (and frame errors) they hold.

        A header whose body was lost (a cut frame, a UART buffer that overflowed, noise)
        otherwise buffers up to LEN + 8 bytes, the valid frames behind it included; a host
        that awaits a known short answer (RESET) calls this when the answer is overdue.
        """
        stale = self.reset()
        self.dropped += len(stale[:len(SYNC)])
        return self.feed(stale[len(SYNC):]) if len(stale) > len(SYNC) else []

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
            cmd, seq, length = struct.unpack_from(HEADER_FORMAT, self.buffer, len(SYNC))
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
#: default steps, pixel_max, default mode, clock in Hz, baud rate, and (version 3) the cycle
#: bound: no CLASSIFY of ``steps`` computes longer than ``cycles_base + steps *
#: cycles_per_step`` cycles.
INFO_FORMAT = "<B32sHHBBHBBIIII"
#: A version-2 device's INFO (without the cycle bound).
INFO_FORMAT_V2 = "<B32sHHBBHBBII"
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
    #: The cycle bound (0, 0 from a version-2 device: unknown).
    cycles_base: int = 0
    cycles_per_step: int = 0


class Classification(NamedTuple):
    label: int
    spike_count: int
    cycles: int
    scores: tuple[int, ...]


def pack_info(info: Info) -> bytes:
    """INFO response payload (STATUS OK first)."""
    return bytes([Status.OK]) + struct.pack(INFO_FORMAT, *info)


def unpack_info(payload: bytes) -> Info:
    """Parse an OK INFO response payload, of this version or of version 2 (no cycle bound);
    :class:`ValueError` if it is not one."""
    for layout in (INFO_FORMAT, INFO_FORMAT_V2):
        if len(payload) == 1 + struct.calcsize(layout) and payload[:1] == bytes([Status.OK]):
            return Info(*struct.unpack(layout, payload[1:]))
    raise ValueError(f"not an OK INFO response: {len(payload)} bytes, "
                     f"status {payload[:1].hex() or 'missing'}")


def pack_classify(pixels, steps: int = 0, mode: int = MODE_DEFAULT) -> bytes:
    """CLASSIFY request payload. Checks only the byte range (0..255), not ``pixel_max``, so
    that out-of-range frames can be built on purpose; the driver checks ``pixel_max``."""
    return struct.pack(CLASSIFY_HEADER_FORMAT, steps, mode) + _pixel_array(pixels).tobytes()


# --- CLASSIFY_SPARSE -------------------------------------------------------------------------

#: Largest count in one token byte (a zero run or a literal run).
SPARSE_RUN_MAX = 255
#: Bytes of a token before its literals: the zero-run length, the literal count.
SPARSE_TOKEN_BYTES = 2
#: The encoder keeps a zero run of at most this many pixels inside a literal run: as literals
#: it costs at most as many bytes as the new token that skipping it would need.
SPARSE_GAP = SPARSE_TOKEN_BYTES


def sparse_min_length(inputs: int) -> int:
    """Shortest CLASSIFY_SPARSE payload for M = ``inputs``, the all-zero image's: the header,
    ``M // 255`` tokens of 255 zeros, and for the ``r = M % 255`` pixels left either ``r``
    literal zeros in the last of them (``r <= 2``) or a token of ``r`` zeros; at least one
    token."""
    full, rest = divmod(inputs, SPARSE_RUN_MAX)
    tokens_bytes = max(SPARSE_TOKEN_BYTES,
                       SPARSE_TOKEN_BYTES * full + min(rest, SPARSE_TOKEN_BYTES))
    return struct.calcsize(CLASSIFY_HEADER_FORMAT) + tokens_bytes


def _pixel_array(pixels) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 1 or pixels.dtype.kind not in "iu" or pixels.min(initial=0) < 0 \
            or pixels.max(initial=0) > 255:
        raise ValueError("pixels must be a flat array of integers in 0 .. 255")
    return pixels.astype(np.uint8)


def sparse_tokens(pixels) -> bytes:
    """The token stream of CLASSIFY_SPARSE for ``pixels`` (the payload after steps and mode).

    Each token is ``zeros, count, count literal bytes``: skip ``zeros`` zero pixels, then take
    ``count`` pixels as they are (either count 0 .. 255). The tokens describe exactly
    ``len(pixels)`` pixels. The encoder skips every zero run, except that a run of at most
    :data:`SPARSE_GAP` zeros right after a literal travels as literals, which never costs
    more; apart from the 255 caps no shorter token stream exists.
    """
    x = _pixel_array(pixels)
    nonzero = np.flatnonzero(x)
    m, pos, out = len(x), 0, bytearray()
    while pos < m:
        # The zero run ahead, capped: the next nonzero pixel (or the end) bounds it.
        k = np.searchsorted(nonzero, pos)
        next_nonzero = int(nonzero[k]) if k < len(nonzero) else m
        zeros = min(next_nonzero - pos, SPARSE_RUN_MAX)
        pos += zeros
        start = pos
        while pos < m and pos - start < SPARSE_RUN_MAX:
            if x[pos]:
                pos += 1
                continue
            k = np.searchsorted(nonzero, pos)
            run = (int(nonzero[k]) if k < len(nonzero) else m) - pos
            if run > SPARSE_GAP or pos + run - start > SPARSE_RUN_MAX:
                break
            pos += run
        out += bytes([zeros, pos - start]) + x[start:pos].tobytes()
    return bytes(out)


def pack_classify_sparse(pixels, steps: int = 0, mode: int = MODE_DEFAULT) -> bytes:
    """CLASSIFY_SPARSE request payload: steps and mode as for CLASSIFY, then
    :func:`sparse_tokens`. Like :func:`pack_classify` it checks only the byte range, and not
    :data:`MAX_PAYLOAD` either. An image with few zeros needs up to ``2 + 2 * (M // 255)``
    bytes more than as CLASSIFY (:func:`classify_request` then picks CLASSIFY)."""
    return struct.pack(CLASSIFY_HEADER_FORMAT, steps, mode) + sparse_tokens(pixels)


def unpack_sparse_pixels(tokens: bytes, inputs: int) -> np.ndarray | None:
    """The ``inputs`` pixels (uint8) a CLASSIFY_SPARSE token stream describes; ``None`` if it
    describes more or fewer, or its last token is cut short (the device's ``BAD_LENGTH``)."""
    pixels = np.zeros(inputs, dtype=np.uint8)
    at = px = 0
    while at < len(tokens):
        if at + SPARSE_TOKEN_BYTES > len(tokens):
            return None
        zeros, count = tokens[at], tokens[at + 1]
        at += SPARSE_TOKEN_BYTES
        px += zeros
        if at + count > len(tokens) or px + count > inputs:
            return None
        pixels[px:px + count] = np.frombuffer(tokens, np.uint8, count, at)
        px, at = px + count, at + count
    return pixels if px == inputs else None


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


def request_lengths(cmd: int, inputs: int) -> range | None:
    """The payload lengths (LEN) a request ``cmd`` may have; ``None`` for an unknown command.

    A device refuses any other LEN as soon as the header arrives (``BAD_LENGTH``). For
    CLASSIFY_SPARSE that is only a bound: its LEN is right when its tokens describe exactly
    M pixels, which is judged when the frame is complete (:func:`unpack_sparse_pixels`).
    """
    if cmd in (Command.INFO, Command.RESET):
        return range(0, 1)
    if cmd == Command.CLASSIFY:
        dense = struct.calcsize(CLASSIFY_HEADER_FORMAT) + inputs
        return range(dense, dense + 1)
    if cmd == Command.CLASSIFY_SPARSE:
        return range(sparse_min_length(inputs), MAX_PAYLOAD + 1)
    return None


def request_length(cmd: int, inputs: int) -> int | None:
    """Payload length a request ``cmd`` must have; ``None`` for an unknown command or one
    whose length varies (CLASSIFY_SPARSE, see :func:`request_lengths`)."""
    lengths = request_lengths(cmd, inputs)
    return lengths.start if lengths is not None and len(lengths) == 1 else None


def classify_answer_length(classes: int) -> int:
    """Payload length of an OK CLASSIFY answer: STATUS, the result fields, one int32 score
    per class."""
    return 1 + struct.calcsize(CLASSIFY_RESULT_FORMAT) + 4 * classes


def classify_frame_bytes(inputs: int, classes: int) -> tuple[int, int]:
    """Bytes on the wire of a CLASSIFY request and of its OK answer, framing included."""
    overhead = HEADER_BYTES + CRC_BYTES
    return (overhead + request_length(Command.CLASSIFY, inputs),
            overhead + classify_answer_length(classes))


class LinkRate(NamedTuple):
    """What a UART link allows for CLASSIFY of ``inputs`` pixels and ``classes`` scores."""

    request_bytes: int
    answer_bytes: int
    #: One request at a time: request and answer in turn on a half-used link.
    images_per_s_serial: float
    #: Pipelined: requests and answers overlap (full duplex), the longer of the two sets it.
    images_per_s_pipelined: float


def link_rate(inputs: int, classes: int, baud: float) -> LinkRate:
    """The link's CLASSIFY throughput at ``baud`` (8N1), the one formula every report uses."""
    request, answer = classify_frame_bytes(inputs, classes)
    bytes_per_s = baud / BITS_PER_BYTE
    return LinkRate(request, answer, bytes_per_s / (request + answer),
                    bytes_per_s / max(request, answer))


#: CLASSIFY encodings a host may choose: CLASSIFY (``dense``), CLASSIFY_SPARSE (``sparse``),
#: or per image whichever frame is shorter, CLASSIFY on a tie (``auto``).
ENCODINGS = ("dense", "sparse", "auto")


def classify_request(pixels, steps: int = 0, mode: int = MODE_DEFAULT,
                     encoding: str = "auto") -> tuple[Command, bytes]:
    """The request command and payload for ``pixels`` in ``encoding`` (:data:`ENCODINGS`)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    dense = pack_classify(pixels, steps, mode) if encoding != "sparse" else None
    sparse = pack_classify_sparse(pixels, steps, mode) if encoding != "dense" else None
    if dense is None or (sparse is not None and len(sparse) < len(dense)):
        return Command.CLASSIFY_SPARSE, sparse
    return Command.CLASSIFY, dense


class LinkFigures(NamedTuple):
    """What a UART link allows for CLASSIFY of a set of images in one encoding: request frame
    bytes (mean and largest) and images/s, one at a time and pipelined, for the mean image
    (the rate of a long stream of these images) and for the worst one."""

    encoding: str
    images: int
    request_bytes_mean: float
    request_bytes_max: int
    answer_bytes: int
    images_per_s_serial_mean: float
    images_per_s_serial_worst: float
    images_per_s_pipelined_mean: float
    images_per_s_pipelined_worst: float


def link_figures(images, classes: int, baud: float, encoding: str = "dense") -> LinkFigures:
    """:func:`link_rate` for real images: every image's request frame in ``encoding``, framing
    included, and the answer for ``classes`` classes, at ``baud`` (8N1). The one source of
    the link figures for an encoding other than CLASSIFY."""
    images = np.asarray(images)
    overhead = HEADER_BYTES + CRC_BYTES
    sizes = np.array([overhead + len(classify_request(x, encoding=encoding)[1])
                      for x in images])
    answer = overhead + classify_answer_length(classes)
    bytes_per_s = baud / BITS_PER_BYTE
    mean, worst = float(sizes.mean()), int(sizes.max())
    return LinkFigures(encoding, len(images), mean, worst, answer,
                       bytes_per_s / (mean + answer), bytes_per_s / (worst + answer),
                       bytes_per_s / max(mean, answer), bytes_per_s / max(worst, answer))
