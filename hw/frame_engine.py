"""The UART frame engine: protocol bytes in, the core's streams, protocol bytes out.

It answers every byte sequence as :class:`golden.device.ReferenceDevice` does (the tests compare
the bytes over fuzz corpora), within the buffering limits below. The rules are in
docs/PROTOCOL.md. The engine is a composition of three stages, each a component in its own
file with its own test, joined by ``amaranth.lib.fifo`` queues through their stream ports:

::

    rx bytes --> FrameParser --entries---> slots[IMAGE_SLOTS][M] ----+
                  |   |   |                                           v
                  |   |   +--> requests queue [D] --> FrameDispatcher --> core_i
                  |   |                                     |
                  |   |                                     v
                  |   |                           replies queue [4]      core_o
                  |   |                                     |              |
                  |   +--> resets queue [2] (RESET SEQs) --> FrameResponder <+
                  |                                          |
                  +--> flush (after a RESET)                 +--> tx bytes

    flush: empties the requests and replies queues and the slots, resets the dispatcher and,
    through core_reset, the core; the responder drops a reply it has not started.

:class:`~hw.frame_parser.FrameParser`
    Bytes to requests, one per frame (:class:`golden.device.DeviceParser`'s rules); the
    nonzero pixels of a CLASSIFY or CLASSIFY_SPARSE into a free image slot, as entries
    (:func:`~hw.frame_parser.slot_entry_layout`: index and value, ended by value 0).
:class:`~hw.frame_dispatcher.FrameDispatcher`
    Requests in order; a CLASSIFY's slot into the core, its entries expanded to M pixels
    (zeros between), then every request on as a reply.
:class:`~hw.frame_responder.FrameResponder`
    Replies (and RESETs first) to response frames; a CLASSIFY's answer waits for the core's
    result, which frees the core for the next image while this answer is on the wire.

So while the core works on one image and the transmitter sends an earlier answer, the next
:data:`~golden.protocol.IMAGE_SLOTS` images can arrive: the link, not the core, limits throughput.

Image slots
-----------
The slot memory holds ``IMAGE_SLOTS << index_bits`` entries (``index_bits = ceil_log2(M)``) of
``pixel_bits + index_bits`` bits: an image's nonzero pixels, whichever encoding brought them
(:mod:`hw.frame_parser`), expanded to M pixels by the dispatcher. The parser writes at most
one entry per received byte, so a CLASSIFY_SPARSE zero run of 255 pixels costs one cycle, as
any byte does. Its cost, measured with Yosys 0.70 on the engine alone (the digits, M = 64,
5-bit pixels): 1,303 SB_LUT4 and 139 SB_CARRY for the iCE40 (1,209 and 113 before
CLASSIFY_SPARSE, when slots held all M pixels), 1,290 LUT4 for the ECP5 (1,153). Slot RAM
for the digits, 128 x 11 bits (was 128 x 5): still one SB_RAM40_4K on the iCE40; on the ECP5
distributed RAM, 30 TRELLIS_DPR16X4 for the whole engine (22). For MNIST (M = 784, 8-bit
pixels), 2,048 x 18 bits take 2 DP16KD where 2,048 x 8 took 1.

RESET
-----
A complete, CRC-good RESET frame (LEN 0) abandons every request received before it whose answer
has not started: one cycle after the edge that took the RESET's last byte, ``flush`` empties the
requests and replies queues and the image slots, resets the dispatcher and pulses
``core_reset`` (the core returns to rest at once, whatever its steps), and the responder drops
a reply still waiting for its core result. An answer already started is finished: one whose
first byte is offered on ``tx`` no later than one cycle after the edge of the RESET's last byte
(however long the transmitter then takes); any later answer is never sent. The RESET's
answer (CMD ``0x83``, its SEQ, STATUS OK) is queued apart and sent before any other reply, so
it follows that answer at once; requests after the RESET are answered after it, in order.

Limits
------
Exact for this gateware, ``D = queue_depth`` (default :data:`~golden.protocol.REPLY_QUEUE`):

* BUSY is decided when a CLASSIFY's LEN (its last header byte) arrives: if every image slot
  then holds an image not yet streamed into the core, the frame is consumed whole and answered
  ``BUSY`` in its turn (``BAD_CRC`` if its CRC is wrong). A slot is freed when the core has
  taken the image's last pixel, which it does once the previous result has been taken (that
  answer has started). So a host with at most :data:`~golden.protocol.MAX_IN_FLIGHT` CLASSIFY
  requests unanswered never sees BUSY.
* Every request, BUSY ones included, takes a place in the requests queue (``D``) and, when it
  is done there, in the replies queue (4). The parser holds one finished request until the
  queue takes it; a frame that ends (or is refused at its header, or times out) while the
  parser still holds one is dropped without any answer. With a CLASSIFY waiting at the head of
  the queue for the core, that happens to the ``(D + 3)``-th request whose answer has not
  started (one in the core, ``D`` queued, one held); when requests can move on, to the
  ``(D + 6)``-th. A host with at most ``D + 2`` requests unanswered never loses one.
* RESET answers have their own queue (:data:`RESETS_DEPTH`): a RESET completed while
  ``RESETS_DEPTH + 1`` RESET answers wait to start is dropped whole (no flush, no answer).
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Shape
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import protocol
from golden.protocol import IMAGE_SLOTS, MAX_PAYLOAD, REPLY_QUEUE, Command

from .frame_dispatcher import REPLY_LAYOUT, FrameDispatcher
from .frame_parser import REQUEST_LAYOUT, SLOT_BITS, FrameParser
from .frame_responder import FrameResponder
from .geometry import Field, MemorySpec

__all__ = ["FrameEngine", "REPLIES_DEPTH", "RESETS_DEPTH", "engine_memories"]

#: Replies queue depth: the dispatcher runs ahead of the responder by this much.
REPLIES_DEPTH = 4
#: RESET answers queued (besides the one the parser holds): a host sends a RESET and waits for
#: its answer, so a short queue does; a RESET completed while all wait is dropped whole.
RESETS_DEPTH = 2


def _fields(layout: data.StructLayout) -> tuple[Field, ...]:
    """A queue entry's fields, low first, as :class:`hw.geometry.Field` records."""
    return tuple(Field(name, Shape.cast(member.shape).width, Shape.cast(member.shape).signed)
                 for name, member in sorted(layout, key=lambda item: item[1].offset))


def queue_storage_depth(depth: int) -> int:
    """Words of the memory a ``SyncFIFOBuffered`` of ``depth`` builds: its output register
    holds one entry, so ``depth - 1`` (none for a depth of 0 or 1, a register alone)."""
    return depth - 1 if depth > 1 else 0


def engine_memories(info: protocol.Info, queue_depth: int = REPLY_QUEUE
                    ) -> tuple[MemorySpec, ...]:
    """Every memory :class:`FrameEngine` builds for ``info``, without building it (for the fit
    check, :func:`hw.bitstream.estimate`; held to the elaborated design by
    tests/test_frame_engine.py), names as paths below the engine.

    The image slots hold ``IMAGE_SLOTS << index_bits`` (value, index) entries (``value``
    ``pixel_bits = bit_length(pixel_max)`` wide, as the core's pixels); the requests, replies
    and RESET queues are FIFOs of ``queue_depth``, :data:`REPLIES_DEPTH` and
    :data:`RESETS_DEPTH` entries, each holding all but one in a memory
    (:func:`queue_storage_depth`).
    """
    index_bits = max(1, ceil_log2(info.inputs))
    pixel_bits = max(1, int(info.pixel_max).bit_length())
    queues = (("requests", queue_depth, _fields(REQUEST_LAYOUT), "requests queue"),
              ("replies", REPLIES_DEPTH, _fields(REPLY_LAYOUT), "replies queue"),
              ("resets", RESETS_DEPTH, (Field("", 8),), "RESET answers' SEQs"))
    slots = MemorySpec("slots", IMAGE_SLOTS << index_bits,
                       (Field("value", pixel_bits), Field("index", index_bits)), None,
                       "image slots", False)
    return (slots, *(MemorySpec(f"{name}.storage", queue_storage_depth(depth), fields, None,
                                holds, False)
                     for name, depth, fields, holds in queues if queue_storage_depth(depth)))


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
    """The device side of the serial protocol, between the UART and the core
    (:class:`hw.engine.Engine`).

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

    def memories(self) -> tuple[MemorySpec, ...]:
        """Every memory this engine builds (:func:`engine_memories`)."""
        return engine_memories(self.info, self.queue_depth)

    def elaborate(self, platform) -> Module:
        m = Module()
        parser, dispatcher, responder = self.parser, self.dispatcher, self.responder
        flush = parser.flush
        m.submodules.parser = parser
        m.submodules.dispatcher = ResetInserter(flush)(dispatcher)
        m.submodules.responder = responder
        m.submodules.slots = slots = memory.Memory(
            shape=parser.entry_layout, depth=IMAGE_SLOTS << parser.index_bits, init=[])
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
