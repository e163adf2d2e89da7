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

from amaranth.hdl import Module, ResetInserter, Shape, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import protocol
from golden.protocol import IMAGE_SLOTS, MAX_PAYLOAD, REPLY_QUEUE, Command

from .frame_dispatcher import FrameDispatcher
from .frame_parser import SLOT_BITS, FrameParser
from .frame_responder import FrameResponder

__all__ = ["FrameEngine", "REPLIES_DEPTH", "RESETS_DEPTH"]

#: Replies queue depth: the dispatcher runs ahead of the responder by this much.
REPLIES_DEPTH = 4
#: RESET answers the device queues (a RESET completed while they are all waiting is dropped).
RESETS_DEPTH = REPLY_QUEUE


def queue(m: Module, name: str, producer: stream.Interface, consumer: stream.Interface, *,
          depth: int, flush=None) -> fifo.SyncFIFOBuffered:
    """Join two stages' streams through a FIFO of ``depth`` (emptied by ``flush``, if given)."""
    queue = fifo.SyncFIFOBuffered(width=Shape.cast(producer.payload.shape()).width,
                                  depth=depth)
    m.submodules[name] = queue if flush is None else ResetInserter(flush)(queue)
    w, r = queue.w_stream, queue.r_stream
    m.d.comb += [w.payload.eq(producer.payload), w.valid.eq(producer.valid),
                 producer.ready.eq(w.ready),
                 consumer.payload.eq(r.payload), consumer.valid.eq(r.valid),
                 r.ready.eq(consumer.ready)]
    return queue


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
    queue_depth : int
        Depth of the requests queue (default :data:`~golden.protocol.REPLY_QUEUE`): with
        depth ``D`` no frame is dropped while at most ``D + 2`` requests are unanswered (see
        Limits).

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
    core_reset : :py:`Out(1)`
        One-cycle pulse after a RESET frame: the core must abandon its image and return to
        rest (``ResetInserter``; see :class:`hw.system.LifpgaSystem`). The engine forgets the
        image it was streaming and the result it was waiting for in the same cycle.
    busy : :py:`Out(1)`
        High while a request is queued, an image waits or computes, or an answer is being
        produced. A half-received frame alone does not count.
    error : :py:`Out(1)`
        One-cycle pulse when an error answer starts.
    last_label : :py:`Out(unsigned(8))`
        Label of the last CLASSIFY answered OK.
    """

    def __init__(self, info: protocol.Info, *, i_layout: data.StructLayout,
                 o_layout: data.StructLayout, idle_timeout_cycles: int,
                 queue_depth: int = REPLY_QUEUE):
        if info.inputs < 1:
            raise ValueError(f"{info.inputs} inputs do not fit the protocol")
        if protocol.request_length(Command.CLASSIFY, info.inputs) > MAX_PAYLOAD:
            raise ValueError(f"a CLASSIFY of {info.inputs} pixels exceeds MAX_PAYLOAD")
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be positive, got {queue_depth}")
        self.info = info
        self.queue_depth = queue_depth
        self.i_layout, self.o_layout = i_layout, o_layout
        pixel_bits = Shape.cast(i_layout["pixel"].shape).width
        self.parser = FrameParser(info, pixel_bits=pixel_bits,
                                  idle_timeout_cycles=idle_timeout_cycles)
        self.dispatcher = FrameDispatcher(inputs=info.inputs, i_layout=i_layout)
        self.responder = FrameResponder(info, o_layout=o_layout)
        ports = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                 "core_i": Out(stream.Signature(i_layout)),
                 "core_o": In(stream.Signature(o_layout))}
        ports.update(core_reset=Out(1), busy=Out(1), error=Out(1), last_label=Out(8))
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        parser, dispatcher, responder = self.parser, self.dispatcher, self.responder
        flush = parser.flush
        m.submodules.parser = parser
        m.submodules.dispatcher = ResetInserter(flush)(dispatcher)
        m.submodules.responder = responder
        m.submodules.slots = slots = memory.Memory(
            shape=unsigned(parser.pixel_bits), depth=IMAGE_SLOTS << parser.index_bits, init=[])
        assert SLOT_BITS + parser.index_bits == ceil_log2(slots.depth)
        wiring.connect(m, parser.slot_wr, slots.write_port())
        wiring.connect(m, dispatcher.slot_rd, slots.read_port())
        requests = queue(m, "requests", parser.requests, dispatcher.requests,
                         depth=self.queue_depth, flush=flush)
        replies = queue(m, "replies", dispatcher.replies, responder.replies,
                        depth=REPLIES_DEPTH, flush=flush)
        resets = queue(m, "resets", parser.resets, responder.resets, depth=RESETS_DEPTH)
        wiring.connect(m, wiring.flipped(self.rx), parser.rx)
        wiring.connect(m, responder.tx, wiring.flipped(self.tx))
        wiring.connect(m, dispatcher.core_i, wiring.flipped(self.core_i))
        wiring.connect(m, wiring.flipped(self.core_o), responder.core_o)
        m.d.comb += [
            parser.slot_freed.eq(dispatcher.slot_freed),
            responder.flush.eq(flush),
            self.core_reset.eq(flush),
            self.error.eq(responder.error),
            self.last_label.eq(responder.last_label),
            self.busy.eq(parser.requests.valid | parser.resets.valid | requests.r_rdy
                         | replies.r_rdy | resets.r_rdy | (parser.slots_used != 0)
                         | ~dispatcher.idle | ~responder.idle),
        ]
        return m
