"""The lifpga device as a reference model: protocol bytes in, answer bytes out.

:class:`ReferenceDevice` is the executable specification of the device side of
:mod:`golden.protocol`, with answers from :func:`golden.layers.run` (a single-layer network
runs as its layered instance, :func:`golden.layers.as_layered`: the same answers as
:func:`golden.model.run`). The gateware frame engine (``hw/frame_engine.py``) must answer every
byte sequence exactly as it does, within its documented buffering limits; the host-driver tests
run against it over a socket
(``sim/refboard.py``). :class:`DeviceParser` is the device's frame parser, byte by byte: the
gateware's state machine in software.

:func:`agreement` is the one definition of "this answer equals golden's", used by the CLI's
``--golden``, ``make sim`` and the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from golden import layers, model
from golden.constants import MODE_BY_NAME, MODE_CURRENT, MODE_RATE
from golden.protocol import (
    CLASSIFY_HEADER_FORMAT,
    CRC_BYTES,
    HEADER_FORMAT,
    MAX_PAYLOAD,
    MODE_DEFAULT,
    PROTOCOL_VERSION,
    RESPONSE_FLAG,
    SYNC,
    Classification,
    Command,
    Info,
    Status,
    crc16,
    encode_frame,
    pack_classification,
    pack_info,
    request_lengths,
    unpack_sparse_pixels,
)

__all__ = ["DeviceParser", "ReferenceDevice", "Request", "agreement", "device_info"]


def agreement(label, scores, spike_count, golden: model.Result | layers.LayeredResult
              ) -> np.ndarray:
    """Per image: the device's label, every class score and the spike count equal golden's.

    Parameters
    ----------
    label : (B,) integers, the answered classes.
    scores : (B, C) integers, the answered class scores.
    spike_count : (B,) integers, the answered spike counts.
    golden : ``golden.layers.run`` (or ``golden.model.run``) of the same B images, steps
        and mode.
    """
    label, scores = np.asarray(label), np.asarray(scores)
    return ((label == golden.classes[-1]) & (scores == golden.scores[-1]).all(axis=1)
            & (np.asarray(spike_count) == golden.spike_count))


def device_info(net: model.Network | layers.LayeredNetwork, manifest: dict, *, lanes: int,
                clock_hz: int, baud: int) -> Info:
    """What a device running ``net`` (on the engine, ``hw/engine.py``, with ``lanes`` lanes)
    answers to INFO: its cycle bound is the engine's (``hw.geometry.EngineGeometry``)."""
    from hw.geometry import EngineGeometry  # pure Python: the engine's timing model

    net = layers.as_layered(net)
    base, per_step = EngineGeometry.of(net, pixel_max=manifest["pixel_max"],
                                       lanes=lanes).cycle_bound()
    return Info(PROTOCOL_VERSION, bytes.fromhex(manifest["hash"].split(":")[1]), net.inputs,
                net.neurons, net.classes, lanes, manifest["timesteps"], manifest["pixel_max"],
                MODE_BY_NAME[manifest["encoder_mode"]], clock_hz, baud, base, per_step)


class Request(NamedTuple):
    """A request the device parser accepted (``status`` OK) or refused (any other status).

    The ``payload`` of an accepted CLASSIFY_SPARSE is the equivalent CLASSIFY payload (steps,
    mode, then the M pixels its tokens describe), so both are served alike.
    """

    cmd: int
    seq: int
    status: Status
    payload: bytes = b""


class DeviceParser:
    """The device's frame parser, one byte at a time: the gateware's state machine in software.

    It differs from the host's :class:`FrameParser` in what it does after a bad frame, because
    the gateware cannot go back over bytes it has already consumed:

    * The header is checked as soon as LEN arrives. LEN above :data:`MAX_PAYLOAD`, or a known
      command with a LEN outside :func:`~golden.protocol.request_lengths`, is refused at once
      (``BAD_LENGTH``), and hunting for SYNC resumes with the next byte.
    * Otherwise the frame is consumed whole, ``LEN + 2`` more bytes, and then judged: a wrong
      CRC gives ``BAD_CRC``; an unknown command ``UNKNOWN_COMMAND``; a CLASSIFY_SPARSE whose
      tokens do not describe exactly M pixels ``BAD_LENGTH``.
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
            lengths = request_lengths(self.cmd, self.inputs)
            if self.length > MAX_PAYLOAD or not (lengths is None or self.length in lengths):
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
                head = struct.pack(HEADER_FORMAT, self.cmd, self.seq, self.length)
                if crc != crc16(head + payload):
                    return Request(self.cmd, self.seq, Status.BAD_CRC)
                if request_lengths(self.cmd, self.inputs) is None:
                    return Request(self.cmd, self.seq, Status.UNKNOWN_COMMAND)
                if self.cmd == Command.CLASSIFY_SPARSE:
                    return self._sparse(payload)
                return Request(self.cmd, self.seq, Status.OK, payload)
        return None

    def _sparse(self, payload: bytes) -> Request:
        """A complete, CRC-good CLASSIFY_SPARSE: decoded, or BAD_LENGTH."""
        head = struct.calcsize(CLASSIFY_HEADER_FORMAT)
        pixels = unpack_sparse_pixels(payload[head:], self.inputs)
        if pixels is None:
            return Request(self.cmd, self.seq, Status.BAD_LENGTH)
        return Request(self.cmd, self.seq, Status.OK, payload[:head] + pixels.tobytes())


class ReferenceDevice:
    """The device side of the protocol in software: what the board answers, byte for byte.

    It answers at once and buffers without limit, so it never sends ``BUSY`` and never drops a
    reply; a host within :data:`MAX_IN_FLIGHT` CLASSIFY requests and ``REPLY_QUEUE + 2``
    requests in all sees the gateware answer exactly the same bytes. Nothing is ever pending,
    so RESET abandons nothing and is answered OK at once, as a gateware device answers it
    when idle.

    Parameters
    ----------
    net, manifest : a loaded network image (``golden.image.load``).
    lanes, clock_hz, baud : reported by INFO (``lanes`` also sets ``cycles`` through
        ``cycles_model``, a callable ``(pixels, steps, mode) -> int``; without one, 0).
    """

    def __init__(self, net: model.Network | layers.LayeredNetwork, manifest: dict, *,
                 lanes: int = 16, clock_hz: int = 0, baud: int = 0, cycles_model=None):
        self.net, self.manifest = layers.as_layered(net), manifest
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

    def expected_after_reset(self, before: Sequence[bytes], started: int, reset_seq: int,
                             after: Sequence[bytes] = ()) -> bytes:
        """What a device (the gateware, which queues and computes) sends for the whole frames
        ``before``, then a RESET of SEQ ``reset_seq``, then the whole frames ``after``, when
        exactly ``started`` of the answers to ``before`` had started as the RESET's last byte
        arrived: the rule of RESET under load, part of this model.

        That is: those ``started`` answers, whole and in order (a started answer is finished,
        however long it takes), then the RESET's answer (OK), then this reference's answers
        to ``after``; the answers to the rest of ``before`` are never sent. How many answers
        have started at an instant is the gateware's timing, for the caller to measure (for
        the frame engine: an answer whose first byte is offered on ``tx`` at most one cycle
        after the edge that took the RESET's last byte, ``hw/frame_engine.py``).

        Every frame must be whole, so the parser is back to hunting after each; the answers
        never sent are not computed (a 65,535-step CLASSIFY takes a minute here). The
        reference's state advances as if it had received all of these frames.

        Raises
        ------
        ValueError : ``started`` is not in ``0 .. len(before)``, or the parser is mid-frame.
        """
        if not 0 <= started <= len(before):
            raise ValueError(f"started must lie in 0 .. {len(before)}, got {started}")
        if self.parser.pending():
            raise ValueError("the reference is mid-frame: send whole frames")
        answered = b"".join(self.receive(frame) for frame in before[:started])
        for frame in before[started:]:
            for byte in frame:  # parsed, not answered: the RESET abandons it
                self.parser.feed(byte)
        reset = self.receive(encode_frame(Command.RESET, reset_seq))
        return answered + reset + b"".join(self.receive(frame) for frame in after)

    def _error(self, cmd: int, seq: int, status: Status) -> bytes:
        return encode_frame((cmd | RESPONSE_FLAG) & 0xFF, seq, bytes([status]))

    def _answer(self, request: Request) -> bytes:
        reply = (request.cmd | RESPONSE_FLAG) & 0xFF
        if request.status != Status.OK:
            return self._error(request.cmd, request.seq, request.status)
        if request.cmd == Command.INFO:
            return encode_frame(reply, request.seq, pack_info(self.info))
        if request.cmd == Command.RESET:
            # Nothing is ever pending here: every earlier request was answered at once.
            return encode_frame(reply, request.seq, bytes([Status.OK]))
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
        result = layers.run(pixels[None, :], self.net, steps, mode)
        cycles = self.cycles_model(pixels, steps, mode) if self.cycles_model else 0
        answer = Classification(int(result.classes[-1, 0]), int(result.spike_count[0]),
                                cycles, tuple(int(s) for s in result.scores[-1, 0]))
        return encode_frame(reply, request.seq, pack_classification(answer))
