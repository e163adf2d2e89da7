"""The UART frame engine: protocol bytes in, the core's streams, protocol bytes out.

It answers every byte sequence as :class:`golden.device.ReferenceDevice` does (the tests compare
the bytes over a fuzz corpus), within the buffering limits below. The parser is the state
machine of :class:`golden.device.DeviceParser`, the rules are in docs/PROTOCOL.md.

Data flow
---------
::

    rx bytes --> parser --(CLASSIFY pixels)--> slots[IMAGE_SLOTS][M] --+
                   |                                                   v
                   +--> requests FIFO --> dispatcher --(pixels)--> core_i       core_o
                                              |                                   |
                                              +--> replies FIFO --> responder <---+
                                                                        |
                                                                        v
                                             A5 5A CMD|80 SEQ LEN payload CRC --> tx bytes

``parser``
    Takes one byte per cycle (``rx.ready`` is always high). It checks the header when LEN
    arrives and answers ``BAD_LENGTH`` at once; otherwise it consumes ``LEN + 2`` more bytes,
    computing the CRC on the fly (``amaranth.lib.crc`` with :data:`hw.crc.CRC_ALGORITHM`),
    writing CLASSIFY pixels into a free slot and noting a bad mode or an out-of-range pixel.
    A complete frame becomes one request (or refusal) in the requests FIFO. A frame that stalls
    for ``idle_timeout_cycles`` is abandoned (``TIMEOUT`` once its CMD and SEQ are known).
``dispatcher``
    Takes requests in order. A CLASSIFY streams its slot into the core (one pixel per cycle, as
    soon as the core takes a new image) and frees the slot; everything goes on, in order, to
    the replies FIFO.
``responder``
    Takes replies in order; for a CLASSIFY it waits for the core's result, which frees the core
    for the next image while this answer is on the wire. It serialises the frame, computing its
    CRC as the bytes leave.

So while the core works on one image and the transmitter sends an earlier answer, the next
:data:`~golden.protocol.IMAGE_SLOTS` images can arrive: the link, not the core, limits throughput.

Limits
------
* A CLASSIFY whose header arrives while every slot holds a waiting image is consumed and
  answered ``BUSY``: a host with at most :data:`~golden.protocol.MAX_IN_FLIGHT` CLASSIFY requests
  in flight never sees it.
* The requests FIFO holds :data:`~golden.protocol.REPLY_QUEUE` requests (and the replies FIFO and
  the responder 5 more). A frame completed while it is full gets no reply (the host's
  deadline expires); it takes a flood of short frames answered slower than they arrive (an
  INFO reply is 60 bytes for an 8-byte request).
"""

from __future__ import annotations

import struct

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.crc import Processor
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import protocol
from golden.constants import COUNT_BITS, MODE_CURRENT, MODE_RATE, SCORE_BITS, STEPS_BITS
from golden.protocol import (
    CLASSIFY_HEADER_FORMAT,
    CLASSIFY_RESULT_FORMAT,
    IMAGE_SLOTS,
    MAX_PAYLOAD,
    MODE_DEFAULT,
    REPLY_QUEUE,
    RESPONSE_FLAG,
    SYNC,
    Command,
    Status,
)

from .crc import CRC_ALGORITHM

__all__ = ["FrameEngine"]

#: What a queued request asks of the dispatcher and responder.
KIND_ERROR, KIND_INFO, KIND_CLASSIFY = range(3)

REQUEST_LAYOUT = data.StructLayout({
    "kind": unsigned(2), "cmd": unsigned(8), "seq": unsigned(8),
    "status": unsigned(max(Status).bit_length()), "steps": unsigned(STEPS_BITS),
    "mode": unsigned(1)})
REPLY_LAYOUT = data.StructLayout({
    "kind": unsigned(2), "cmd": unsigned(8), "seq": unsigned(8),
    "status": unsigned(max(Status).bit_length())})

#: Replies FIFO depth: the dispatcher runs ahead of the responder by this much.
REPLIES_DEPTH = 4


class FrameEngine(wiring.Component):
    """The device side of the serial protocol, between the UART and :class:`hw.core.LifCore`.

    Parameters
    ----------
    info : golden.protocol.Info
        What INFO answers; also gives ``inputs`` (M), ``classes`` (C), ``pixel_max``, the
        default steps and mode.
    i_layout, o_layout : data.StructLayout
        The core's stream payloads (``LifCore.i_layout``, ``LifCore.o_layout``).
    idle_timeout_cycles : int
        Cycles without a byte after which a partial frame is abandoned: on a board,
        ``IDLE_TIMEOUT_BYTES * FRAME_BITS * divisor``.

    Members
    -------
    rx : :py:`In(stream.Signature(8))`
        Received bytes. ``rx.ready`` is always high: a byte is taken in the cycle it is offered.
    tx : :py:`Out(stream.Signature(8))`
        Bytes to send, whole response frames back to back.
    core_i : :py:`Out(stream.Signature(i_layout))`
        To the core: ``M`` pixels per image, ``steps`` (0 replaced by the default) and ``mode``
        (``MODE_DEFAULT`` replaced by the default) on every one.
    core_o : :py:`In(stream.Signature(o_layout))`
        From the core: one result per image, taken when its answer starts.
    busy : :py:`Out(1)`
        High while a request is queued, an image waits or computes, or an answer is being
        produced. A half-received frame alone does not count.
    error : :py:`Out(1)`
        One-cycle pulse when an error answer starts.
    last_label : :py:`Out(unsigned(8))`
        Label of the last CLASSIFY answered OK.
    """

    def __init__(self, info: protocol.Info, *, i_layout: data.StructLayout,
                 o_layout: data.StructLayout, idle_timeout_cycles: int):
        if idle_timeout_cycles < 1:
            raise ValueError(f"idle_timeout_cycles must be positive, got {idle_timeout_cycles}")
        if struct.calcsize(CLASSIFY_RESULT_FORMAT) != 1 + 2 * COUNT_BITS // 8 or \
                SCORE_BITS != 32:
            raise ValueError("the CLASSIFY answer format no longer matches the core's widths")
        if info.classes > 256 or info.inputs < 1:
            raise ValueError(f"{info.classes} classes / {info.inputs} inputs do not fit the "
                             f"protocol")
        self.info = info
        self.i_layout, self.o_layout = i_layout, o_layout
        self.idle_timeout_cycles = idle_timeout_cycles
        self.classify_length = protocol.request_length(Command.CLASSIFY, info.inputs)
        if self.classify_length > MAX_PAYLOAD:
            raise ValueError(f"a CLASSIFY of {info.inputs} pixels exceeds MAX_PAYLOAD")
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "core_i": Out(stream.Signature(i_layout)),
            "core_o": In(stream.Signature(o_layout)),
            "busy": Out(1),
            "error": Out(1),
            "last_label": Out(8),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        info = self.info
        inputs, classes = info.inputs, info.classes
        pixel_bits = Shape.cast(self.i_layout["pixel"].shape).width
        index_bits = max(1, ceil_log2(inputs))
        slot_bits = ceil_log2(IMAGE_SLOTS)
        head = struct.calcsize(CLASSIFY_HEADER_FORMAT)

        m.submodules.slots = slots = memory.Memory(
            shape=unsigned(pixel_bits), depth=IMAGE_SLOTS << index_bits, init=[])
        slot_wr = slots.write_port()
        slot_rd = slots.read_port()
        m.submodules.requests = requests = fifo.SyncFIFOBuffered(
            width=REQUEST_LAYOUT.size, depth=REPLY_QUEUE)
        m.submodules.replies = replies = fifo.SyncFIFOBuffered(
            width=REPLY_LAYOUT.size, depth=REPLIES_DEPTH)
        request_in = data.View(REQUEST_LAYOUT, requests.w_data)
        request = data.View(REQUEST_LAYOUT, requests.r_data)
        reply_in = data.View(REPLY_LAYOUT, replies.w_data)
        reply = data.View(REPLY_LAYOUT, replies.r_data)

        # Slots form a ring: the parser fills slot `slot_wr_at`, the dispatcher empties
        # `slot_rd_at`; `slots_used` counts images waiting.
        slot_wr_at = Signal(max(1, slot_bits))
        slot_rd_at = Signal(max(1, slot_bits))
        slots_used = Signal(range(IMAGE_SLOTS + 1))
        slot_filled = Signal()
        slot_emptied = Signal()
        m.d.sync += slots_used.eq(slots_used + slot_filled - slot_emptied)
        with m.If(slot_filled):
            m.d.sync += slot_wr_at.eq(Mux(slot_wr_at == IMAGE_SLOTS - 1, 0, slot_wr_at + 1))
        with m.If(slot_emptied):
            m.d.sync += slot_rd_at.eq(Mux(slot_rd_at == IMAGE_SLOTS - 1, 0, slot_rd_at + 1))

        # --- parser ------------------------------------------------------------------------
        m.submodules.rx_crc = rx_crc = Processor(CRC_ALGORITHM(data_width=8))
        byte = self.rx.payload
        got = self.rx.valid
        m.d.comb += [self.rx.ready.eq(1), rx_crc.data.eq(byte)]

        cmd = Signal(8)
        seq = Signal(8)
        length = Signal(16)
        count = Signal(range(MAX_PAYLOAD + 3))
        crc_lo = Signal(8)
        steps = Signal(STEPS_BITS)
        mode = Signal(1)
        mode_bad = Signal()
        pixel_bad = Signal()
        no_slot = Signal()
        is_info = cmd == Command.INFO
        is_classify = cmd == Command.CLASSIFY

        # The one place a request enters the FIFO; dropped when it is full.
        push = Signal()
        push_kind = Signal(2)
        push_status = Signal(REQUEST_LAYOUT.members["status"])
        m.d.comb += [
            requests.w_en.eq(push),
            request_in.kind.eq(push_kind), request_in.cmd.eq(cmd), request_in.seq.eq(seq),
            request_in.status.eq(push_status),
            request_in.steps.eq(Mux(steps == 0, info.default_steps, steps)),
            request_in.mode.eq(mode),
        ]

        idle = Signal(range(self.idle_timeout_cycles + 1))
        timed_out = Signal()

        def abandon_when_idle(answer: bool):
            # A partial frame that stalls is abandoned (a byte in the same cycle wins, as
            # `timed_out` excludes it); once CMD and SEQ are known it is answered.
            with m.If(timed_out):
                m.next = "HUNT"
                if answer:
                    m.d.comb += [push.eq(1), push_kind.eq(KIND_ERROR),
                                 push_status.eq(Status.TIMEOUT)]

        with m.FSM(name="parser") as parser:
            with m.State("HUNT"):
                with m.If(got & (byte == SYNC[0])):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                abandon_when_idle(answer=False)
                with m.If(got):
                    with m.If(byte == SYNC[1]):
                        m.next = "CMD"
                    with m.Elif(byte != SYNC[0]):
                        m.next = "HUNT"
            with m.State("CMD"):
                abandon_when_idle(answer=False)
                with m.If(got):
                    m.d.comb += [rx_crc.start.eq(1), rx_crc.valid.eq(1)]
                    m.d.sync += cmd.eq(byte)
                    m.next = "SEQ"
            with m.State("SEQ"):
                abandon_when_idle(answer=False)
                with m.If(got):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += seq.eq(byte)
                    m.next = "LEN0"
            with m.State("LEN0"):
                abandon_when_idle(answer=True)
                with m.If(got):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LEN1"
            with m.State("LEN1"):
                abandon_when_idle(answer=True)
                full_length = Cat(length[:8], byte)
                wrong = Mux(is_info, full_length != 0,
                            Mux(is_classify, full_length != self.classify_length,
                                full_length > MAX_PAYLOAD))
                with m.If(got):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += [length.eq(full_length), count.eq(0), mode_bad.eq(0),
                                 pixel_bad.eq(0), steps.eq(0), mode.eq(info.default_mode),
                                 no_slot.eq(slots_used == IMAGE_SLOTS)]
                    with m.If(wrong):
                        m.d.comb += [push.eq(1), push_kind.eq(KIND_ERROR),
                                     push_status.eq(Status.BAD_LENGTH)]
                        m.next = "HUNT"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                abandon_when_idle(answer=True)
                in_payload = count < length
                with m.If(got):
                    m.d.sync += count.eq(count + 1)
                    m.d.comb += rx_crc.valid.eq(in_payload)
                    with m.If(is_classify):
                        with m.If(count == 0):
                            m.d.sync += steps[:8].eq(byte)
                        with m.If(count == 1):
                            m.d.sync += steps[8:].eq(byte)
                        with m.If(count == 2):
                            with m.Switch(byte):
                                with m.Case(MODE_CURRENT, MODE_RATE):
                                    m.d.sync += mode.eq(byte)
                                with m.Case(MODE_DEFAULT):
                                    pass
                                with m.Default():
                                    m.d.sync += mode_bad.eq(1)
                        with m.If((count >= head) & in_payload):
                            pixel = count - head
                            m.d.comb += [
                                slot_wr.addr.eq(Cat(pixel[:index_bits], slot_wr_at)),
                                slot_wr.data.eq(byte),
                                slot_wr.en.eq(~no_slot),
                            ]
                            with m.If(byte > info.pixel_max):
                                m.d.sync += pixel_bad.eq(1)
                    with m.If(count == length):
                        m.d.sync += crc_lo.eq(byte)
                    with m.If(count == length + 1):
                        crc_ok = Cat(crc_lo, byte) == rx_crc.crc
                        m.d.comb += push.eq(1)
                        with m.If(~crc_ok):
                            m.d.comb += [push_kind.eq(KIND_ERROR),
                                         push_status.eq(Status.BAD_CRC)]
                        with m.Elif(is_info):
                            m.d.comb += push_kind.eq(KIND_INFO)
                        with m.Elif(~is_classify):
                            m.d.comb += [push_kind.eq(KIND_ERROR),
                                         push_status.eq(Status.UNKNOWN_COMMAND)]
                        with m.Elif(no_slot):
                            m.d.comb += [push_kind.eq(KIND_ERROR),
                                         push_status.eq(Status.BUSY)]
                        with m.Elif(mode_bad):
                            m.d.comb += [push_kind.eq(KIND_ERROR),
                                         push_status.eq(Status.BAD_PARAMETER)]
                        with m.Elif(pixel_bad):
                            m.d.comb += [push_kind.eq(KIND_ERROR),
                                         push_status.eq(Status.PIXEL_RANGE)]
                        with m.Else():
                            m.d.comb += [push_kind.eq(KIND_CLASSIFY),
                                         slot_filled.eq(requests.w_rdy)]
                        m.next = "HUNT"

        with m.If(parser.ongoing("HUNT") | got):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        m.d.comb += timed_out.eq(~got & ~parser.ongoing("HUNT")
                                 & (idle == self.idle_timeout_cycles - 1))

        # --- dispatcher ----------------------------------------------------------------------
        core_jobs = Signal(range(3))  # images between the dispatcher and the responder
        core_in = Signal()
        core_out = Signal()
        m.d.sync += core_jobs.eq(core_jobs + core_in - core_out)

        read_at = Signal(range(inputs + 1))
        beat = Signal()  # core_i holds a pixel
        advance = ~beat | self.core_i.ready
        m.d.comb += [
            slot_rd.addr.eq(Cat(read_at[:index_bits], slot_rd_at)),
            slot_rd.en.eq(advance),
            self.core_i.valid.eq(beat),
            self.core_i.payload.pixel.eq(slot_rd.data),
            self.core_i.payload.steps.eq(request.steps),
            self.core_i.payload.mode.eq(request.mode),
            reply_in.kind.eq(request.kind), reply_in.cmd.eq(request.cmd),
            reply_in.seq.eq(request.seq), reply_in.status.eq(request.status),
        ]
        with m.FSM(name="dispatcher") as dispatcher:
            with m.State("TAKE"):
                with m.If(requests.r_rdy & replies.w_rdy):
                    with m.If(request.kind == KIND_CLASSIFY):
                        m.next = "LOAD"
                    with m.Else():
                        m.d.comb += [requests.r_en.eq(1), replies.w_en.eq(1)]
            with m.State("LOAD"):
                with m.If(advance):
                    m.d.sync += beat.eq(read_at < inputs)
                    with m.If(read_at < inputs):
                        m.d.sync += read_at.eq(read_at + 1)
                    with m.Else():
                        m.d.sync += read_at.eq(0)
                        m.d.comb += [requests.r_en.eq(1), replies.w_en.eq(1),
                                     slot_emptied.eq(1), core_in.eq(1)]
                        m.next = "TAKE"

        # --- responder -----------------------------------------------------------------------
        m.submodules.tx_crc = tx_crc = Processor(CRC_ALGORITHM(data_width=8))
        info_payload = protocol.pack_info(info)
        classify_bytes = protocol.classify_answer_length(classes)
        payload_bytes = max(len(info_payload), classify_bytes)
        shift = Signal(8 * payload_bytes)
        out_cmd = Signal(8)
        out_seq = Signal(8)
        out_length = Signal(range(payload_bytes + 1))
        position = Signal(range(payload_bytes + 9))
        result = self.core_o.payload
        with m.FSM(name="responder") as responder:
            with m.State("TAKE"):
                with m.If(replies.r_rdy):
                    m.d.sync += [out_cmd.eq(reply.cmd | RESPONSE_FLAG), out_seq.eq(reply.seq),
                                 position.eq(0)]
                    with m.Switch(reply.kind):
                        with m.Case(KIND_CLASSIFY):
                            m.next = "RESULT"
                        with m.Case(KIND_INFO):
                            m.d.comb += replies.r_en.eq(1)
                            m.d.sync += [
                                shift.eq(int.from_bytes(info_payload, "little")),
                                out_length.eq(len(info_payload))]
                            m.next = "SEND"
                        with m.Default():
                            m.d.comb += [replies.r_en.eq(1), self.error.eq(1)]
                            m.d.sync += [shift.eq(reply.status), out_length.eq(1)]
                            m.next = "SEND"
            with m.State("RESULT"):
                m.d.comb += self.core_o.ready.eq(1)
                with m.If(self.core_o.valid):
                    m.d.comb += [replies.r_en.eq(1), core_out.eq(1)]
                    m.d.sync += [
                        shift.eq(Cat(Const(Status.OK, 8), result.label.as_unsigned(),
                                     Const(0, 8 - len(result.label)),
                                     result.spike_count, result.cycles,
                                     *(score.as_unsigned() for score in result.scores))),
                        out_length.eq(classify_bytes),
                        self.last_label.eq(result.label)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.tx.valid.eq(1)
                with m.If(position < 6):
                    with m.Switch(position):
                        for k, value in enumerate([SYNC[0], SYNC[1], out_cmd, out_seq,
                                                   out_length[:8], out_length[8:]]):
                            with m.Case(k):
                                m.d.comb += self.tx.payload.eq(value)
                with m.Elif(position < 6 + out_length):
                    m.d.comb += self.tx.payload.eq(shift[:8])
                with m.Elif(position == 6 + out_length):
                    m.d.comb += self.tx.payload.eq(tx_crc.crc[:8])
                with m.Else():
                    m.d.comb += self.tx.payload.eq(tx_crc.crc[8:])
                with m.If(self.tx.ready):
                    m.d.sync += position.eq(position + 1)
                    m.d.comb += [tx_crc.data.eq(self.tx.payload),
                                 tx_crc.start.eq(position == 2),
                                 tx_crc.valid.eq((position >= 2) & (position < 6 + out_length))]
                    with m.If((position >= 6) & (position < 6 + out_length)):
                        m.d.sync += shift.eq(shift >> 8)
                    with m.If(position == 7 + out_length):
                        m.next = "TAKE"

        m.d.comb += self.busy.eq(requests.r_rdy | replies.r_rdy | (slots_used != 0)
                                 | (core_jobs != 0) | ~dispatcher.ongoing("TAKE")
                                 | ~responder.ongoing("TAKE"))
        return m
