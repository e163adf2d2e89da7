"""The frame engine's last stage: replies and RESETs in, response frames out.

For each reply, in order, the responder builds the response frame ``SYNC, CMD | 0x80, SEQ,
LEN, payload, CRC`` (layout from :mod:`golden.protocol`) and sends it byte by byte on ``tx``,
computing the CRC as the bytes leave. A CLASSIFY reply waits for the core's result, which is
taken when its answer starts, so the core is free for the next image while this answer is on
the wire.

RESET answers (CMD ``0x83``, its SEQ, STATUS OK) come first: every reply queued behind a
RESET arrived after it, since ``flush`` emptied the queues of everything before it. On
``flush`` the responder drops the reply it holds if that answer has not started (a CLASSIFY
waiting for the core, whose result will never come); an answer already on the wire is
finished.
"""

from __future__ import annotations

import struct

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import Processor
from amaranth.lib.wiring import In, Out

from golden import protocol
from golden.constants import COUNT_BITS, SCORE_BITS
from golden.protocol import (
    CLASSIFY_RESULT_FORMAT,
    CRC_BYTES,
    HEADER_BYTES,
    HEADER_FORMAT,
    RESPONSE_FLAG,
    SYNC,
    Command,
    Status,
)

from .crc import CRC_ALGORITHM
from .frame_dispatcher import REPLY_LAYOUT
from .frame_parser import HEADER_FIELDS, Kind, field_offsets

__all__ = ["FrameResponder", "CLASSIFY_RESULT_FIELDS"]

#: The CLASSIFY answer after STATUS, as :func:`golden.protocol.pack_classification` packs it;
#: the class scores follow, one little-endian int32 each.
CLASSIFY_RESULT_FIELDS = ("label", "spike_count", "cycles")
SCORE_FORMAT = "<i"


class FrameResponder(wiring.Component):
    """Replies to response frames on ``tx``.

    Parameters
    ----------
    info : golden.protocol.Info
        What INFO answers; ``classes`` (C) sets the CLASSIFY answer length.
    o_layout : data.StructLayout
        The core's result payload (``LifCore.o_layout``: ``label``, ``scores``,
        ``spike_count``, ``cycles``).

    Members
    -------
    replies : :py:`In(stream.Signature(REPLY_LAYOUT))`
        From the dispatcher, through its queue, in request order.
    resets : :py:`In(stream.Signature(8))`
        The SEQ of each RESET to answer, through its queue; answered before any reply.
    core_o : :py:`In(stream.Signature(o_layout))`
        The core's results, one per CLASSIFY reply, taken when that answer starts.
    flush : :py:`In(1)`
        Pulse: drop the reply held whose answer has not started; take nothing this cycle.
    tx : :py:`Out(stream.Signature(8))`
        Response frames, back to back.
    error : :py:`Out(1)`
        One-cycle pulse when an error answer starts.
    last_label : :py:`Out(8)`
        Label of the last CLASSIFY answered OK.
    idle : :py:`Out(1)`
        High while no answer is held or being sent.
    """

    def __init__(self, info: protocol.Info, *, o_layout: data.StructLayout):
        result_sizes = [size for _, size in field_offsets(
            CLASSIFY_RESULT_FORMAT, CLASSIFY_RESULT_FIELDS).values()]
        if result_sizes[1:] != [COUNT_BITS // 8] * 2 or \
                SCORE_BITS != 8 * struct.calcsize(SCORE_FORMAT):
            raise ValueError("the CLASSIFY answer format no longer matches the core's widths")
        if info.classes > 256:
            raise ValueError(f"{info.classes} classes do not fit the protocol's label byte")
        self.info = info
        self.o_layout = o_layout
        self.info_payload = protocol.pack_info(info)
        self.classify_bytes = protocol.classify_answer_length(info.classes)
        self.payload_bytes = max(len(self.info_payload), self.classify_bytes)
        super().__init__({"replies": In(stream.Signature(REPLY_LAYOUT)),
                          "resets": In(stream.Signature(8)),
                          "core_o": In(stream.Signature(o_layout)),
                          "flush": In(1),
                          "tx": Out(stream.Signature(8)),
                          "error": Out(1),
                          "last_label": Out(8),
                          "idle": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        # The bytes after SYNC to send, first byte in the low bits.
        frame = Signal(8 * (HEADER_BYTES - len(SYNC) + self.payload_bytes))
        length = Signal(range(self.payload_bytes + 1))             # its LEN

        def load(cmd, seq, payload: bytes | Cat, payload_bytes: int):
            header = {"cmd": cmd | RESPONSE_FLAG, "seq": seq, "length": payload_bytes}
            sizes = field_offsets(HEADER_FORMAT, HEADER_FIELDS)
            fields = [Const(header[name], 8 * sizes[name][1]) if name == "length"
                      else header[name] for name in HEADER_FIELDS]
            if isinstance(payload, bytes):
                payload = Const(int.from_bytes(payload, "little"), 8 * len(payload))
            m.d.sync += [frame.eq(Cat(*fields, payload)), length.eq(payload_bytes)]
            m.next = "SEND"

        with m.FSM(name="responder"):
            with m.State("TAKE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.flush):
                    pass
                with m.Elif(self.resets.valid):
                    m.d.comb += self.resets.ready.eq(1)
                    load(Const(Command.RESET, 8), self.resets.payload, bytes([Status.OK]), 1)
                with m.Elif(self.replies.valid):
                    self._take(m, load)
            with m.State("RESULT"):
                with m.If(self.flush):
                    m.next = "TAKE"
                with m.Elif(self.core_o.valid):
                    m.d.comb += [self.core_o.ready.eq(1), self.replies.ready.eq(1)]
                    m.d.sync += self.last_label.eq(self.core_o.payload.label)
                    reply = self.replies.payload
                    load(reply.cmd, reply.seq, self._result_bytes(), self.classify_bytes)
            with m.State("SEND"):
                self._send(m, frame, length)
        return m

    def _take(self, m: Module, load):
        """A reply is offered in TAKE: answer INFO and errors now, CLASSIFY with its result."""
        reply = self.replies.payload
        with m.Switch(reply.kind):
            with m.Case(Kind.CLASSIFY):
                m.next = "RESULT"
            with m.Case(Kind.INFO):
                m.d.comb += self.replies.ready.eq(1)
                load(reply.cmd, reply.seq, self.info_payload, len(self.info_payload))
            with m.Default():
                m.d.comb += [self.replies.ready.eq(1), self.error.eq(1)]
                load(reply.cmd, reply.seq, Cat(reply.status, Const(0, 8 - len(reply.status))), 1)

    def _result_bytes(self) -> Cat:
        """The OK CLASSIFY payload, field by field as :func:`pack_classification` packs it."""
        result = self.core_o.payload
        sizes = field_offsets(CLASSIFY_RESULT_FORMAT, CLASSIFY_RESULT_FIELDS)
        fields = []
        for name in CLASSIFY_RESULT_FIELDS:
            value = Value.cast(result[name])
            fields += [value, Const(0, 8 * sizes[name][1] - len(value))]
        scores = (Value.cast(score).as_unsigned() for score in result.scores)
        return Cat(Const(Status.OK, 8), *fields, *scores)

    def _send(self, m: Module, frame: Signal, length: Signal):
        """SYNC, then shift ``frame`` out, then its CRC (over CMD .. payload), little-endian."""
        m.submodules.crc = crc = Processor(CRC_ALGORITHM(data_width=8))
        position = Signal(range(HEADER_BYTES + self.payload_bytes + CRC_BYTES))
        end = HEADER_BYTES + length  # position of the first CRC byte
        m.d.comb += self.tx.valid.eq(1)
        with m.Switch(position):
            for k, byte in enumerate(SYNC):
                with m.Case(k):
                    m.d.comb += self.tx.payload.eq(byte)
            with m.Default():
                with m.If(position < end):
                    m.d.comb += self.tx.payload.eq(frame[:8])
                for k in range(CRC_BYTES):
                    with m.Elif(position == end + k):
                        m.d.comb += self.tx.payload.eq(crc.crc.word_select(k, 8))
        with m.If(self.tx.ready):
            m.d.sync += position.eq(position + 1)
            m.d.comb += [crc.data.eq(self.tx.payload), crc.start.eq(position == len(SYNC)),
                         crc.valid.eq((position >= len(SYNC)) & (position < end))]
            with m.If(position >= len(SYNC)):
                m.d.sync += frame.eq(frame >> 8)
            with m.If(position == end + CRC_BYTES - 1):
                m.d.sync += position.eq(0)
                m.next = "TAKE"
